"""Progress of a job's transfers, written to its record at most once a second (`status` shows it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from burst_agent.ledger import JobLedger

WRITE_EVERY_S = 1.0


class TransferProgress:
    """Sums the progress of several files moving at once (parallel downloads) into done/total bytes."""

    def __init__(self, store: JobLedger, job_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.job_id, self.clock = store, job_id, clock
        self._files: dict[Hashable, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._written_at = -WRITE_EVERY_S

    def for_file(self, key: Hashable) -> Callable[[int, int | None], None]:
        """A progress callback (done, total) for one file, as the client's transfers call it."""

        def update(done: int, total: int | None) -> None:
            with self._lock:
                self._files[key] = (done, total or done)
                due = self.clock() - self._written_at >= WRITE_EVERY_S
                if due:
                    self._written_at = self.clock()
                    done_sum = sum(d for d, _ in self._files.values())
                    total_sum = sum(t for _, t in self._files.values())
            if due:
                self.store.record_progress(self.job_id, transfer_done=done_sum, transfer_total=total_sum)

        return update

    def finish(self) -> None:
        """Clear the figures: nothing is moving for this job any more."""
        self.store.record_progress(self.job_id, transfer_done=0, transfer_total=0)
