"""Races on a user's own spool entry: token theft by symlink swap, cache poisoning, name reuse, links.

The swaps are made deterministic with the `stagein.after_hash=wait` failpoint: the agent pauses after
hashing a large input, the attacker (a real unprivileged process holding an fd to its entry) acts,
then the agent goes on.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import (
    RUNUSER,
    SITE_PYTHON,
    USER_A,
    USER_B,
    USER_ENV,
    Site,
    make_private_dir,
    py_as,
    uid,
    write_as,
)
from rig import wait_until

GENUINE = b"genuine input\n" * 200  # 2,800 bytes: over the 1 KiB large-file threshold below
POINT = "stagein.after_hash"

# Runs as the attacker: writes an entry as the relay would, keeps an fd to it, and (if asked) swaps
# input-large-0 for a symlink once the agent has hashed it. argv: spool workdir fpdir target|-.
_ENTRY = r"""
import os, sys, time
from pathlib import Path
from burst_agent.config import StagingConfig
from burst_agent.relay import prepare_inputs
from burst_agent.spool import submit_entry
spool, workdir, fpdir, target = sys.argv[1:5]
script = "#!/bin/bash\ncat big.dat > out.txt\n"
held = []
def build(entry_dir):
    prepare_inputs(entry_dir, Path(workdir), script, StagingConfig(large_file_bytes=1024))
    held.append(os.open(entry_dir, os.O_RDONLY | os.O_DIRECTORY))
print(submit_entry(spool, script, {"workdir": workdir}, build=build), flush=True)
if target != "-":
    while not os.path.exists(f"{fpdir}/stagein.after_hash.reached"):
        time.sleep(0.05)
    fd = held[0]
    os.symlink(target, "evil", dir_fd=fd)
    os.rename("evil", "input-large-0", src_dir_fd=fd, dst_dir_fd=fd)
    Path(fpdir, "swapped").touch()
