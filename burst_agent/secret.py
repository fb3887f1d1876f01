"""The API token: loaded from a systemd credential, a file or the environment, never shown."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

REDACTED = "<redacted>"


class TokenError(Exception):
    """No usable token could be found, or the one found is stored unsafely; `fix` is a command, if any."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}; run: {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix


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


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _unreadable(path: Path, st: os.stat_result | None) -> TokenError:
    """Which file, which user, what it is now, what it must be, and the command that fixes it."""
    me = _user(os.geteuid())
    if st is None:
        return TokenError(f"token file {path}: user {me} cannot reach it (a directory on its path is not "
                          "searchable by that user)", f"chmod o+x {path.parent}")
    return TokenError(
        f"token file {path}: not readable by user {me} (owner {_user(st.st_uid)}:{_group(st.st_gid)}, "
        f"mode {stat.S_IMODE(st.st_mode):04o}); the user that runs the agent must own it, mode 0600",
        f"chown {me}: {path} && chmod 600 {path}",
    )


def _read_token_file(path: Path, *, check_mode: bool) -> Token:
    try:
        st = path.stat()
    except PermissionError as exc:
        raise _unreadable(path, None) from exc
    except OSError as exc:
        raise TokenError(f"token file {path}: {exc.strerror}") from exc
    if check_mode and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(
            f"token file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
            f"chmod 600 {path}",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError as exc:
        raise _unreadable(path, st) from exc
    except OSError as exc:
        raise TokenError(f"token file {path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise TokenError(f"token file {path}: not UTF-8 text") from exc
    try:
        return Token(text)
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
