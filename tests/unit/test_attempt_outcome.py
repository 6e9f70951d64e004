"""Every row of the attempt outcome table (agents/trl_nats_agent/outcome.py): no processes, no NATS."""

from __future__ import annotations

import pytest
from trl_nats_agent.outcome import Settle, outcome
from trl_nats_agent.recipes.contract import EXIT_BAD_JOB, EXIT_ERROR, EXIT_OK

from trl_nats.messages import JobState

KILLED = -9  # a rank SIGKILLed (torchrun reports the signal as a negative code)
AGENT = "agent-a"

# (name, inputs, state, settle, record error, message, delay, handed back, failed, retried)
ROWS = [
    (
        "claim lost: nothing is written, the new owner decides",
        dict(exit_code=EXIT_ERROR, error="boom", attempt=1, lost_claim=True, cancel_reason="x", handed_back=True),
        None, Settle.none, None, None, 0.0, False, False, False,
    ),
    (
        "cancelled: whatever the exit code",
        dict(exit_code=KILLED, error="training exited with code -9", attempt=1, cancel_reason="cancelled by user"),
        JobState.cancelled, Settle.ack, "cancelled by user",
        "cancelled by user: training exited with code -9", 0.0, False, False, False,
    ),
    (
        "cancelled wins over a hand-back and a bad job",
        dict(exit_code=EXIT_BAD_JOB, error=None, attempt=2, cancel_reason="stop", handed_back=True),
        JobState.cancelled, Settle.ack, "stop", "stop", 0.0, False, False, False,
    ),
    (
        "handed back: not counted, redelivered after the fetches expire",
        dict(exit_code=KILLED, error=None, attempt=3, max_attempts=3, handed_back=True),
        JobState.scheduled, Settle.nak, None, f"handed back by {AGENT} (agent stopping)", 2.5, True, False, False,
    ),
    (
        "handed back even when the recipe said bad job (it was stopped, not judged)",
        dict(exit_code=EXIT_BAD_JOB, error="x", attempt=1, handed_back=True),
        JobState.scheduled, Settle.nak, "x", f"handed back by {AGENT} (agent stopping): x", 2.5, True, False, False,
    ),
    (
        "exit 0 at a pause: paused, not counted, the message leaves the queue",
        dict(exit_code=EXIT_OK, error=None, attempt=2, paused=True),
        JobState.paused, Settle.ack, None,
        f"paused by {AGENT}: GPUs released; `trl-nats resume` continues from the stored checkpoint",
        0.0, True, False, False,
    ),
    (
        "a failure at a pause is a failure: retried",
        dict(exit_code=EXIT_ERROR, error="boom", attempt=1, paused=True),
        JobState.scheduled, Settle.nak, "boom", "attempt 1 failed; retrying: boom", 2.0, False, True, True,
    ),
    (
        "a cancel wins over a pause",
        dict(exit_code=EXIT_OK, error=None, attempt=1, paused=True, cancel_reason="stop"),
        JobState.cancelled, Settle.ack, "stop", "stop", 0.0, False, False, False,
    ),
    (
        "exit 0: completed, the attempt's error is dropped",
        dict(exit_code=EXIT_OK, error="a warning", attempt=2),
        JobState.completed, Settle.ack, None, "completed", 0.0, False, False, False,
    ),
    (
        "bad job on attempt 1: failed at once with the recipe's sentence",
        dict(exit_code=EXIT_BAD_JOB, error="row 3: missing field 'chosen'", attempt=1, max_attempts=3),
        JobState.failed, Settle.term, "row 3: missing field 'chosen'",
        "failed on attempt 1: the job cannot run as specified (not retried): row 3: missing field 'chosen'",
        0.0, False, True, False,
    ),
    (
        "bad job on the last attempt: failed the same way",
        dict(exit_code=EXIT_BAD_JOB, error="no model", attempt=3, max_attempts=3),
        JobState.failed, Settle.term, "no model",
        "failed on attempt 3: the job cannot run as specified (not retried): no model", 0.0, False, True, False,
    ),
    (
        "EXIT_ERROR with attempts left: retried after backoff x attempt",
        dict(exit_code=EXIT_ERROR, error="training exited with code 1", attempt=2, max_attempts=3),
        JobState.scheduled, Settle.nak, "training exited with code 1",
        "attempt 2 failed; retrying: training exited with code 1", 4.0, False, True, True,
    ),
    (
        "a killed rank with attempts left: retried",
        dict(exit_code=KILLED, error="training exited with code -9", attempt=1, max_attempts=2),
        JobState.scheduled, Settle.nak, "training exited with code -9",
        "attempt 1 failed; retrying: training exited with code -9", 2.0, False, True, True,
    ),
    (
        "an agent-side error (no exit code) with attempts left: retried",
        dict(exit_code=None, error="could not prepare the job: broker gone", attempt=1, max_attempts=3),
        JobState.scheduled, Settle.nak, "could not prepare the job: broker gone",
        "attempt 1 failed; retrying: could not prepare the job: broker gone", 2.0, False, True, True,
    ),
    (
        "EXIT_ERROR on the last attempt: failed",
        dict(exit_code=EXIT_ERROR, error="boom", attempt=3, max_attempts=3),
        JobState.failed, Settle.term, "boom", "failed after 3 attempt(s): boom", 0.0, False, True, False,
    ),
    (
        "no exit code and no error on the last attempt: failed, the headline alone",
        dict(exit_code=None, error=None, attempt=1, max_attempts=1),
        JobState.failed, Settle.term, None, "failed after 1 attempt(s)", 0.0, False, True, False,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    "inputs,state,settle,error,message,delay,handed_back,failed,retried",
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_outcome_table(inputs, state, settle, error, message, delay, handed_back, failed, retried):
    args = dict(max_attempts=3, agent_id=AGENT, retry_backoff_s=2.0, fetch_timeout_s=2.0) | inputs
    end = outcome(**args)
    assert end.state is state
    assert end.settle is settle
    assert end.error == error
    if message is not None:
        assert end.message == message
    assert end.delay_s == delay
    assert end.handed_back is handed_back
    assert end.failed is failed
    assert end.retried is retried


def test_only_a_bad_job_exit_code_fails_before_the_last_attempt():
    """Across exit codes: the first attempt ends the job only for 0 (completed) and EXIT_BAD_JOB (failed)."""
    for code in [EXIT_OK, EXIT_ERROR, EXIT_BAD_JOB, 3, 137, -9, -15, None]:
        end = outcome(exit_code=code, error="e", attempt=1, max_attempts=3, agent_id=AGENT)
        expected = {EXIT_OK: JobState.completed, EXIT_BAD_JOB: JobState.failed}.get(code, JobState.scheduled)
        assert end.state is expected, code
