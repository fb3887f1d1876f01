"""Remote output paths never write outside the job's directory: `..`, absolute names, planted symlinks.

Both delivery paths: direct (the agent writes the workdir) and relay (the relay writes it as the user).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

from conftest import USER_A, inject_output, make_private_dir, py_as, remote_job_for, start_relay, write_as
from waiting import wait_until

# Remote relativePaths a hostile or broken API could send; none may land outside the workdir.
HOSTILE_NAMES = (
    "../escaped-1.txt",
    "a/../../escaped-2.txt",
    "./../escaped-3.txt",
    "sub/../../../escaped-4.txt",
    "..",
    "/tmp/burst-sec-abs-{tag}.txt",
    "//tmp/burst-sec-dbl-{tag}.txt",
    "..\\escaped-5.txt",
    ".burst-staging/planted.txt",
    "evil\nname.txt",
)

# The remote script makes outputs whose names collide with the symlinks planted in the workdir.
COLLIDING_SCRIPT = """#!/bin/bash
mkdir -p results etcdir
echo remote > out.txt
echo remote > results/x
echo remote > etcdir/burst-sec-{tag}
echo fine > fine.txt
sleep 3
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plant(workdir: Path, victims: Path, tag: str) -> dict[str, object]:
    """Symlinks in the workdir pointing at things outside it; returns what must stay as it is."""
    victim_file = victims / "bashrc"
    victim_file.write_text("# the user's own file\n")
    victim_dir = victims / "results-target"
    victim_dir.mkdir()
    (victim_dir / "keep").write_text("keep\n")
    links = {"out.txt": victim_file, "results": victim_dir, "etcdir": Path("/etc")}
    for name, target in links.items():
        os.symlink(target, workdir / name)
    return {"file": (victim_file, _digest(victim_file)), "dir": (victim_dir, ["keep"]), "links": links,
            "etc": Path(f"/etc/burst-sec-{tag}")}


def _assert_untouched(workdir: Path, planted: dict[str, object]) -> None:
    victim_file, digest = planted["file"]
    assert _digest(victim_file) == digest, f"{victim_file} was written through the planted symlink"
    victim_dir, listing = planted["dir"]
    assert sorted(os.listdir(victim_dir)) == listing, f"{victim_dir} gained files through 'results'"
    etc = planted["etc"]
    assert not etc.exists(), f"{etc} was created through the planted 'etcdir -> /etc' symlink"
    for name, target in planted["links"].items():
        assert os.readlink(workdir / name) == str(target), f"the symlink {name} was replaced"


def _assert_nothing_escaped(roots: list[Path], tag: str) -> None:
    """No file named like a hostile output anywhere under `roots`, nor at the absolute names."""
    found = [os.path.join(d, n) for root in roots for d, _dirs, names in os.walk(root)
             for n in names if n.startswith("escaped-") or n == "planted.txt"]
    assert not found, f"hostile outputs were written: {found}"
    for absolute in (f"/tmp/burst-sec-abs-{tag}.txt", f"/tmp/burst-sec-dbl-{tag}.txt", "/escaped-1.txt"):
        assert not os.path.exists(absolute), f"an absolute remote path was written: {absolute}"


def _assert_each_refused(log: str, tag: str) -> None:
    for name in HOSTILE_NAMES:
        assert f"output {name.format(tag=tag)!r} refused" in log, f"no refusal note for {name!r}:\n{log}"


def test_direct_delivery_never_follows_planted_symlinks(rig, tmp_path):
    tag = secrets.token_hex(4)
    work = rig.workdir("planted")
    victims = tmp_path / "victims"
    victims.mkdir()
    planted = _plant(work, victims, tag)
    try:
        rig.start()
        job = rig.wait_terminal(rig.submit(COLLIDING_SCRIPT.format(tag=tag), work, job_id="7"))
        _assert_untouched(work, planted)
    finally:
        Path(f"/etc/burst-sec-{tag}").unlink(missing_ok=True)
    assert (work / "fine.txt").read_text() == "fine\n", "a refused output stopped the others"
    log = (work / "slurm-7.out").read_text()
    for name in ("out.txt", "results/x", f"etcdir/burst-sec-{tag}"):
        assert f"output '{name}' refused" in log, f"no refusal note for {name} in the job log:\n{log}"
    assert "outputs refused" in (job.result.reason or "")


def test_direct_delivery_refuses_hostile_remote_names(rig, tmp_path):
    tag = secrets.token_hex(4)
    work = rig.workdir("hostile")
    rig.start()
    entry = rig.submit("#!/bin/bash\nsleep 3\necho fine > fine.txt\n", work, job_id="8")
    remote = wait_until(lambda: (j := remote_job_for(rig.emulator, "SLURM_JOB_ID=8 ")) and
                        j.status == "Executing" and j, 60, "the remote job executing")
    for name in HOSTILE_NAMES:
        inject_output(rig.emulator, remote.id, name.format(tag=tag), b"evil\n", tmp_path / "payloads")
    rig.wait_terminal(entry)
    _assert_nothing_escaped([rig.root], tag)
    assert (work / "fine.txt").read_text() == "fine\n"
    assert sorted(os.listdir(work)) == ["fine.txt", "slurm-8.out"], "something unexpected was written"
    _assert_each_refused((work / "slurm-8.out").read_text(), tag)


