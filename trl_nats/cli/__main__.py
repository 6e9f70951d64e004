"""``python -m trl_nats.cli``: the same as the ``trl-nats`` command."""

from trl_nats.cli import main

main()
