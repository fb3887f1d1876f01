"""A postgresql:// URL (libpq's URI form) whose password never shows: str(), repr() and redact() hide it."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEMES = ("postgresql://", "postgres://")
REDACTED = "<redacted>"
_QUERY_PASSWORD = re.compile(r"(?<=[?&])password=[^&#]*")


def is_postgres_url(value: object) -> bool:
    return isinstance(value, PostgresUrl) or (isinstance(value, str) and value.startswith(SCHEMES))


class PostgresUrl:
    """`dsn` is the URL as written (passed to libpq only); everything shown is `str(url)`, redacted.

    A plain value class, not a dataclass: the config treats dataclasses as sections."""

    __slots__ = ("dsn",)

    def __init__(self, dsn: str) -> None:
        if not dsn.startswith(SCHEMES):
            raise ValueError("a PostgreSQL URL starts with postgresql://")
        self.dsn = dsn

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PostgresUrl) and other.dsn == self.dsn

    def __hash__(self) -> int:
        return hash(self.dsn)

    def _netloc(self) -> str:
        return urlsplit(self.dsn).netloc

    def _written_passwords(self) -> list[str]:
        """The password as written in the URL: its user part, its password= parameter."""
        userinfo, at, _host = self._netloc().rpartition("@")
        found = [userinfo.partition(":")[2]] if at and ":" in userinfo else []
        query = urlsplit(self.dsn).query
        found += [m.group()[len("password="):] for m in _QUERY_PASSWORD.finditer("&" + query)]
        return [p for p in found if p]

    @property
    def password(self) -> str | None:
        """The password the URL holds itself (discouraged: a passfile keeps it out of the config)."""
        userinfo, at, _host = self._netloc().rpartition("@")
        if at and ":" in userinfo:
            return unquote(userinfo.partition(":")[2])
        query = dict(parse_qsl(urlsplit(self.dsn).query))
        return query.get("password")

    def redact(self, text: str) -> str:
        """`text` (an error message, say) with this URL's password, as written and decoded, hidden."""
        for secret in sorted({*self._written_passwords(), self.password or ""}, key=len, reverse=True):
            if secret:
                text = text.replace(secret, REDACTED)
        return text

    def __str__(self) -> str:
        scheme, _, rest = self.dsn.partition("://")
        netloc = self._netloc()
        userinfo, at, host = netloc.rpartition("@")
        if at and ":" in userinfo:
            rest = f"{userinfo.partition(':')[0]}:{REDACTED}@{host}{rest[len(netloc):]}"
        return f"{scheme}://{_QUERY_PASSWORD.sub('password=' + REDACTED, rest)}"

    def __repr__(self) -> str:
        return f"PostgresUrl({str(self)!r})"
