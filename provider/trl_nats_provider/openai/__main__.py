"""``python -m trl_nats_provider.openai``: serve the OpenAI fine-tuning API until SIGTERM/SIGINT.

    python -m trl_nats_provider.openai --host 127.0.0.1 --port 8080 [--api-keys-file keys.txt]

NATS connection flags fall back to ``TRL_NATS_*`` variables, as every trl-nats command's do.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from trl_nats.settings import add_connection_args, settings_from_args
from trl_nats_provider import dpo_lora
from trl_nats_provider.openai.keys import ENV, KeyConfigError, KeyRing, is_loopback
from trl_nats_provider.openai.service import GatewayConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="trl-nats serve", description="serve the OpenAI fine-tuning API over trl-nats")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--api-keys-file", help=f"bearer keys, one a line, 'name:key' to name its namespace (also {ENV})")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per node each job asks for (CPU slots on CPU agents)")
    p.add_argument("--nodes", type=int, default=1, help="nodes each job asks for")
    p.add_argument("--gpu-type", help="GPU type each job needs, e.g. H100 (default any)")
    p.add_argument("--max-attempts", type=int, default=3, help="tries per job when agents fail")
    p.add_argument("--max-file-mib", type=float, default=512.0, help="largest upload accepted (MiB)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training parameter every job gets that the API cannot name, e.g. max_length=1024",
    )
    p.add_argument(
        "--dpo-lora",
        default=os.environ.get(dpo_lora.ENV),
        metavar="VALUE",
        help="train every DPO job as LoRA: true (default adapter) or a JSON object of LoRA fields, e.g. "
        f"'{{\"rank\": 16}}' (also {dpo_lora.ENV}; default: full DPO)",
    )
    p.add_argument("--log-level", default="INFO")
    add_connection_args(p)
    return p.parse_args(argv)


def _params(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq:
            sys.exit(f"trl-nats serve: --set expects key=value, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        keys = KeyRing.load(args.api_keys_file)
        lora = dpo_lora.parse(args.dpo_lora)
    except (KeyConfigError, dpo_lora.DpoLoraSettingError) as exc:
        sys.exit(f"trl-nats serve: {exc}")
    if keys.open and not is_loopback(args.host) and args.host != "localhost":
        sys.exit(
            f"trl-nats serve: no API key configured, so the server serves this machine only; it will not listen "
            f"on {args.host}. Give --api-keys-file (or {ENV}) to serve other hosts, or use --host 127.0.0.1."
        )
    import uvicorn

    from trl_nats_provider.openai.app import create_app

    config = GatewayConfig(
        nodes=args.nodes,
        gpus_per_node=args.gpus,
        gpu_type=args.gpu_type,
        max_attempts=args.max_attempts,
        max_file_bytes=int(args.max_file_mib * 1024 * 1024),
        params=_params(args.set),
        dpo_lora=lora,
    )
    settings = settings_from_args(args, name="trl-nats-openai")
    app = create_app(settings, keys, config)
    if keys.open:
        print("no API key configured: serving loopback callers only (namespace 'local')", flush=True)
    else:
        print(f"API keys: {len(keys.keys)} key(s), namespaces {', '.join(sorted(set(keys.keys.values())))}", flush=True)
    print(f"OpenAI fine-tuning API over NATS {', '.join(settings.servers)} (prefix {settings.prefix})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())


if __name__ == "__main__":
    main()
