"""Llama Stack remote provider ``remote::trl_nats`` for the ``post_training`` API.

Llama Stack 0.6.1 serves post_training itself; on 0.7.x and OGX this package
brings the API back as an external API (:mod:`trl_nats_provider.external`).

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
    from trl_nats_provider.adapter import TrlNatsPostTrainingAdapter
    from trl_nats_provider.host import HOST, Api

    if not isinstance(config, TrlNatsPostTrainingConfig):
        raise TypeError(
            f"remote::trl_nats got a {type(config).__name__} config; its config_class must be "
            "trl_nats_provider.config.TrlNatsPostTrainingConfig"
        )
    datasetio = deps.get(Api.datasetio) if hasattr(Api, "datasetio") else None
    files = deps.get(Api.files)
    if datasetio is None and files is None:
        raise RuntimeError(
            f"remote::trl_nats on {HOST} reads rows from a datasetio or a files provider and the run config has "
            "neither: add files (inline::localfs) to it (see provider/README.md)"
        )
    impl = TrlNatsPostTrainingAdapter(config, datasetio, deps.get(Api.datasets) if datasetio else None, files)
    await impl.initialize()
    return impl
