"""structlog set-up: one JSON object per line on stdout (journald-friendly), secrets scrubbed."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

_SECRETS: list[str] = []


def register_secret(value: str) -> None:
    """Text that must never leave the process in a log line (the API token)."""
    if value and value not in _SECRETS:
        _SECRETS.append(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _SECRETS:
            value = value.replace(secret, "<redacted>")
    return value


def _scrub_processor(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {key: _scrub(val) for key, val in event.items()}


def configure(stream: TextIO | None = None, level: str = "info", *, console: bool = False) -> None:
    """JSON lines to `stream` (stdout by default); `console=True` gives human-readable lines."""
    processors: Iterable[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _scrub_processor,
        structlog.dev.ConsoleRenderer(colors=False) if console else structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=list(processors),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("burst_agent").bind(**bound)
