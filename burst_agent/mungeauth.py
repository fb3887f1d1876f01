"""MUNGE credentials for relays over TCP: a payload bound to one request, munged's decode checked.

The relay runs `munge` (as the job's user: munged records that uid and gid, the user cannot choose
them) with the payload on stdin; the agent runs `unmunge` and believes the uid and gid it reports,
the same trust Slurm places in munged. The payload is a SHA-256 over the exact request bytes and the
agent's address, so a credential proves one request to one agent and nothing else; munged refuses a
credential decoded twice (EMUNGE_CRED_REPLAYED) or past its time-to-live, and the agent also refuses
one older than agent.relay_credential_max_age_s. Nothing here ever logs or repeats a credential.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

PROTOCOL = b"burst-agent relay/1"
CRED_TTL_S = 60  # what a relay asks munged for: a request is made and sent within seconds
CREDENTIAL_MAX = 4096  # an armored credential of a 64-byte payload is about 200 bytes
RUN_TIMEOUT_S = 10.0
# unmunge's metadata, numeric: what the agent needs and nothing else.
UNMUNGE = ("unmunge", "-N", "-k", "STATUS,UID,GID,ENCODE_TIME,DECODE_TIME")

# munge.h's error codes (also unmunge's exit status) -> (kind, why), as the agent refuses them.
STATUS: dict[int, tuple[str, str]] = {
    1: ("munged", "munged failed (EMUNGE_SNAFU)"),
    2: ("malformed", "bad argument (EMUNGE_BAD_ARG)"),
    3: ("malformed", "bad length (EMUNGE_BAD_LENGTH)"),
    4: ("malformed", "buffer overflow (EMUNGE_OVERFLOW)"),
    5: ("munged", "munged is out of memory (EMUNGE_NO_MEMORY)"),
    6: ("munged", "cannot reach munged on the agent's host (EMUNGE_SOCKET)"),
    7: ("munged", "munged timed out (EMUNGE_TIMEOUT)"),
    8: ("malformed", "not a MUNGE credential (EMUNGE_BAD_CRED)"),
    9: ("malformed", "unsupported credential version (EMUNGE_BAD_VERSION)"),
    10: ("malformed", "unsupported cipher (EMUNGE_BAD_CIPHER)"),
    11: ("malformed", "unsupported MAC (EMUNGE_BAD_MAC)"),
    12: ("malformed", "unsupported compression (EMUNGE_BAD_ZIP)"),
    13: ("malformed", "unknown security realm (EMUNGE_BAD_REALM)"),
    14: ("invalid", "invalid credential: made with another munge.key, or altered (EMUNGE_CRED_INVALID)"),
    15: ("expired", "expired credential (EMUNGE_CRED_EXPIRED)"),
    16: ("rewound", "credential from the future: the hosts' clocks disagree (EMUNGE_CRED_REWOUND)"),
    17: ("replayed", "replayed credential: it was decoded before (EMUNGE_CRED_REPLAYED)"),
    18: ("unauthorized", "credential restricted to another uid or gid (EMUNGE_CRED_UNAUTHORIZED)"),
}

Runner = Callable[[tuple[str, ...], bytes, float], tuple[int, bytes, bytes]]


class CredentialRefused(Exception):
    """Why the agent refuses a request's credential (`kind` names it for counting); never its contents."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind


class MungeError(OSError):
    """`munge` or `unmunge` could not be run, or failed to make a credential."""


@dataclass(frozen=True)
class Decoded:
    """What `unmunge` said: its status (0: valid), the creator's uid and gid, the times, the payload."""

    status: int
    uid: int | None = None
    gid: int | None = None
    encode_time: int | None = None
    decode_time: int | None = None
    payload: bytes = b""


@dataclass(frozen=True)
class Identity:
    """The caller as munged vouches for it."""

    uid: int
    gid: int


# -- pure core ------------------------------------------------------------------------------------------