def test_relay_delivery_never_follows_planted_symlinks(site, shared_dir):
    """The relay writes as the user: a workdir symlink must not redirect it to the user's other files."""
    tag = secrets.token_hex(4)
    work = make_private_dir(shared_dir, USER_A)
    victims = make_private_dir(shared_dir, USER_A)
    planted = _plant(work, victims, tag)
    for path in (victims / "bashrc", victims / "results-target", victims / "results-target" / "keep"):
        os.chown(path, *(os.stat(victims).st_uid, os.stat(victims).st_gid))
    for name in planted["links"]:
        os.lchown(work / name, os.stat(work).st_uid, os.stat(work).st_gid)
    relay = start_relay(USER_A, work, site.spool, COLLIDING_SCRIPT.format(tag=tag), "9101")
    try:
        code = relay.wait(timeout=120)
    finally:
        if relay.poll() is None:
            relay.kill()
    out = (work / "slurm-9101.out").read_text()
    _assert_untouched(work, planted)
    assert code == 0 and (work / "fine.txt").exists(), (
        f"a refused output (planted symlink) must not crash the relay, stop the other outputs "
        f"(fine.txt) nor lose the remote exit code 0; "
        f"relay exited {code}:\n{out[-2500:]}"
    )
    for name in ("out.txt", "results/x"):
        assert f"output {name} not written" in out or f"output '{name}' refused" in out, out


def test_relay_delivery_refuses_hostile_remote_names(site, shared_dir, emu, tmp_path):
    tag = secrets.token_hex(4)
    work = make_private_dir(shared_dir, USER_A)
    relay = start_relay(USER_A, work, site.spool, "#!/bin/bash\nsleep 4\necho fine > fine.txt\n", "9102")
    try:
        remote = wait_until(lambda: (j := remote_job_for(emu, "SLURM_JOB_ID=9102 ")) and
                            j.status == "Executing" and j, 60, "the remote job executing")
        for name in HOSTILE_NAMES:
            inject_output(emu, remote.id, name.format(tag=tag), b"evil\n", tmp_path / "payloads")
        code = relay.wait(timeout=120)
    finally:
        if relay.poll() is None:
            relay.kill()
    out = (work / "slurm-9102.out").read_text()
    _assert_nothing_escaped([shared_dir], tag)
    assert (work / "fine.txt").read_text() == "fine\n", out
    expected = {"fine.txt", "slurm-9102.out", "job-9102.sh", "request-9102.json"}
    assert set(os.listdir(work)) == expected, f"unexpected files in the workdir: {os.listdir(work)}"
    _assert_each_refused(out, tag)
    assert code == 0, f"relay exit {code}\n{out[-2000:]}"


def test_relay_cannot_ask_the_agent_for_files_outside_its_results(site, shared_dir):
    """The `output` op takes a path from the relay: it must stay inside the job's results copy."""
    work = make_private_dir(shared_dir, USER_A)
    write_as(work / "in.txt", "x\n", USER_A)
    probe = (
        "import json,sys; from burst_agent.spool import submit_entry; "
        "from burst_agent.relay import prepare_inputs; from burst_agent.config import StagingConfig; "
        "from pathlib import Path; w=Path(sys.argv[2]); s='#!/bin/bash\\necho o > o.txt\\n'; "
        "print(submit_entry(sys.argv[1], s, {'workdir': str(w), 'job_id': '9103'}, "
        "build=lambda d: prepare_inputs(d, w, s, StagingConfig())))"
    )
    done = py_as(USER_A, probe, str(site.spool), str(work), cwd=work)
    assert done.returncode == 0, done.stderr
    entry = done.stdout.strip()
    site.wait_terminal(entry)
    ask = ("import json,sys,os; from burst_agent.relayproto import call; out=[]\n"
           "for p in sys.argv[3:]:\n"
           " a,fds=call(sys.argv[1],{'op':'output','entry':sys.argv[2],'path':p})\n"
           " data=os.read(fds[0],4096).decode(errors='replace') if fds else None\n out.append([a,data])\n"
           "print(json.dumps(out))")
    token_rel = os.path.relpath(site.token_file, site.spool / "results" / entry)
    paths = ["o.txt", token_rel, str(site.token_file), "../../state/token", "../" + entry, "/etc/shadow"]
    answer = py_as(USER_A, ask, str(site.spool / "agent.sock"), entry, *paths)
    assert answer.returncode == 0, answer.stderr
    results = json.loads(answer.stdout)
    assert results[0][1] == "o\n", f"positive control failed: {results[0]}"
    for path, (reply, data) in zip(paths[1:], results[1:], strict=True):
        assert data is None and "error" in reply, f"output {path!r} was served: {reply} {data!r}"
        assert site.token not in json.dumps(reply)
