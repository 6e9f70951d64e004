# The node agent: one per GPU machine. Build from the repository root:
#   docker build -f deploy/docker/agent.Dockerfile -t trl-nats/agent .
# torch comes from PyPI as pinned in constraints.txt (its wheels bring the CUDA runtime);
# the host needs only the NVIDIA driver and the container toolkit.
FROM python:3.12-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    TRL_NATS_STATE_DIR=/state \
    TRL_NATS_METRICS_PORT=9464

WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY trl_nats ./trl_nats
COPY agents ./agents
RUN pip install -c constraints.txt . ./agents \
    && useradd --create-home --uid 1000 trl \
    && mkdir -p /state && chown trl /state

USER trl
VOLUME /state
# Prometheus metrics (TRL_NATS_METRICS_PORT); multi-node jobs also use a rendezvous port per job
EXPOSE 9464
ENTRYPOINT ["trl-nats-agent"]
CMD ["--device", "auto"]
