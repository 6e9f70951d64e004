"""The provider spec Llama Stack 0.6.1 loads for a run-config entry with ``module: trl_nats_provider``.

``providers.d/remote/post_training/trl_nats.yaml`` says the same for
``external_providers_dir``; a unit test keeps the two in step. On 0.7.x and
OGX the external API's ``available_providers()`` (:mod:`trl_nats_provider.external`)
gives the spec instead, from the same constants.
"""

from __future__ import annotations

from trl_nats_provider.host import Api, RemoteProviderSpec, post_training_api

ADAPTER_TYPE = "trl_nats"
PROVIDER_TYPE = f"remote::{ADAPTER_TYPE}"
MODULE = "trl_nats_provider"
CONFIG_CLASS = "trl_nats_provider.config.TrlNatsPostTrainingConfig"
PIP_PACKAGES = ["trl-nats-provider"]
DESCRIPTION = (
    "DPO and supervised fine-tuning with TRL on GPU node agents reached over NATS JetStream; "
    "job state lives in NATS, so it survives Llama Stack restarts."
)


def get_provider_spec() -> RemoteProviderSpec:
    return RemoteProviderSpec(
        api=post_training_api(),
        adapter_type=ADAPTER_TYPE,
        provider_type=PROVIDER_TYPE,
        module=MODULE,
        config_class=CONFIG_CLASS,
        pip_packages=PIP_PACKAGES,
        api_dependencies=[Api.datasetio, Api.datasets],
        # uploads to the Files API are read when the run config has a files provider
        optional_api_dependencies=[Api.files],
        description=DESCRIPTION,
    )
