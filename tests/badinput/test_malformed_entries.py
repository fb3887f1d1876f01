"""The whole bad-input catalogue and a few good jobs in one running agent's spool.

Every bad entry must end in failed/ with a `<name>.reason` that names the problem, no bad entry may
reach Rescale, and the good jobs (before, between and after the bad ones) must still complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from catalogue import CASES, OK_SCRIPT, Case
from conftest import make_rig, past, place
from rig import AgentRig, wait_until

import burst_agent
from burst_agent.lifecycle import JobState
from burst_agent.spool import Spool

SETTLE_TIMEOUT_S = 60
GOOD_SCRIPT = "#!/bin/bash\n#SBATCH -n 1\necho good-{tag} > good.txt\n"
NOBODY = 65534


@dataclass
class Served:
    rig: AgentRig
    good: dict[str, Path]  # entry name -> where its good.txt must land


def _reason(rig: AgentRig, name: str) -> str | None:
    path = rig.spool.failed / f"{name}.reason"
    return path.read_text() if path.exists() else None


def _settled(rig: AgentRig, name: str) -> bool:
    job = rig.job(name) if (rig.root / "state.db").exists() else None
    return _reason(rig, name) is not None or (job is not None and job.terminal)


def _submit_good(rig: AgentRig, tag: str) -> tuple[str, Path]:
    work = rig.workdir(f"good-{tag}")
    name = rig.submit(GOOD_SCRIPT.format(tag=tag), work, job_id=tag)
    return name, work


@pytest.fixture(scope="module")
def served(tmp_path_factory, module_emulator):
    rig = make_rig(tmp_path_factory.mktemp("catalogue") / "agent", module_emulator)
    base = past(3600)
    good: dict[str, Path] = {}
    middle = len(CASES) // 2
    for index, case in enumerate(CASES):
        if index in (0, middle):
            name, work = _submit_good(rig, str(index))
            os.utime(rig.spool.incoming / name, (base + index - 0.5,) * 2)
            good[name] = work
        place(rig.spool, case.name, case.build, base + index)
    plain = "good-plain"  # a plain-file entry: its outputs land in results/<name>/
    place(rig.spool, plain, lambda p: p.write_text("#!/bin/bash\necho plain > good.txt\n"), base - 1)
    good[plain] = rig.spool.results / plain
    name, work = _submit_good(rig, "last")  # after everything bad
    good[name] = work
    rig.start()
    try:
        names = [case.name for case in CASES] + list(good)
        with contextlib.suppress(AssertionError):  # the per-entry tests say which ones never settled
            wait_until(lambda: all(_settled(rig, n) for n in names), SETTLE_TIMEOUT_S, "every entry settled")
        yield Served(rig, good)
    finally:
        rig.stop()


def _where(rig: AgentRig, name: str) -> str:
    places = [d for d in ("incoming", "claimed", "failed") if os.path.lexists(rig.spool.root / d / name)]
    job = rig.job(name)
    return f"entry in {places or 'nowhere'}, job {job.state.value if job else 'not recorded'}" + (
        f" ({job.result.reason})" if job and job.result.reason else "")


@pytest.mark.parametrize("case", CASES, ids=[c.name[:40] for c in CASES])
def test_bad_entry_is_quarantined_with_a_reason_naming_the_problem(served: Served, case: Case) -> None:
    rig = served.rig
    reason = _reason(rig, case.name)
    assert reason is not None, (
        f"BUG? {case.name!r} was not quarantined: {_where(rig, case.name)}. {case.note}".strip())
    assert case.reason in reason, f"reason for {case.name!r} does not name the problem: {reason!r}"
    assert os.path.lexists(rig.spool.failed / case.name), "the entry itself must be kept in failed/"
    assert not os.path.lexists(rig.spool.claimed / case.name)
    job = rig.job(case.name)
    assert job is None or job.state is JobState.FAILED


def test_good_jobs_complete_alongside_the_catalogue(served: Served) -> None:
    rig = served.rig
    for name, outdir in served.good.items():
        job = rig.job(name)
        assert job is not None and job.state is JobState.DONE, (
            f"good entry {name!r} did not complete: {_where(rig, name)}\n{rig.logs()[-3000:]}")
        assert (outdir / "good.txt").read_text().startswith(("good-", "plain"))


def test_no_bad_entry_reached_rescale(served: Served) -> None:
    with served.rig.emulator.store.lock:
        names = " ".join(job.name for job in served.rig.emulator.store.jobs.values())
    reached = [case.name for case in CASES if f"-{case.name}]" in names]
    assert not reached, f"BUG: malformed entries became Rescale jobs (cloud spend): {reached}"


def test_agent_keeps_serving_new_jobs_after_the_catalogue(served: Served) -> None:
    rig = served.rig
    assert rig.proc is not None and rig.proc.poll() is None, "the agent died on bad input"
    name, work = _submit_good(rig, "after")
    job = rig.wait_terminal(name, timeout=60)
    assert job.state is JobState.DONE
    assert (work / "good.txt").read_text() == "good-after\n"


def test_restart_with_a_wedged_claimed_entry_still_serves_new_jobs(tmp_path, module_emulator) -> None:
    """A claimed, unrecorded entry (crash between claim and record) whose load raises must not stop intake."""
    rig = make_rig(tmp_path / "agent", module_emulator)
    wedge = next(case for case in CASES if case.name == "dir-script-is-nested-dirs")
    wedge.build(rig.spool.claimed / wedge.name)
    name, _work = _submit_good(rig, "behind-wedge")
    rig.start()
    try:
        job = rig.wait_job(name, lambda j: j.terminal, timeout=45, what="the good job behind a wedged entry")
        assert job.state is JobState.DONE
        assert _reason(rig, wedge.name) is not None, "the wedged entry should be quarantined with its reason"
    except AssertionError as exc:
        raise AssertionError(f"BUG: an unloadable claimed entry stops intake after restart: {exc}") from None
    finally:
        rig.stop()


# -- unreadable entries: root reads mode 000 files, so the spool code runs as `nobody` here -------

PROBE = """
import json, sys
from burst_agent.spool import Spool, EntryRejected
spool, name = Spool(sys.argv[1]), sys.argv[2]
try:
    spool.take(name)
    outcome = "accepted"
