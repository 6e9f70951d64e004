"""What an attempt's end means for the job: complete, retry, fail, hand back, or leave it alone.

A pure decision (no I/O), made once per attempt by the agent that owns the job's
record, from the recipe's exit code and what happened to the attempt meanwhile:

| lost claim | cancelled | handed back | exit code          | attempt        | job state | message            | settle |
|------------|-----------|-------------|--------------------|----------------|-----------|--------------------|--------|
| yes        | any       | any         | any                | any            | (none)    | the new owner decides | (none) |
| no         | yes       | any         | any                | any            | cancelled | the cancel reason  | ack    |
| no         | no        | yes         | any                | any            | scheduled | handed back        | nak (attempt not counted) |
| no         | no        | no          | 0, paused marker   | any            | paused    | paused (resume continues) | ack (attempt not counted) |
| no         | no        | no          | 0                  | any            | completed | completed          | ack    |
| no         | no        | no          | EXIT_BAD_JOB (2)   | any            | failed    | cannot run as specified | term |
| no         | no        | no          | other / None       | < max_attempts | scheduled | retrying           | nak, backoff x attempt |
| no         | no        | no          | other / None       | = max_attempts | failed    | failed after N attempts | term |

EXIT_BAD_JOB is the recipe saying the job cannot run as specified (its rows, its
model or tokenizer, its hyperparameters, out of memory at the smallest batch):
a retry cannot help, so the job fails at once with the recipe's one sentence.
Everything else (EXIT_ERROR, a killed rank, a lost node, a broker fault, exit
code None for an agent-side error) may pass on another attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from trl_nats.messages import JobState
from trl_nats_agent.recipes.contract import EXIT_BAD_JOB, EXIT_OK


class Settle(StrEnum):
    """What happens to the job's JetStream message."""

    ack = "ack"  # done with it: completed or cancelled
    nak = "nak"  # redeliver it (after ``delay_s``) for another attempt
    term = "term"  # never deliver it again: failed for good
    none = "none"  # not ours to settle (the claim was lost)


@dataclass(frozen=True)
class Outcome:
    state: JobState | None  # None: write nothing, the job's new owner decides
    message: str  # the status event's text: a headline, then the attempt's error when there is one
    error: str | None  # the record's error field
    settle: Settle
    delay_s: float = 0.0  # for Settle.nak
    handed_back: bool = False  # the attempt does not count: the record's attempt number goes back by one
    failed: bool = False  # the attempt ended in an error (metrics)

    @property
    def retried(self) -> bool:
        return self.failed and self.state is JobState.scheduled


def outcome(
    *,
    exit_code: int | None,
    error: str | None,
    attempt: int,
    max_attempts: int,
    agent_id: str,
    cancel_reason: str | None = None,
    handed_back: bool = False,
    lost_claim: bool = False,
    paused: bool = False,
    retry_backoff_s: float = 2.0,
    fetch_timeout_s: float = 2.0,
) -> Outcome:
    """Decide the end of one attempt (see the module's table); ``error`` is what the attempt ended with."""
    if lost_claim:
        return Outcome(None, "claim lost: the new owner decides", None, Settle.none)

    def said(message: str) -> str:  # the status event's text: the headline, then the attempt's error
        return f"{message}: {error}" if error else message

    if cancel_reason is not None:
        return Outcome(JobState.cancelled, said(cancel_reason), cancel_reason, Settle.ack)
    if handed_back:
        # This agent's cancelled fetches stay open at the server until they expire; redelivered
        # sooner, the job would land in one of them and wait out a whole ack wait unseen.
        message = said(f"handed back by {agent_id} (agent stopping)")
        return Outcome(JobState.scheduled, message, error, Settle.nak, fetch_timeout_s + 0.5, handed_back=True)
    if exit_code == EXIT_OK and paused:  # stopped at a pause after storing checkpoint-N: in no queue until resumed
        message = f"paused by {agent_id}: GPUs released; `trl-nats resume` continues from the stored checkpoint"
        return Outcome(JobState.paused, message, None, Settle.ack, handed_back=True)
    if exit_code == EXIT_OK:
        return Outcome(JobState.completed, "completed", None, Settle.ack)
    if exit_code == EXIT_BAD_JOB:
        message = said(f"failed on attempt {attempt}: the job cannot run as specified (not retried)")
        return Outcome(JobState.failed, message, error, Settle.term, failed=True)
    if attempt < max_attempts:
        message = said(f"attempt {attempt} failed; retrying")
        return Outcome(JobState.scheduled, message, error, Settle.nak, retry_backoff_s * attempt, failed=True)
    return Outcome(JobState.failed, said(f"failed after {attempt} attempt(s)"), error, Settle.term, failed=True)
