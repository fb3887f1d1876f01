"""The API token: loaded from a systemd credential, a file or the environment, never shown."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

REDACTED = "<redacted>"


class TokenError(Exception):
    """No usable token could be found, or the one found is stored unsafely."""


class Token:
    """An API token whose text is only reachable through `reveal()`.

    repr/str/format never show it, so it cannot leak through a log line, an exception
    message or a traceback's locals by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise TokenError("the API token is empty")
        if any(c.isspace() for c in value):
            raise TokenError("the API token contains whitespace")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Token({REDACTED})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):  # refuse pickling: a pickle would carry the secret in clear
        raise TypeError("Token cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Token) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class TokenSource:
    """Where to look for the token, in lookup order: credential, file, environment."""

    credential_name: str = "rescale-token"
    file: Path | None = None
    env_var: str = "RESCALE_API_TOKEN"


def _read_token_file(path: Path, *, check_mode: bool) -> Token:
    try:
        st = path.stat()
    except OSError as exc:
        raise TokenError(f"token file {path}: {exc.strerror}") from exc
    if check_mode and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(
            f"token file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    try:
        return Token(path.read_text(encoding="utf-8"))
    except TokenError as exc:
        raise TokenError(f"token file {path}: {exc}") from exc


def load_token(source: TokenSource, environ: dict[str, str] | None = None) -> Token:
    """Find the token: $CREDENTIALS_DIRECTORY/<name> (systemd LoadCredential), then the file, then env."""
    env = os.environ if environ is None else environ
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / source.credential_name).is_file():
        # systemd owns the credential directory's permissions; the file is ours alone.
        return _read_token_file(Path(cred_dir) / source.credential_name, check_mode=False)
    if source.file is not None:
        return _read_token_file(source.file, check_mode=True)
    value = env.get(source.env_var)
    if value:
        return Token(value)
    raise TokenError(
        f"no API token: set LoadCredential={source.credential_name}:<file> in the unit, "
        f"api.token_file in the config, or the {source.env_var} environment variable"
    )
