# Llama Stack 0.6.1 with the remote::trl_nats post_training provider. No torch.
# Build from the repository root:
#   docker build -f deploy/docker/provider.Dockerfile -t trl-nats/provider .
FROM python:3.12-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    TRL_NATS_STACK_DIR=/data

WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY trl_nats ./trl_nats
COPY provider ./provider
COPY deploy/llama-stack/run.yaml /etc/trl-nats/run.yaml
RUN pip install -c constraints.txt . "./provider[llama-stack-0.6]" \
    && useradd --create-home --uid 1000 trl \
    && mkdir -p /data && chown trl /data

USER trl
VOLUME /data
EXPOSE 8321
CMD ["llama", "stack", "run", "/etc/trl-nats/run.yaml", "--port", "8321"]
