"""Typed errors of the Rescale client: HTTP status, method, path and the server's detail, never the token."""

from __future__ import annotations

from typing import Any

REDACTED = "<redacted>"
_DETAIL_MAX = 500


class RescaleError(Exception):
    """Base of every client error.

    `transient` (psij style): retrying later may succeed. `ambiguous`: a request that is not safe to
    repeat (job create, submit, upload) failed in a way that leaves open whether it took effect, so the
    caller must reconcile (look the job up by tag or name) before trying again.
    """

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        detail: str | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.path = path
        self.detail = detail
        self.ambiguous = ambiguous

    def __str__(self) -> str:
        text = self.message
        where = " ".join(p for p in (self.method, self.path) if p)
        if where:
            status = f" -> HTTP {self.status}" if self.status is not None else ""
            text += f" ({where}{status})"
        if self.detail:
            text += f": {self.detail}"
        if self.ambiguous:
            text += " [ambiguous: the request may have taken effect]"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class AuthenticationError(RescaleError):
    """401/403: the token is missing, wrong, expired or lacks permission."""


class NotFoundError(RescaleError):
    """404: the resource does not exist (or is not visible to this token)."""


class ValidationError(RescaleError):
    """400: the server rejected the request body; `field_errors` is the body the server returned."""

    def __init__(self, message: str, *, field_errors: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field_errors: dict[str, Any] = field_errors or {}


class TransientError(RescaleError):
    """A failure that may pass: connection refused or reset, timeout."""

    transient = True


class ServerError(TransientError):
    """5xx from the server."""


class RateLimitedError(TransientError):
    """429: `retry_after` is the wait the server asked for, in seconds (None if it gave none)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class PaginationError(RescaleError):
    """A list response is malformed, or its `next` link points to another scheme, host or port."""


class IntegrityError(RescaleError):
    """A downloaded file's size or md5 differs from what was expected; the bad partial was deleted."""


class SizeMismatchError(IntegrityError):
    """The server's own headers or body contradict the file's declared size: a proven lie, never retried.

    Nothing past the declared size was written, and the partial was deleted.
    """


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in `text` (a server may echo the Authorization header back)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def shorten(text: str, limit: int = _DETAIL_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
