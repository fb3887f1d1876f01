"""doctor and `config check` against the mistakes of a by-hand setup: token perms, relay path, spool, GPUs."""

from __future__ import annotations

import io
import os
import pickle
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from burst_agent import doctor
from burst_agent.commands.config import check as config_check
from burst_agent.config import config_from_mapping
from burst_agent.doctor import Context, Host
from burst_agent.secret import TokenError, TokenSource, load_token

SECRET = "s3cret-token-value-42"
NOBODY = pwd.getpwnam("nobody")


def as_other_user(fn: Callable[[], Any]) -> Any:
    """fn() in a child process running as `nobody` (root can read every file); its result or exception."""
    if os.geteuid() != 0:
        return fn()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run, send back what happened, never return into pytest
        try:
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            try:
                outcome: tuple[str, Any] = ("ok", fn())
            except Exception as exc:
                outcome = ("raised", f"{type(exc).__name__}: {exc}")
            os.write(write, pickle.dumps(outcome))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "raised":
        raise AssertionError(f"as another user: {value}")
    return value


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path lives under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="doctor-setup-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def root_only_token(directory: Path) -> Path:
    path = directory / "token"
    path.write_text(SECRET)
    path.chmod(0o600 if os.geteuid() == 0 else 0o000)
    return path


def me() -> str:
    return NOBODY.pw_name if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


# -- a token file the agent's user cannot read ------------------------------------------------------------


def test_unreadable_token_file_is_one_line_with_owner_mode_and_the_chown(open_dir: Path):
    token = root_only_token(open_dir)
    c = Context(None, Host(environ={}))
    c.config = config_from_mapping({"api": {"token_file": str(token)}})
    result = as_other_user(lambda: doctor.check_token(c))
    assert result.status == "failed"
    assert result.detail.startswith(f"token file {token}: not readable by user {me()} (owner ")
    assert "must own it, mode 0600" in result.detail and "\n" not in result.detail
    assert result.fix == f"chown {me()}: {token} && chmod 600 {token}"
    assert SECRET not in result.detail + result.fix


def token_error(source: TokenSource) -> str:
    try:
        load_token(source, {})
    except TokenError as exc:
        return str(exc)
    return "no error"


def test_token_behind_an_unsearchable_directory_names_the_directory(open_dir: Path):
    private = open_dir / "private"
    private.mkdir(mode=0o700 if os.geteuid() == 0 else 0o600)
    message = as_other_user(lambda: token_error(TokenSource(file=private / "token")))
    assert message == (f"token file {private / 'token'}: user {me()} cannot reach it (a directory on its "
                       f"path is not searchable by that user); run: chmod o+x {private}")


def test_config_check_with_an_unreadable_token_prints_one_line_not_a_traceback(open_dir: Path):
    token = root_only_token(open_dir)
    config = open_dir / "agent.yaml"
    config.write_text(f"api:\n  token_file: {token}\n")
    config.chmod(0o644)

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return config_check(config, {}, out, err), out.getvalue(), err.getvalue()

    code, out, err = as_other_user(run)
    assert (code, err) == (0, "")
    line = next(x for x in out.splitlines() if x.startswith("# token:"))
    assert line.startswith(f"# token: not found: token file {token}: not readable by user {me()}")
    assert line.endswith(f"run: chown {me()}: {token} && chmod 600 {token}")


# -- the plugin's BURST_AGENT and SPOOL_DIR against this host and the agent's config ------------------------


def lua_ctx(lua: str, directory: Path, config: dict[str, Any] | None = None) -> Context:
    (directory / "job_submit.lua").write_text(f"-- burst-agent\n{lua}")
    c = Context(None, Host(environ={}))
    c.config = config_from_mapping(config or {})
    c.slurm_config = {"SLURM_CONF": str(directory / "slurm.conf")}
    assert doctor.check_slurm_lua(c).status == "ok"
    return c