def payload_for(agent: str, request: bytes) -> str:
    """The payload that binds a credential to one request line (without its newline) to one agent
    address (the agent's end of the connection, `relayaddr.socket_name`)."""
    return hashlib.sha256(PROTOCOL + b"\n" + agent.encode() + b"\n" + request).hexdigest()


def parse_unmunge(returncode: int, stdout: bytes) -> Decoded:
    """`unmunge -N` output: `KEY: value` lines, a blank line, the payload. The exit status wins over
    a STATUS line that says otherwise; missing or odd numbers are None (refused by `check`)."""
    head, _blank, payload = stdout.partition(b"\n\n")
    fields: dict[str, int | None] = {}
    for raw in head.decode("ascii", "replace").splitlines():
        key, _colon, value = raw.partition(":")
        fields[key.strip().upper()] = int(value) if value.strip().isdigit() else None
    status = returncode or fields.get("STATUS")
    return Decoded(status=8 if status is None else status, uid=fields.get("UID"), gid=fields.get("GID"),
                   encode_time=fields.get("ENCODE_TIME"), decode_time=fields.get("DECODE_TIME"),
                   payload=payload)


def check(decoded: Decoded, expected: str, max_age_s: float) -> Identity:
    """The caller's identity if munged accepted the credential, it was made for `expected` (the
    payload of the request as received) and is at most `max_age_s` old; else CredentialRefused."""
    if decoded.status:
        kind, why = STATUS.get(decoded.status, ("munged", f"munge error {decoded.status}"))
        raise CredentialRefused(kind, why)
    if None in (decoded.uid, decoded.gid, decoded.encode_time, decoded.decode_time):
        raise CredentialRefused("malformed", "unmunge's answer lacks the uid, gid or times")
    if not hmac.compare_digest(decoded.payload, expected.encode()):
        raise CredentialRefused("payload", "the credential was made for another request or another agent")
    age = decoded.decode_time - decoded.encode_time  # type: ignore[operator]
    if age > max_age_s:
        raise CredentialRefused("expired", f"credential made {age} s ago, over the {max_age_s:g} s accepted")
    return Identity(decoded.uid, decoded.gid)  # type: ignore[arg-type]


def looks_like_credential(line: bytes) -> bool:
    """An armored credential: `MUNGE:` base64 `:`, one line, within CREDENTIAL_MAX."""
    return len(line) <= CREDENTIAL_MAX and line.startswith(b"MUNGE:") and line.endswith(b":") \
        and b"\n" not in line


# -- thin shell over the munge package's commands ---------------------------------------------------------


def run_command(argv: tuple[str, ...], data: bytes, timeout: float) -> tuple[int, bytes, bytes]:
    """Run one of munge's commands with `data` on stdin: (exit status, stdout, stderr)."""
    try:
        done = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise MungeError(errno.ENOENT, f"{argv[0]} not found: install the munge package") from exc
    except subprocess.TimeoutExpired as exc:
        raise MungeError(errno.ETIMEDOUT, f"{argv[0]} did not answer within {timeout:.1f} s") from exc
    except OSError as exc:
        raise MungeError(exc.errno or errno.EIO, f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    return done.returncode, done.stdout, done.stderr


def encode(payload: str, *, ttl_s: int = CRED_TTL_S, runner: Runner = run_command,
           timeout: float = RUN_TIMEOUT_S) -> bytes:
    """A credential for `payload`, made by munged as this process's uid and gid."""
    code, out, err = runner(("munge", "-t", str(ttl_s)), payload.encode(), timeout)
    credential = out.strip()
    if code or not looks_like_credential(credential):
        reason = STATUS.get(code, ("", err.decode(errors="replace").strip()[:200] or f"exit {code}"))[1]
        raise MungeError(errno.EACCES, f"munge made no credential: {reason}")
    return credential


def decode(credential: bytes, *, runner: Runner = run_command, timeout: float = RUN_TIMEOUT_S) -> Decoded:
    """munged's word on `credential` (each credential decodes once: the second time is a replay)."""
    code, out, _err = runner(UNMUNGE, credential + b"\n", timeout)
    return parse_unmunge(code, out)
