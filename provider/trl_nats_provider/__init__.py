"""Llama Stack remote provider ``remote::trl_nats`` for the ``post_training`` API.

DPO (``preference_optimize``) and SFT (``supervised_fine_tune``) requests
become jobs on NATS JetStream that GPU node agents run with TRL. This
package needs no torch: the Llama Stack host only maps requests and reads
job state from NATS.
"""

from __future__ import annotations

from typing import Any

from trl_nats_provider.config import TrlNatsPostTrainingConfig

__all__ = ["TrlNatsPostTrainingConfig", "get_adapter_impl"]


async def get_adapter_impl(config: TrlNatsPostTrainingConfig, deps: dict[Any, Any]):
    """Called by Llama Stack with the provider's config and its api_dependencies."""
    from llama_stack_api import Api

    from trl_nats_provider.adapter import TrlNatsPostTrainingAdapter

    if not isinstance(config, TrlNatsPostTrainingConfig):
        raise TypeError(
            f"remote::trl_nats got a {type(config).__name__} config; its config_class must be "
            "trl_nats_provider.config.TrlNatsPostTrainingConfig"
        )
    if Api.datasetio not in deps:
        raise RuntimeError("remote::trl_nats needs a datasetio provider (e.g. inline::localfs) in the run config")
    impl = TrlNatsPostTrainingAdapter(config, deps[Api.datasetio], deps.get(Api.datasets))
    await impl.initialize()
    return impl
