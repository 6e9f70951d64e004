"""Training recipes, one module per method, run by torchrun on every rank.

Importing the package ties the rank to its torchrun first (see ``lifeline``),
before any recipe pays for its torch and TRL imports.
"""

from trl_nats_agent.recipes.lifeline import die_with_torchrun

die_with_torchrun()
