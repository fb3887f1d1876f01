"""Which requests may be repeated, and how long to wait between tries (exponential backoff, full jitter).

Safe to repeat: GET, HEAD, PUT, PATCH, DELETE, and these POSTs, whose repetition has no further effect:
  /jobs/{id}/stop/, /jobs/{id}/force_stop/, /jobs/{id}/shutdown/  (stopping a stopping job is a no-op)
  /jobs/{id}/tags/                                                  (adding an existing tag is a no-op)
  /organizations/{org}/jobs/{id}/project-assignment/                (sets a value)
Never repeated: POST /jobs/ (create: a repeat makes a duplicate job), POST /jobs/{id}/submit/ (a repeat may
start it twice), POST /files/contents/ (upload: a repeat stores a second copy). A transient failure there
raises with `ambiguous=True`; a 429 there is not retried either (the caller may, after `retry_after`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from burst_agent.config import ApiConfig

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
_IDEMPOTENT_POSTS = frozenset(
    {
        "/jobs/{id}/stop/",
        "/jobs/{id}/force_stop/",
        "/jobs/{id}/shutdown/",
        "/jobs/{id}/tags/",
        "/organizations/{org}/jobs/{id}/project-assignment/",
    }
)


def is_repeatable(method: str, template: str) -> bool:
    """True if sending this request twice has the same effect as sending it once."""
    return method in _IDEMPOTENT_METHODS or (method == "POST" and template in _IDEMPOTENT_POSTS)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from `now` (a Unix time): delta-seconds or an HTTP-date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means the zone was missing
        return None
    return max(0.0, when.timestamp() - now)


@dataclass
class RetryPolicy:
    """`max_retries` further tries after the first; try n waits uniform(0, min(cap, base * 2**n)).

    A 429 waits what Retry-After says (or the backoff if it says nothing), but gives up at once when the
    server asks for more than `max_retry_after_s`: the caller is better placed to wait that long.
    """

    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = field(default=random.random)
    wall_clock: Callable[[], float] = time.time

    @classmethod
    def from_config(cls, api: ApiConfig, **overrides: object) -> RetryPolicy:
        kwargs: dict[str, object] = {
            "max_retries": api.max_retries,
            "backoff_base_s": api.backoff_base_s,
            "backoff_max_s": api.backoff_max_s,
        }
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]

    def backoff(self, retry_number: int) -> float:
        """Full jitter: a uniform draw in [0, min(cap, base * 2**retry_number))."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2.0**retry_number))
        return ceiling * self.random()

    def wait_for_rate_limit(self, retry_after: float | None, retry_number: int) -> float | None:
        """The wait before retrying a 429, or None if the server asked for too long a wait."""
        if retry_after is None:
            return self.backoff(retry_number)
        return retry_after if retry_after <= self.max_retry_after_s else None
