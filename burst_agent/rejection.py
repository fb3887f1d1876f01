"""Why a spool entry cannot run: one error type, whether the spool's checks or the plan refused it."""

from __future__ import annotations


class EntryRejected(ValueError):
    """The entry is unusable; `reason` is what goes into the quarantine reason file."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"spool entry {name!r} rejected: {reason}")
