"""Open the agent's store where `agent.state_db` points: a SQLite file, or a postgresql:// URL."""

from __future__ import annotations

import os
from typing import Any

from burst_agent.pgurl import PostgresUrl, is_postgres_url
from burst_agent.store import JobStore, SqlLedger


def open_store(location: str | os.PathLike[str] | PostgresUrl, **options: Any) -> SqlLedger:
    """JobStore for a path, PostgresStore for a URL (only then is psycopg imported: ~0.2 s)."""
    if is_postgres_url(location):
        from burst_agent.pgstore import PostgresStore

        return PostgresStore(location if isinstance(location, PostgresUrl) else PostgresUrl(str(location)),
                             **options)
    return JobStore(location, **options)
