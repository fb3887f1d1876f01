"""A job's record as the pipeline sees it: identity, state, the frozen plan, remote ids, status, progress."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal
from typing import Any

from burst_agent.lifecycle import TERMINAL, JobState

PLAN_VERSION = 1
INPUTS_VERSION = 1


class RecordFormatError(ValueError):
    """A stored plan or inputs column of an unknown version or shape."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Who submitted the job and under which scheduler job (facts of the spool entry, set at intake)."""

    owner_uid: int
    owner_name: str | None = None
    scheduler_job_id: str | None = None
    array_task_id: str | None = None
    partition: str | None = None


@dataclass(frozen=True, slots=True)
class Hardware:
    """A capacity-failover choice decided at translation: a next cheapest coretype that fits, its shape,
    its price per core-hour in the job's tier, and the create body for it."""

    coretype: str
    cores_per_slot: int
    slots: int
    price_per_core_hour: Decimal
    body: dict[str, Any]


def attempt_key(reconcile_key: str, attempt: int) -> str:
    """The key a remote job of this attempt carries (in its name and tag): the first has the plain key."""
    return reconcile_key if attempt == 0 else f"{reconcile_key}-try{attempt + 1}"


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided once, at translation, from the entry's facts; never changed afterwards.

    delivery: "plain" (outputs to results/<entry>/), "relay" (the relay shows the log and writes the
    outputs as the user) or "direct" (the agent's own user's workdir). `inputs_from` is the directory
    the agent selects inputs from (direct jobs only); `workdir` is the job's own, as the user gave it.
    """

    scheduler: str
    delivery: str
    workdir: str | None
    inputs_from: str | None
    output_dir: str
    stdout_path: str | None
    stderr_path: str | None
    script: str
    body: dict[str, Any]
    coretype: str
    cores_per_slot: int
    slots: int
    price_per_core_hour: Decimal
    project: str | None = None
    account: str | None = None  # the scheduler account the job was charged to (reports group by it)
    fallbacks: tuple[Hardware, ...] = ()  # where it runs next if Rescale cannot place it (failover)

    def on_attempt(self, attempt: int) -> Plan:
        """The plan as attempt `attempt` runs it: 0 is the first choice, N the Nth fallback."""
        if attempt == 0:
            return self
        if not 0 < attempt <= len(self.fallbacks):
            raise RecordFormatError(f"attempt {attempt} of a plan with {len(self.fallbacks)} fallback(s)")
        hw = self.fallbacks[attempt - 1]
        return replace(self, coretype=hw.coretype, cores_per_slot=hw.cores_per_slot, slots=hw.slots,
                       price_per_core_hour=hw.price_per_core_hour, body=hw.body)

    @property
    def hardware(self) -> str:
        return f"{self.coretype} x{self.cores_per_slot} x{self.slots}"

    @property
    def cores(self) -> int:
        """Cores the job holds on Rescale: cores per slot x slots."""
        return self.cores_per_slot * self.slots


@dataclass(frozen=True, slots=True)
class Inputs:
    """What stage-in uploaded: file ids (in create order), md5 per input path, the placement script,
    and {file id: cache key} of the cached large inputs (checked when a create is refused)."""

    file_ids: tuple[str, ...]
    md5s: dict[str, str]
    placement: str
    cached: dict[str, str]


@dataclass(frozen=True, slots=True)
class Remote:
    """The remote job's last known status and when its cluster ran (Unix seconds); `attempt` is which
    of the plan's hardware choices it runs (0: the first; capacity failover moves to the next)."""

    status: str | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    """How the job ended (or why it waits: a held job's reason)."""

    exit_code: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """Bytes moving now, how far the remote log was copied, and the relay's delivery."""

    log_offset: int = 0
    transfer_done: int = 0
    transfer_total: int = 0
    relay_log: str | None = None  # the job's own log file (the relay's stdout, e.g. slurm-41.out)
    relay_log_offset: int = 0  # how far into the remote log the relay had written it
    delivered_at: float | None = None  # when the outputs reached the workdir (relay or delivery)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job, decoded. `plan` is None until translation, `inputs` until stage-in."""

    id: str
    entry: str
    reconcile_key: str
    origin: Origin
    state: JobState
    entered_at: float  # when the job entered its state
    plan: Plan | None
    remote_job_id: str | None
    inputs: Inputs | None
    remote: Remote
    result: Result
    progress: Progress
    cancel_requested_at: float | None
    created_at: float
    updated_at: float

    @property
    def attempt(self) -> int:
        """Capacity failover: which of the plan's hardware choices the remote job is on (0: the first)."""
        return self.remote.attempt

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def owner_uid(self) -> int:
        return self.origin.owner_uid



@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One row of a job's state history."""

    job_id: str
    from_state: JobState | None
    to_state: JobState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """A large input already on Rescale, by content hash (the upload cache)."""

    content_hash: str
    remote_file_id: str
    size: int
    uploaded_at: float


@dataclass(frozen=True, slots=True)
class DownloadRecord:
    """One output of a job's stage-out and whether it has arrived."""

    job_id: str
    remote_file_id: str
    relative_path: str
    size: int
    md5: str | None
    done: bool


def plan_of(job: JobRecord) -> Plan:
    """The plan of a translated job (every state after RECEIVED has one), as its attempt runs it."""
    if job.plan is None:
        raise RecordFormatError(f"job {job.id} in state {job.state.value} has no plan")
    return job.plan.on_attempt(job.attempt)


def on_attempt(job: JobRecord, attempt: int) -> JobRecord:
    """The record as it would be on another attempt (not stored)."""
    return replace(job, remote=replace(job.remote, attempt=attempt))


def plan_or_none(job: JobRecord) -> Plan | None:
    """plan_of for a job that may not be translated yet."""
    return None if job.plan is None else plan_of(job)


def _dump(version: int, value: Any) -> str:
    return json.dumps({"v": version, **asdict(value)}, sort_keys=True, separators=(",", ":"),
                      default=str)


def _load(kind: type, version: int, text: str) -> dict[str, Any]:
    data = json.loads(text)
    found = data.get("v") if isinstance(data, dict) else None
    if found != version:
        raise RecordFormatError(f"stored {kind.__name__} version {found!r}; this burst-agent reads {version}")
    data.pop("v")
    names = {f.name for f in fields(kind)}
    if not set(data) <= names:
        raise RecordFormatError(f"stored {kind.__name__} has unknown keys {sorted(set(data) - names)}")
    return data


def encode_plan(plan: Plan) -> str:
    return _dump(PLAN_VERSION, plan)


def decode_plan(text: str) -> Plan:
    data = _load(Plan, PLAN_VERSION, text)
    fallbacks = tuple(Hardware(**{**hw, "price_per_core_hour": Decimal(str(hw["price_per_core_hour"]))})
                      for hw in data.get("fallbacks", ()))
    return Plan(**{**data, "price_per_core_hour": Decimal(str(data["price_per_core_hour"])),
                   "fallbacks": fallbacks})


def encode_inputs(inputs: Inputs) -> str:
    return _dump(INPUTS_VERSION, inputs)


def decode_inputs(text: str) -> Inputs:
    data = _load(Inputs, INPUTS_VERSION, text)
    return Inputs(**{**data, "file_ids": tuple(data["file_ids"])})


@dataclass(frozen=True, slots=True)
class StateChange:
    """A transition as subscribers (metrics; later accounting) hear of it: the job as it is now."""

    job: JobRecord
    from_state: JobState
    reason_class: str | None = None  # a final FAILED's failure class (metrics.FAILURE_CLASSES)
