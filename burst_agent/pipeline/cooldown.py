"""Coretypes cooling down: one that failed for capacity K times in T seconds is skipped for new jobs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from burst_agent.config import FailoverConfig


@dataclass
class Cooldown:
    """Capacity failures per coretype, and the coretypes skipped for new jobs until a time (thread-safe)."""

    after: int = 3
    window_s: float = 1800.0
    cooldown_s: float = 3600.0
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _until: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, cfg: FailoverConfig) -> Cooldown:
        return cls(cfg.cooldown_after, cfg.cooldown_window_s, cfg.cooldown_s)

    def failed(self, coretype: str, now: float) -> bool:
        """A capacity failure of `coretype`; True if it starts a cool-down."""
        with self._lock:
            recent = [t for t in self._failures.get(coretype, []) if now - t < self.window_s] + [now]
            self._failures[coretype] = recent
            if len(recent) < self.after or self._until.get(coretype, 0.0) > now:
                return False
            self._until[coretype], self._failures[coretype] = now + self.cooldown_s, []
            return True

    def cooling(self, now: float) -> dict[str, float]:
        """{coretype: when its cool-down ends} of the coretypes cooling down now."""
        with self._lock:
            return {code: until for code, until in self._until.items() if until > now}
