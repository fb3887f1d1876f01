"""The token is found in credential, file, env order and never shown."""

import traceback
from pathlib import Path

import pytest

from burst_agent.secret import Token, TokenError, TokenSource, load_token

SECRET = "s3cr3t-token-value"


def test_token_never_shown_by_repr_str_or_format():
    token = Token(SECRET)
    for text in (repr(token), str(token), f"{token}", f"{token!r}", repr([token])):
        assert SECRET not in text


def test_token_not_in_traceback_locals():
    token = Token(SECRET)  # noqa: F841 - inspected through the frame locals
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        text = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    assert SECRET not in text


def test_lookup_order_credential_file_env(tmp_path: Path):
    cred = tmp_path / "creds"
    cred.mkdir()
    (cred / "rescale-token").write_text("from-credential\n")
    env = {"CREDENTIALS_DIRECTORY": str(cred), "RESCALE_API_TOKEN": "from-env"}
    assert load_token(TokenSource(), env).reveal() == "from-credential"
    assert load_token(TokenSource(), {"RESCALE_API_TOKEN": "from-env"}).reveal() == "from-env"


def test_token_file_with_loose_permissions_refused(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text(SECRET)
    path.chmod(0o644)
    with pytest.raises(TokenError, match=r"readable by group or others.*chmod 600") as info:
        load_token(TokenSource(file=path), {})
    assert SECRET not in str(info.value)
    path.chmod(0o600)
    assert load_token(TokenSource(file=path), {}).reveal() == SECRET


def test_missing_token_says_where_to_put_it():
    with pytest.raises(TokenError, match="LoadCredential=rescale-token"):
        load_token(TokenSource(), {})
