"""The OpenAI fine-tuning API (``/v1/files``, ``/v1/fine_tuning/jobs``) served over trl-nats.

Point the official ``openai`` SDK at this server's base URL and its DPO and supervised jobs run on
the fleet's agents over NATS. Run it with ``trl-nats serve`` or ``python -m trl_nats_provider.openai``
(``pip install 'trl-nats-provider[openai]'``: Starlette/FastAPI and uvicorn, no torch, no Llama Stack).

- ``requests``: a job request checked field by field; "auto" hyperparameters resolved.
- ``objects``: job records, events and checkpoints as OpenAI's objects; list pages.
- ``files``: uploads in the NATS object store, checked against the row schema.
- ``keys``: bearer API keys, one namespace each.
- ``service``: what each call does on NATS.  ``app``: the HTTP routes and error answers.
"""