def test_relay_only_root_may_run_fails_with_the_chmod(open_dir: Path):
    exe = open_dir / "burst-agent"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o750)
    c = lua_ctx(f'local BURST_AGENT = "{exe}"\n', open_dir)
    result = doctor.check_slurm_relay(c)
    assert result.detail.startswith(f"{exe} (BURST_AGENT in job_submit.lua) is mode 0750: others cannot")
    assert (result.status, result.fix) == ("failed", f"chmod go+rx {exe}")
    exe.chmod(0o755)
    assert doctor.check_slurm_relay(c) == doctor.ok(f"{exe} is executable by every user")


def test_relay_in_a_private_directory_fails_naming_the_directory(open_dir: Path):
    (open_dir / "venv").mkdir(mode=0o700)
    (open_dir / "venv" / "burst-agent").write_text("#!/bin/sh\n")
    (open_dir / "venv" / "burst-agent").chmod(0o755)
    c = lua_ctx(f'local BURST_AGENT = "{open_dir}/venv/burst-agent"\n', open_dir)
    result = doctor.check_slurm_relay(c)
    assert result.fix == f"chmod go+x {open_dir / 'venv'}"


def test_relay_default_is_the_documented_venv(tmp_path: Path):
    c = lua_ctx("local SPOOL_DIR = nil\n", tmp_path)
    c.host = Host(environ={}, others_cannot_run=lambda path: ("does not exist", ""))
    result = doctor.check_slurm_relay(c)
    assert result.detail.startswith("/opt/burst-agent/venv/bin/burst-agent (BURST_AGENT in job_submit.lua)")
    assert f"or set BURST_AGENT in {tmp_path / 'job_submit.lua'}" in result.fix


def test_plugin_spool_nil_against_another_agent_spool_fails_with_the_setting(tmp_path: Path):
    c = lua_ctx("local SPOOL_DIR = nil  -- comment\n", tmp_path, {"agent": {"spool_dir": "/srv/spool"}})
    result = doctor.check_slurm_spool(c)
    assert result.status == "failed"
    assert result.detail.startswith(
        "job_submit.lua SPOOL_DIR is nil (the relay's default /var/spool/burst-agent) but agent.spool_dir is "
        "/srv/spool")
    assert result.fix.startswith(f'set local SPOOL_DIR = "/srv/spool" in {tmp_path / "job_submit.lua"}, or ')


def test_plugin_spool_set_to_the_agent_spool_is_ok(tmp_path: Path):
    c = lua_ctx('local SPOOL_DIR = "/srv/spool/"\n', tmp_path, {"agent": {"spool_dir": "/srv/spool"}})
    assert doctor.check_slurm_spool(c) == doctor.ok('job_submit.lua SPOOL_DIR "/srv/spool/" is '
                                                    "agent.spool_dir")
    assert doctor.check_slurm_spool(lua_ctx("local SPOOL_DIR = nil\n", tmp_path)).status == "ok"


# -- GPU coretypes: the catalogue has no GPU count ----------------------------------------------------------


def test_empty_gpu_coretypes_warns_naming_the_catalogue_gpu_coretypes_and_the_key():
    c = Context(None, Host(environ={}))
    c.config = config_from_mapping({})
    c.coretypes = [{"code": code, "name": code, "cores": [8], "memory": 4000, "price": 1}
                   for code in ("emerald", "gpu-ampere", "gpu-tesla")]
    result = doctor.check_gpu_coretypes(c)
    assert result.status == "warning"
    assert result.detail.startswith("translate.gpu_coretypes is empty: every GPU job is refused")
    assert result.detail.endswith("GPU coretypes in the catalogue: gpu-ampere, gpu-tesla")
    assert "translate: {gpu_coretypes: {CODE: 0.125}}" in result.fix


def test_configured_gpu_coretypes_are_ok():
    c = Context(None, Host(environ={}))
    c.config = config_from_mapping({"translate": {"gpu_coretypes": {"gpu-ampere": 0.125}}})
    assert doctor.check_gpu_coretypes(c) == doctor.ok("1 GPU coretype(s): gpu-ampere")
