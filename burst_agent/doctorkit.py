"""doctor's building blocks: a check's Result, the Host (every outside effect, fakeable), the Context."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from burst_agent import mungeauth
from burst_agent.config import ApiConfig, Config
from burst_agent.pgurl import PostgresUrl
from burst_agent.secret import Token

Status = Literal["ok", "warning", "failed"]
API_CONNECT_TIMEOUT_S = 5.0
API_READ_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Result:
    """One row of the checklist: `fix` says what to do when the status is not ok."""

    status: Status
    detail: str
    fix: str = ""


def ok(detail: str) -> Result:
    return Result("ok", detail)


def warning(detail: str, fix: str) -> Result:
    return Result("warning", detail, fix)


def failed(detail: str, fix: str) -> Result:
    return Result("failed", detail, fix)


def skipped(reason: str) -> Result:
    return warning(f"skipped: {reason}", "fix the failed checks above, then run doctor again")


# -- the host: every external effect, replaceable by fakes in tests -------------------------------------


@dataclass(frozen=True)
class Completed:
    """What a command did; returncode None means it did not run to the end (missing, timed out)."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""


def run_command(argv: Sequence[str], timeout: float) -> Completed:
    """Run argv (never through a shell) with a timeout and the C locale."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return Completed(None, "", f"timed out after {timeout:g} s")
    except OSError as exc:
        return Completed(None, "", exc.strerror or str(exc))
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def bind_error(host: str, port: int) -> OSError | None:
    """None if a listener could bind host:port now, else the error bind() gave."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server does
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def http_get(url: str, timeout: float) -> str:
    import requests

    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    return response.text


def make_client(api: ApiConfig, token: Token) -> Any:
    """A client with short timeouts and no retries: doctor reports, it does not wait."""
    from burst_agent.rescale.client import RescaleClient
    from burst_agent.rescale.retry import RetryPolicy

    quick = dataclasses.replace(
        api, connect_timeout_s=min(api.connect_timeout_s, API_CONNECT_TIMEOUT_S),
        read_timeout_s=min(api.read_timeout_s, API_READ_TIMEOUT_S),
    )
    return RescaleClient.from_config(quick, token, retry=RetryPolicy(max_retries=0))


def read_sysctl(name: str) -> str | None:
    """A kernel setting from /proc/sys (`fs.protected_hardlinks` -> /proc/sys/fs/protected_hardlinks)."""
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def others_cannot_run(path: Path) -> tuple[str, str] | None:
    """(why, fix) when a user other than the owner cannot run `path`; None when every user can."""
    try:
        real = path.resolve(strict=True)
        st = real.stat()
    except FileNotFoundError:
        return "does not exist", ""
    except OSError as exc:
        return f"cannot be inspected: {exc.strerror}", ""
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file", ""
    if st.st_mode & 0o005 != 0o005:  # a script needs read as well as execute
        return f"is mode {stat.S_IMODE(st.st_mode):04o}: others cannot read and run it", f"chmod go+rx {real}"
    for parent in real.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            why = f"sits in {parent}, mode {stat.S_IMODE(mode):04o}: others cannot enter it"
            return why, f"chmod go+x {parent}"
    return None


def read_lease(url: PostgresUrl) -> Any:
    """The lease row as `burst-agent status` reads it (leadership.LeaseView, None before schema v8)."""
    from burst_agent.leadership import read_lease as read

    return read(url)


@dataclass
class Host:
    """The outside world as doctor sees it."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    which: Callable[[str], str | None] = shutil.which
    run: Callable[[Sequence[str], float], Completed] = run_command
    make_client: Callable[[ApiConfig, Token], Any] = make_client
    bind_error: Callable[[str, int], OSError | None] = bind_error
    http_get: Callable[[str, float], str] = http_get
    others_cannot_run: Callable[[Path], tuple[str, str] | None] = others_cannot_run
    read_sysctl: Callable[[str], str | None] = read_sysctl
    munge: mungeauth.Runner = mungeauth.run_command  # munge/unmunge with stdin, as the agent runs them
    read_lease: Callable[[PostgresUrl], Any] = read_lease
    hostname: Callable[[], str] = socket.gethostname


@dataclass
class Context:
    """What the checks learn, in table order, for the checks after them."""

    config_path: Path | None
    host: Host = field(default_factory=Host)
    config: Config | None = None
    token: Token | None = None
    coretypes: list[dict[str, Any]] | None = None
    slurm_config: dict[str, str] | None = None
    lua_settings: dict[str, str | None] | None = None
    lua_path: Path | None = None
    state_reachable: bool = False  # the state db check reached its database


Check = Callable[[Context], Result]


def first_line(text: str, default: str = "no output") -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), default)


def burst_partitions(ctx: Context) -> list[str]:
    """The partitions job_submit.lua bursts (its RESCALE_PARTITIONS; "rescale" when unread)."""
    names = (ctx.lua_settings or {}).get("RESCALE_PARTITIONS") or "rescale"
    return [p.strip() for p in names.split(",") if p.strip()]
