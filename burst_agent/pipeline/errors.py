"""The errors a stage raises to end a job (caught once, by the agent's worker)."""

from __future__ import annotations


class PermanentJobError(Exception):
    """The job cannot go on (bad inputs, a body Rescale refuses): it fails with this reason.

    `stage` is the failure class metrics count it under (stage_in, create, ...).
    """

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage
