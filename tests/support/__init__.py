"""What the tests share: paths, sample rows, waiting, processes, the tiny model, the fixtures.

Test files import helpers from here (``from support import ROWS, wait_for``); ``tests/conftest.py``
only registers the fixtures of :mod:`support.fixtures`. Nothing here asserts anything about the
system under test: these are the tools the tests use to set it up and watch it.
"""

from support.data import ROWS, preference_rows
from support.models import assert_loads, build_tiny_model, model_dir, tiny_module
from support.paths import DATA, PYTHON, REPO, SHIPPED, SHIPPED_SFT
from support.processes import NOOP, AgentProcess, processes_matching, rank_pids
from support.stack_jobs import TERMINAL, WAIT_S, ended, poll_status, training_processes
from support.waiting import GUARD_S, agents_up, wait_for, wait_through_restarts

__all__ = [
    "DATA",
    "GUARD_S",
    "NOOP",
    "PYTHON",
    "REPO",
    "ROWS",
    "SHIPPED",
    "SHIPPED_SFT",
    "TERMINAL",
    "WAIT_S",
    "AgentProcess",
    "agents_up",
    "assert_loads",
    "build_tiny_model",
    "ended",
    "model_dir",
    "poll_status",
    "preference_rows",
    "processes_matching",
    "rank_pids",
    "tiny_module",
    "training_processes",
    "wait_for",
    "wait_through_restarts",
]
