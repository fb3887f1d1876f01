"""The job state machine: states, allowed transitions, and how Rescale statuses map onto them (pure)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in the pipeline; persisted by value in the store.

    Every step that must not be repeated blindly after a crash has a state of its own, entered (and
    committed) *before* its side effect: CREATING before ``POST /jobs/`` (a restart looks the job up
    by its reconcile key first), SUBMITTING before ``POST /jobs/{id}/submit/`` (a restart asks
    ``/statuses/`` whether it landed), STOPPING / FORCE_STOPPING once a stop was sent (the grace
    period counts from ``entered_at``).
    """

    RECEIVED = "received"  # claimed from the spool and recorded
    TRANSLATED = "translated"  # the plan is decided (the Rescale body among it)
    STAGING_IN = "staging_in"  # uploading inputs
    STAGED = "staged"  # inputs uploaded; at the cloud-core gate
    HELD = "held"  # waiting for cloud cores under agent.max_cloud_cores
    CREATING = "creating"  # create sent (or about to be): reconcile by key before creating again
    CREATED = "created"  # remote job exists (remote_job_id set), not yet tagged
    TAGGED = "tagged"  # reconcile tag added
    PROJECT_SET = "project_set"  # project assigned (only jobs with a project)
    SUBMITTING = "submitting"  # submit sent (or about to be): /statuses/ decides after a crash
    SUBMITTED = "submitted"  # submit accepted; remote status Pending
    QUEUED = "queued"  # waiting for a queue / cluster
    RUNNING = "running"  # cluster started, validated or executing
    STOPPING = "stopping"  # cancel: stop sent; force stop after agent.stop_grace_s
    FORCE_STOPPING = "force_stopping"  # force stop sent; repeated every grace period until it ends
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
    S.STAGING_IN: frozenset({S.STAGED}),
    S.STAGED: frozenset({S.HELD, S.CREATING}),
    S.HELD: frozenset({S.CREATING}),
    # A create refused because cached inputs vanished on Rescale stages the inputs again (once); one
    # refused in protected mode (nothing was created) is held with the jobs that wait.
    S.CREATING: frozenset({S.CREATED, S.STAGING_IN, S.HELD}),
    S.CREATED: frozenset({S.TAGGED}),
    S.TAGGED: frozenset({S.PROJECT_SET, S.SUBMITTING}),
    S.PROJECT_SET: frozenset({S.SUBMITTING}),
    S.SUBMITTING: frozenset({S.SUBMITTED}),
    # A job can finish between two polls, so any active state may jump straight to STAGING_OUT.
    S.SUBMITTED: frozenset({S.QUEUED, S.RUNNING, S.STAGING_OUT, S.STOPPING}),
    S.QUEUED: frozenset({S.RUNNING, S.STAGING_OUT, S.STOPPING}),
    # Rescale restarts clusters ("exceeded max number of restarts"), so a running job may queue again.
    S.RUNNING: frozenset({S.QUEUED, S.STAGING_OUT, S.STOPPING}),
    S.STOPPING: frozenset({S.FORCE_STOPPING, S.STAGING_OUT}),
    # The one state that re-enters itself: each repeat restarts the grace period (and leaves a row).
    S.FORCE_STOPPING: frozenset({S.FORCE_STOPPING, S.STAGING_OUT}),
    # Rescale could not place the remote job (capacity): it is created again on the plan's next coretype.
    S.STAGING_OUT: frozenset({S.DONE, S.STAGED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    state: nxt if state in TERMINAL else nxt | {S.FAILED, S.CANCELLED} for state, nxt in _FORWARD.items()
}

# States in which the remote job is live and shows up in `GET /jobs/?state=not_completed`.
REMOTE_ACTIVE: frozenset[JobState] = frozenset({S.SUBMITTED, S.QUEUED, S.RUNNING, S.STOPPING,
                                                S.FORCE_STOPPING})
# A create was attempted or a remote job exists, and the job is not final: it holds cloud cores.
HOLDS_CORES: frozenset[JobState] = frozenset({
    S.CREATING, S.CREATED, S.TAGGED, S.PROJECT_SET, S.SUBMITTING, *REMOTE_ACTIVE, S.STAGING_OUT,
})
# Nothing was sent that could run remotely: a cancel ends the job at once.
LOCAL_ONLY: frozenset[JobState] = frozenset({S.RECEIVED, S.TRANSLATED, S.STAGING_IN, S.STAGED, S.HELD})
# The remote job exists but was never submitted: a cancel deletes it.
UNSUBMITTED: frozenset[JobState] = frozenset({S.CREATED, S.TAGGED, S.PROJECT_SET})


def diagram() -> str:
    """The state machine as a Mermaid state diagram (docs/architecture.md embeds it)."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.RECEIVED.value}"]
    lines += [f"    {old.value} --> {new.value}" for old, nxt in _FORWARD.items() for new in sorted(nxt)]
    lines += [f"    {state.value} --> [*]" for state in sorted(TERMINAL)]
    lines.append(f"    note right of {S.FAILED.value}: any state not final may also end failed or cancelled")
    return "\n".join(lines) + "\n"


class IllegalTransition(ValueError):
    """A state change the TRANSITIONS table does not allow."""

    def __init__(self, old: JobState | str, new: JobState | str) -> None:
        self.old = JobState(old)
        self.new = JobState(new)
        super().__init__(f"illegal job state transition {self.old.value} -> {self.new.value}")


def is_allowed(old: JobState | str, new: JobState | str) -> bool:
    """True if TRANSITIONS allows old -> new."""
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
