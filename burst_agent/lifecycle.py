"""The job state machine: states, allowed transitions, and how Rescale statuses map onto them (pure)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in the pipeline; persisted by value in the store.

    Crash-recovery contract between ``created`` and ``submitted`` (no extra states needed):
    the remote job id is persisted (store.update) the moment ``POST /jobs/`` returns, and the state
    becomes ``created``.  Tagging and project assignment are then tracked by the record's
    ``tags_done`` / ``project_done`` flags, and ``submit_attempted_at`` is written *before*
    ``POST /jobs/{id}/submit/`` is sent.  On restart a ``created`` job resumes at the first step not
    done; if ``submit_attempted_at`` is set, ``GET /jobs/{id}/statuses/`` decides (any status at all
    means the submit landed) instead of a blind re-submit.  Likewise ``create_attempted_at`` without
    a ``remote_job_id`` means "look the job up by its reconcile key (job name) before creating".
    """

    RECEIVED = "received"  # claimed from the spool and recorded
    TRANSLATED = "translated"  # Rescale job body derived
    STAGING_IN = "staging_in"  # uploading inputs; create follows
    CREATED = "created"  # remote job exists (remote_job_id set), not yet submitted
    SUBMITTED = "submitted"  # submit accepted; remote status Pending
    QUEUED = "queued"  # waiting for a queue / cluster
    RUNNING = "running"  # cluster started, validated or executing
    STAGING_OUT = "staging_out"  # remote job completed; pulling outputs back
    DONE = "done"  # remote job ran and its outputs are back; the exit code tells how the command did
    FAILED = "failed"  # we could not run it, or Rescale ended it with a failure reason
    CANCELLED = "cancelled"  # stopped on request (scancel / burst-agent cancel)


S = JobState

TERMINAL: frozenset[JobState] = frozenset({S.DONE, S.FAILED, S.CANCELLED})

# Forward steps only; FAILED and CANCELLED are added below for every non-terminal state.
_FORWARD: dict[JobState, frozenset[JobState]] = {
    S.RECEIVED: frozenset({S.TRANSLATED}),
    S.TRANSLATED: frozenset({S.STAGING_IN}),
    S.STAGING_IN: frozenset({S.CREATED}),
    S.CREATED: frozenset({S.SUBMITTED}),
    # A job can finish between two polls, so any active state may jump straight to STAGING_OUT.
    S.SUBMITTED: frozenset({S.QUEUED, S.RUNNING, S.STAGING_OUT}),
    S.QUEUED: frozenset({S.RUNNING, S.STAGING_OUT}),
    # Rescale restarts clusters ("exceeded max number of restarts"), so a running job may queue again.
    S.RUNNING: frozenset({S.QUEUED, S.STAGING_OUT}),
    S.STAGING_OUT: frozenset({S.DONE}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    state: nxt if state in TERMINAL else nxt | {S.FAILED, S.CANCELLED} for state, nxt in _FORWARD.items()
}

# States in which the remote job is live and shows up in `GET /jobs/?state=not_completed`.
REMOTE_ACTIVE: frozenset[JobState] = frozenset({S.SUBMITTED, S.QUEUED, S.RUNNING})


class IllegalTransition(ValueError):
    """A state change the TRANSITIONS table does not allow."""

    def __init__(self, old: JobState | str, new: JobState | str) -> None:
        self.old = JobState(old)
        self.new = JobState(new)
        super().__init__(f"illegal job state transition {self.old.value} -> {self.new.value}")


def is_allowed(old: JobState | str, new: JobState | str) -> bool:
    """True if TRANSITIONS allows old -> new (a state never transitions to itself)."""
    return JobState(new) in TRANSITIONS[JobState(old)]


def check_transition(old: JobState | str, new: JobState | str) -> None:
    """Raise IllegalTransition unless old -> new is allowed."""
    if not is_allowed(old, new):
        raise IllegalTransition(old, new)


# Rescale job status strings (jobStatus.content, /statuses/ `status`, the job_status filter's
# UPPER_CASE names, extended-log status messages), normalised by _norm.  Anything absent from this
# table is UNKNOWN (None): never treat an unrecognised or missing status as completion.
REMOTE_STATUS: dict[str, JobState] = {
    "pending": S.SUBMITTED,
    "waiting for queue": S.QUEUED,
    "queued": S.QUEUED,
    "waiting for cluster": S.QUEUED,
    "started": S.RUNNING,
    "validated": S.RUNNING,
    "executing": S.RUNNING,
    # Still consuming resources until Completed; the final state comes from the reason / our cancel.
    "stopping": S.RUNNING,
    "force stop": S.RUNNING,
    "completed": S.STAGING_OUT,
}

# statusReason substrings (lower case) that mean "Completed" hides a failure.  From the API doc
# ("Exceeds job walltime") and from public Rescale clients.
FAILURE_REASONS: tuple[str, ...] = (
    "could not allocate",
    "exceeded max number of restarts",
    "exceeds max number of restarts",
    "exceeds job walltime",
    "exceeded job walltime",
    "walltime exceeded",
    "insufficient",
    "failed",
    "failure",
    "error",
    "aborted",
    "terminated",
)

# statusReason substrings that are explicitly fine even if a failure word were to appear in them.
SUCCESS_REASONS: tuple[str, ...] = ("completed successfully",)


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def map_remote_status(status: str | None) -> JobState | None:
    """Our state for a Rescale job status string; None means UNKNOWN (leave the record as it is)."""
    if not status:
        return None
    return REMOTE_STATUS.get(_norm(status))


def failure_reason(status_reason: str | None) -> str | None:
    """The status reason if it means failure behind "Completed", else None (case-insensitive)."""
    if not status_reason:
        return None
    text = _norm(status_reason)
    if any(ok in text for ok in SUCCESS_REASONS):
        return None
    return status_reason.strip() if any(bad in text for bad in FAILURE_REASONS) else None


def final_state(status_reason: str | None, cancel_requested: bool) -> JobState:
    """Where STAGING_OUT ends: CANCELLED if we asked for the stop, FAILED on a failure reason, else DONE."""
    if cancel_requested:
        return S.CANCELLED
    return S.FAILED if failure_reason(status_reason) else S.DONE
