"""MUNGE credentials for relays over TCP: the payload's binding, unmunge's output, the agent's checks."""

from __future__ import annotations

import errno

import pytest

from burst_agent.mungeauth import (
    CredentialRefused,
    Decoded,
    Identity,
    MungeError,
    check,
    decode,
    encode,
    parse_unmunge,
    payload_for,
    run_command,
)

REQUEST = b'{"op":"status","entry":"e1","offset":0}'
GOOD = payload_for("10.0.0.5:7557", REQUEST)


def _decoded(status: int = 0, payload: str = GOOD, age: int = 2, uid: int | None = 1001) -> Decoded:
    return Decoded(status=status, uid=uid, gid=1001, encode_time=1000, decode_time=1000 + age,
                   payload=payload.encode())


def test_the_payload_binds_the_exact_request_bytes_and_the_agent_address():
    assert len(GOOD) == 64 and payload_for("10.0.0.5:7557", REQUEST) == GOOD
    assert payload_for("10.0.0.5:7557", REQUEST.replace(b"e1", b"e2")) != GOOD
    assert payload_for("10.0.0.5:7557", REQUEST + b" ") != GOOD
    assert payload_for("10.0.0.6:7557", REQUEST) != GOOD  # another agent (another munged's replay cache)


def test_unmunge_output_is_parsed_and_its_exit_status_wins():
    out = (b"STATUS:          0\nENCODE_TIME:     1796290365\nDECODE_TIME:     1796290366\n"
           b"UID:             1001\nGID:             1002\n\n" + GOOD.encode())
    assert parse_unmunge(0, out) == Decoded(0, 1001, 1002, 1796290365, 1796290366, GOOD.encode())
    assert parse_unmunge(17, out.replace(b"STATUS:          0", b"STATUS:          17")).status == 17
    assert parse_unmunge(8, b"").status == 8
    assert parse_unmunge(0, b"garbage").status == 8  # no STATUS line at all: not a credential


def test_a_valid_credential_for_this_request_gives_munged_s_uid_and_gid():
    assert check(_decoded(), GOOD, 60) == Identity(1001, 1001)


@pytest.mark.parametrize(("status", "kind", "words"), [
    (17, "replayed", "EMUNGE_CRED_REPLAYED"), (15, "expired", "EMUNGE_CRED_EXPIRED"),
    (14, "invalid", "munge.key"), (16, "rewound", "clocks"), (8, "malformed", "not a MUNGE credential"),
    (6, "munged", "cannot reach munged"), (99, "munged", "munge error 99"),
])
def test_munged_s_refusals_are_refused_with_their_reason(status, kind, words):
    with pytest.raises(CredentialRefused, match=words) as refused:
        check(_decoded(status=status), GOOD, 60)
    assert refused.value.kind == kind


def test_a_credential_for_another_payload_is_refused():
    forged = payload_for("10.0.0.5:7557", b'{"op":"cancel","entry":"e1"}')
    with pytest.raises(CredentialRefused, match="another request") as refused:
        check(_decoded(payload=forged), GOOD, 60)
    assert refused.value.kind == "payload"


def test_a_credential_older_than_the_agent_accepts_is_refused_whatever_its_ttl():
    assert check(_decoded(age=60), GOOD, 60).uid == 1001
    with pytest.raises(CredentialRefused, match="61 s ago, over the 60 s") as refused:
        check(_decoded(age=61), GOOD, 60)
    assert refused.value.kind == "expired"


def test_a_decode_without_a_uid_is_refused():
    with pytest.raises(CredentialRefused, match="lacks the uid"):
        check(_decoded(uid=None), GOOD, 60)


def test_encode_sends_the_payload_on_stdin_with_a_short_ttl():
    calls = []

    def runner(argv, data, timeout):
        calls.append((argv, data))
        return 0, b"MUNGE:AwQFAAB=:\n", b""

    assert encode("abc", runner=runner) == b"MUNGE:AwQFAAB=:"
    assert calls == [(("munge", "-t", "60"), b"abc")]


def test_encode_failures_are_munge_errors_with_the_reason():
    with pytest.raises(MungeError, match="cannot reach munged"):
        encode("abc", runner=lambda *_: (6, b"", b"munge: Error: Failed to access socket"))
    with pytest.raises(MungeError, match="made no credential: exit 0"):
        encode("abc", runner=lambda *_: (0, b"not armor\n", b""))


def test_decode_runs_unmunge_on_the_credential_line():
    seen = []
    decoded = decode(b"MUNGE:x:", runner=lambda argv, data, timeout: (seen.append((argv[0], data)) or
                                                                       (17, b"STATUS: 17\n\n", b"")))
    assert decoded.status == 17 and seen == [("unmunge", b"MUNGE:x:\n")]


def test_a_missing_command_is_a_munge_error_not_a_traceback():
    with pytest.raises(MungeError) as missing:
        run_command(("munge-not-installed-here",), b"", 5)
    assert missing.value.errno == errno.ENOENT and "install the munge package" in str(missing.value)