"""


@pytest.fixture
def paused_site(shared_dir, emu, token):
    root = Path(tempfile.mkdtemp(prefix="site-", dir=shared_dir))
    root.chmod(0o755)
    fpdir = root / "failpoints"
    fpdir.mkdir(mode=0o777)
    fpdir.chmod(0o777)
    site = Site(root, emu, token, extra={"staging": {"large_file_bytes": 1024}},
                env={"BURST_AGENT_FAILPOINTS": f"{POINT}=wait", "BURST_AGENT_FAILPOINT_DIR": str(fpdir)})
    site.start()
    site.extra["fpdir"] = fpdir
    try:
        yield site
    finally:
        site.stop()


def _workdir(site: Site, user: str, data: bytes, mode: int) -> Path:
    workdir = make_private_dir(site.root, user)
    write_as(workdir / "big.dat", data.decode(), user, mode)
    return workdir


def _drop(site: Site, user: str, workdir: Path, target: str = "-") -> subprocess.Popen[str]:
    return subprocess.Popen([RUNUSER, "-u", user, "--", str(SITE_PYTHON), "-c", _ENTRY, str(site.spool),
                             str(workdir), str(site.extra["fpdir"]), target],
                            stdout=subprocess.PIPE, text=True, env={**USER_ENV, "HOME": "/"})


def _release(site: Site, *, after: str | None = None) -> None:
    fpdir = site.extra["fpdir"]
    wait_until(lambda: (fpdir / f"{POINT}.reached").exists(), 60, "the agent to hash the large input")
    if after:
        wait_until(lambda: (fpdir / after).exists(), 30, "the attacker to act")
    (fpdir / f"{POINT}.go").touch()


def _everything_stored(emu_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in emu_dir.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_symlink_swapped_in_after_the_hash_never_uploads_the_token(paused_site, tmp_path, token):
    site = paused_site
    attacker = _drop(site, USER_A, _workdir(site, USER_A, GENUINE, 0o600), str(site.token_file))
    entry = attacker.stdout.readline().strip()
    _release(site, after="swapped")
    assert attacker.wait(timeout=30) == 0
    job = site.wait_terminal(entry)
    assert token.encode() not in _everything_stored(tmp_path / "emulator"), "the token was uploaded"
    out = site.spool / "results" / entry / "out.txt"
    assert job["state"] == "done" and out.read_bytes() == GENUINE  # the bytes opened, never the swap


def test_a_file_rewritten_after_the_hash_never_reaches_another_users_job(paused_site):
    site = paused_site
    a_dir = _workdir(site, USER_A, GENUINE, 0o644)  # world-readable: the relay hard-links it
    entry_a = _drop(site, USER_A, a_dir).stdout.readline().strip()
    wait_until(lambda: (site.extra["fpdir"] / f"{POINT}.reached").exists(), 60, "the hash pass")
    rewrite = "import sys; f = open(sys.argv[1], 'r+b'); f.write(b'echo PWNED   \\n'); f.close()"
    assert py_as(USER_A, rewrite, str(a_dir / "big.dat")).returncode == 0
    _release(site)
    site.wait_terminal(entry_a)
    entry_b = _drop(site, USER_B, _workdir(site, USER_B, GENUINE, 0o644)).stdout.readline().strip()
    assert site.wait_terminal(entry_b)["state"] == "done"
    assert (site.spool / "results" / entry_b / "out.txt").read_bytes() == GENUINE


def _plain_drop(site: Site, user: str, name: str, text: str, mode: int = 0o644) -> None:
    staged = make_private_dir(site.root, user)
    write_as(staged / name, text, user, mode)
    done = py_as(user, "import os, sys; os.rename(sys.argv[1], sys.argv[2])", str(staged / name),
                 str(site.spool / "incoming" / name))
    assert done.returncode == 0, done.stderr


def test_a_second_drop_of_the_same_name_is_a_new_job(site):
    _plain_drop(site, USER_A, "job.sh", "#!/bin/bash\necho first\n")
    assert site.wait_terminal("job.sh")["owner_uid"] == uid(USER_A)
    _plain_drop(site, USER_B, "job.sh", "#!/bin/bash\necho second\n")
    second = site.wait_terminal("job.sh.2")
    assert (second["owner_uid"], second["state"]) == (uid(USER_B), "done")
    assert not (site.spool / "claimed" / "job.sh.2").exists()


def test_a_hard_link_to_a_victims_writable_file_is_not_the_victims_job(site):
    victim = make_private_dir(site.root, USER_B, 0o755)
    write_as(victim / "v.sh", "#!/bin/bash\necho as-victim\n", USER_B, 0o666)
    link = make_private_dir(site.root, USER_A, 0o755) / "v.sh"
    assert py_as(USER_A, "import os, sys; os.link(*sys.argv[1:3])", str(victim / "v.sh"),
                 str(link)).returncode == 0
    (victim / "v.sh").unlink()  # the victim deletes the original: the link is the only name left
    assert py_as(USER_A, "import os, sys; os.rename(*sys.argv[1:3])", str(link),
                 str(site.spool / "incoming" / "v.sh")).returncode == 0
    reason = site.spool / "failed" / "v.sh.reason"
    wait_until(reason.exists, 30, "the forged entry to be quarantined")
    assert "writable by group or others" in reason.read_text() and site.job("v.sh") is None


def test_an_entry_padded_with_a_users_own_subdirectory_still_leaves_claimed(site):
    pad = ("import os, sys; from burst_agent.spool import submit_entry\n"
           "def build(d): os.mkdir(d / 'pad', 0o755); open(d / 'pad' / 'x', 'w').close()\n"
           "print(submit_entry(sys.argv[1], '#!/bin/bash\\necho hi\\n', build=build))")
    done = py_as(USER_A, pad, str(site.spool))
    entry = done.stdout.strip()
    assert site.wait_terminal(entry)["state"] == "done", done.stderr
    wait_until(lambda: not (site.spool / "claimed" / entry).exists(), 30, "the entry to leave claimed/")
    assert "could not be removed" in (site.spool / "failed" / f"{entry}.reason").read_text()