except EntryRejected as exc:
    outcome = "rejected: " + exc.reason
except Exception as exc:
    outcome = f"crash: {type(exc).__name__}: {exc}"
print(json.dumps(outcome))
"""


def _unreadable_file(path: Path) -> None:
    path.write_text(OK_SCRIPT)
    os.chmod(path, 0)


def _unreadable_dir(path: Path) -> None:
    path.mkdir()
    (path / "script").write_text(OK_SCRIPT)
    os.chown(path / "script", NOBODY, NOBODY)
    os.chmod(path, 0)


@pytest.mark.parametrize("build", [_unreadable_file, _unreadable_dir], ids=["mode-000-file", "mode-000-dir"])
def test_unreadable_entry_is_quarantined_by_an_unprivileged_agent(build) -> None:  # type: ignore[no-untyped-def]
    # tmp_path sits under a 0700 directory that `nobody` cannot enter: use a private dir in /tmp.
    root = Path(tempfile.mkdtemp(prefix="burst-badinput-"))
    try:
        os.chmod(root, 0o755)
        spool = Spool(root / "spool").ensure()
        for path in (spool.root, *spool.root.iterdir()):
            os.chown(path, NOBODY, NOBODY)
        entry = spool.incoming / "unreadable"
        build(entry)
        os.chown(entry, NOBODY, NOBODY)
        os.utime(entry, (past(60),) * 2)
        repo = Path(burst_agent.__file__).resolve().parents[1]
        # The venv's interpreter lives under /root (0700); the system Python 3.11 runs the stdlib-only spool.
        done = subprocess.run(
            ["/usr/bin/python3", "-c", PROBE, str(spool.root), "unreadable"], user=NOBODY, group=NOBODY,
            env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}, cwd="/", capture_output=True, text=True,
            timeout=60, check=True,
        )
        outcome = json.loads(done.stdout)
        assert outcome.startswith("rejected:"), (
            f"BUG: an unreadable entry escapes the spool's EntryRejected handling ({outcome}); "
            "intake() catches only AlreadyClaimed/EntryRejected, so this entry would stay in claimed/ "
            "unrecorded and its error would abort every later intake pass")
        assert "ermission" in outcome
        # A mode-000 directory cannot be renamed by its non-owner: it may be refused where it lies.
        reasons = [spool.failed / "unreadable.reason", spool.failed / "unreadable.unmovable.reason"]
        assert any(p.exists() for p in reasons), f"no reason in failed/: {os.listdir(spool.failed)}"
    finally:
        shutil.rmtree(root)  # root ignores the 000 modes
