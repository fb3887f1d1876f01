"""Protected mode: when every create or submit fails (a revoked token, an exhausted quota), new jobs wait.

After TRIP_FAILURES failed creates or submits in a row, of at least TRIP_JOBS different jobs, with no
success between them, the agent stops sending new jobs to Rescale: a job at its create is held with
the reason (its relay shows it in slurm-N.out and squeue's Comment) instead of failing, and one job is
let through every PROBE_S as a probe. The first create or submit that succeeds ends protected mode,
and the held jobs go on. AWS ParallelCluster calls the same idea "protected mode".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

TRIP_FAILURES = 5
TRIP_JOBS = 3
PROBE_S = 60.0


@dataclass
class Protection:
    """The streak of failed creates/submits and whether new creates wait (thread-safe)."""

    trip_failures: int = TRIP_FAILURES
    trip_jobs: int = TRIP_JOBS
    probe_s: float = PROBE_S
    _streak: list[tuple[str, str]] = field(default_factory=list)  # (job id, error) since the last success
    _since: float | None = None  # when protected mode began
    _probe_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def active(self) -> bool:
        return self._since is not None

    def failed(self, job_id: str, error: str, now: float) -> bool:
        """A create or submit failed; True if this failure put the agent into protected mode."""
        with self._lock:
            self._streak = [*self._streak[-(self.trip_failures * 4):], (job_id, error)]
            tripped = len(self._streak) >= self.trip_failures and \
                len({jid for jid, _ in self._streak}) >= self.trip_jobs
            if tripped and self._since is None:
                self._since, self._probe_at = now, now + self.probe_s
                return True
            return False

    def succeeded(self) -> bool:
        """A create or submit went through; True if this ended protected mode."""
        with self._lock:
            ended, self._streak, self._since = self._since is not None, [], None
            return ended

    def may_create(self, now: float) -> bool:
        """Outside protected mode always; inside it, one probe every probe_s."""
        with self._lock:
            if self._since is None:
                return True
            if now >= self._probe_at:
                self._probe_at = now + self.probe_s
                return True
            return False

    def probe_due(self, now: float) -> bool:
        """Inside protected mode: whether the next probe may go (without taking it)."""
        with self._lock:
            return self._since is None or now >= self._probe_at

    def reason(self) -> str:
        with self._lock:
            last = self._streak[-1][1] if self._streak else "unknown"
            count = len(self._streak)
        return (f"Rescale refuses new jobs (the last {count} creates or submits failed; last: {last}):"
                f" the agent is in protected mode, new jobs wait and one is tried every {self.probe_s:g} s")
