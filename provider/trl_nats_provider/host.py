"""Which Llama Stack serves this provider, and the few names that differ between hosts.

The request layer (``adapter``, ``mapping``, ``rows``, ``errors``) is one
source for every host; this module is the whole per-host import shim:

============================  =====================  ===================================
host                          API package            post_training
============================  =====================  ===================================
``llama-stack-0.6``           ``llama_stack_api``    native (the stack's own routes)
``llama-stack-0.7``           ``llama_stack_api``    external API (``trl_nats_provider.external``)
``ogx``                       ``ogx_api``            external API (``trl_nats_provider.external``)
============================  =====================  ===================================

On 0.6.1 the request and response types are the stack's own; on 0.7.x and
OGX, which dropped them, they are :mod:`trl_nats_provider.api_models`, the
same shapes. Error base classes and the datasets/files request types come
from the host's API package on every host.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

HOSTS = ("llama-stack-0.6", "llama-stack-0.7", "ogx")


def _detect() -> str:
    forced = os.environ.get("TRL_NATS_LLAMA_STACK_HOST")
    if forced:
        if forced not in HOSTS:
            raise RuntimeError(f"TRL_NATS_LLAMA_STACK_HOST={forced!r} is not one of {', '.join(HOSTS)}")
        return forced
    if importlib.util.find_spec("llama_stack_api") is not None:
        if importlib.util.find_spec("llama_stack_api.post_training") is not None:
            return "llama-stack-0.6"
        return "llama-stack-0.7"
    if importlib.util.find_spec("ogx_api") is not None:
        return "ogx"
    raise RuntimeError(
        "trl-nats-provider needs a Llama Stack: pip install 'trl-nats-provider[llama-stack-0.6]', "
        "'trl-nats-provider[llama-stack-0.7]' or 'trl-nats-provider[ogx]'"
    )


HOST = _detect()
NATIVE = HOST == "llama-stack-0.6"
API_PACKAGE = "ogx_api" if HOST == "ogx" else "llama_stack_api"

_api = importlib.import_module(API_PACKAGE)
_errors = importlib.import_module(f"{API_PACKAGE}.common.errors")

Api: Any = _api.Api
RemoteProviderSpec: Any = _api.RemoteProviderSpec
ConflictError: type[Exception] = _errors.ConflictError
ResourceNotFoundError: type[Exception] = _errors.ResourceNotFoundError
RetrieveFileContentRequest: Any = _api.RetrieveFileContentRequest
# OGX has no datasets API (so no IterRowsRequest): rows come from the Files API there
IterRowsRequest: Any = getattr(_api, "IterRowsRequest", None)

models: Any = _api if NATIVE else importlib.import_module("trl_nats_provider.api_models")


def post_training_api() -> Any:
    """``Api.post_training``: a member on 0.6.1, registered by name for the external API elsewhere."""
    if NATIVE:
        return Api.post_training
    return Api.add("post_training")
