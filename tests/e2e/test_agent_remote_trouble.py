"""Remote trouble of one job stays that job's: jobs and cached inputs deleted on Rescale, remote stops."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import requests
from waiting import wait_until
from werkzeug.test import Client

from burst_agent.lifecycle import JobState

LONG = "#!/bin/bash\necho started\nsleep 120\n"
SHORT = "#!/bin/bash\nsleep 12\necho done-b > b.txt\n"  # outlives two polls (5 s)
GONE = "no longer exists on Rescale (deleted there?)"


def _api(rig, method: str, path: str, **kw) -> requests.Response:
    """Rescale's API as its web UI would use it (someone else, not the agent)."""
    headers = {"Authorization": f"Token {rig.emulator.token}"}
    return requests.request(method, f"{rig.emulator.url}/api/v2/{path}", headers=headers, timeout=10, **kw)


def _stop_and_delete(rig, remote_id: str, *, unseen: bool = False) -> None:
    """Stop the remote job, wait until it completed, delete it (the doc forbids deleting a running job).

    `unseen`: with the API unreachable for the agent meanwhile, so that it never sees the completion
    and meets only the 404 of a job that is gone (the emulator's own views are called directly).
    """
    if unseen:
        rig.emulator.go_offline()
        client, auth = Client(rig.emulator.app), {"Authorization": f"Token {rig.emulator.token}"}

        def call(method: str, path: str) -> int:
            return client.open(f"/api/v2/{path}", method=method, headers=auth).status_code
    else:
        def call(method: str, path: str) -> int:
            return _api(rig, method, path).status_code
    try:
        assert call("POST", f"jobs/{remote_id}/stop/") == 202
        wait_until(lambda: rig.emulator.store.jobs[remote_id].completed, 20, "the remote stop")
        assert call("DELETE", f"jobs/{remote_id}/") == 204
        assert call("GET", f"jobs/{remote_id}/statuses/") == 404
    finally:
        rig.emulator.go_online()


def _executing(rig, *entries: str) -> list[str]:
    return [rig.wait_job(e, lambda j: j.remote.status == "Executing", what=f"{e} Executing").remote_job_id
            for e in entries]


def _cancel(rig, entry: str) -> None:
    cli = [sys.executable, "-m", "burst_agent.cli", "cancel", "--config", str(rig.config_path), entry]
    subprocess.run(cli, capture_output=True, text=True, check=True)


def test_a_job_deleted_on_rescale_fails_alone_and_the_other_job_completes(rig):
    work_a, work_b = rig.workdir("a"), rig.workdir("b")
    rig.start()
    entry_a = rig.submit(LONG, work_a, job_id="1")
    entry_b = rig.submit(SHORT, work_b, job_id="2")
    remote_a, _ = _executing(rig, entry_a, entry_b)
    _stop_and_delete(rig, remote_a, unseen=True)
    job_b = rig.wait_terminal(entry_b, timeout=60)
    assert (job_b.state, job_b.result.exit_code) == (JobState.DONE, 0)
    assert (work_b / "b.txt").read_text() == "done-b\n"
    job_a = rig.wait_terminal(entry_a, timeout=30)
    assert job_a.state is JobState.FAILED
    assert f"the remote job {remote_a} {GONE}" in job_a.result.reason
    assert "Traceback" not in rig.logs()


def test_cancel_of_a_job_deleted_on_rescale_ends_it(rig):
    work = rig.workdir("c")
    rig.start()
    entry = rig.submit(LONG, work, job_id="3")
    (remote,) = _executing(rig, entry)
    rig.emulator.go_offline()
    _cancel(rig, entry)  # asked while the agent cannot reach Rescale: its stop will meet the 404
    _stop_and_delete(rig, remote, unseen=True)
    job = rig.wait_terminal(entry, timeout=40)
    assert job.state is JobState.CANCELLED
    assert f"cancelled; the remote job {remote} {GONE}" in job.result.reason
    assert "Traceback" not in rig.logs()


def test_after_a_restart_a_deleted_job_ends_and_the_others_go_on(rig):
    work_a, work_b, work_c = rig.workdir("a"), rig.workdir("b"), rig.workdir("c")
    rig.start()
    entry_a = rig.submit(LONG, work_a, job_id="4")
    entry_c = rig.submit(LONG, work_c, job_id="6")
    entry_b = rig.submit(SHORT, work_b, job_id="5")
    remote_a, remote_c, _ = _executing(rig, entry_a, entry_c, entry_b)
    rig.stop()
    _stop_and_delete(rig, remote_a)
    _stop_and_delete(rig, remote_c)
    _cancel(rig, entry_c)
    rig.start()
    assert rig.wait_terminal(entry_b, timeout=60).state is JobState.DONE
    assert (work_b / "b.txt").read_text() == "done-b\n"
    job_a, job_c = rig.wait_terminal(entry_a, timeout=30), rig.wait_terminal(entry_c, timeout=30)
    assert job_a.state is JobState.FAILED and f"{remote_a} {GONE}" in job_a.result.reason
    assert job_c.state is JobState.CANCELLED and f"{remote_c} {GONE}" in job_c.result.reason
    assert "Traceback" not in rig.logs()


def test_a_stop_in_rescales_web_ui_carries_rescales_reason(rig):
    work = rig.workdir("ui")
    rig.start()
    entry = rig.submit(LONG, work, job_id="7")
    (remote,) = _executing(rig, entry)
    assert _api(rig, "POST", f"jobs/{remote}/stop/").status_code == 202
    job = rig.wait_terminal(entry, timeout=40)
    assert job.state is JobState.FAILED and job.result.exit_code == 143
    assert "stopped on Rescale, not by burst-agent (Rescale: Job stopped by user)" in job.result.reason


LARGE = bytes(range(256)) * 16  # 4 KiB: large with staging.large_file_bytes = 1024
MD5_SCRIPT = "#!/bin/bash\nmd5sum mesh.bin > sum.txt\n"


def _large_rig(tmp_path, emulator):
    from rig import AgentRig

    (tmp_path / "large").mkdir()
    return AgentRig(tmp_path / "large", emulator, extra_config={"staging": {"large_file_bytes": 1024}})


def test_a_cached_input_deleted_on_rescale_is_uploaded_again(tmp_path, emulator):
    rig = _large_rig(tmp_path, emulator)
    try:
        rig.start()
        first = rig.wait_terminal(rig.submit(MD5_SCRIPT, rig.workdir("one", {"mesh.bin": LARGE}), "11"))
        assert first.state is JobState.DONE
        large_id = first.inputs.file_ids[1]  # the bundle comes first
        assert _api(rig, "DELETE", f"files/{large_id}/").status_code == 204
        work = rig.workdir("two", {"mesh.bin": LARGE})
        second = rig.wait_terminal(rig.submit(MD5_SCRIPT, work, "12"))
        assert (second.state, second.result.exit_code) == (JobState.DONE, 0), second.result.reason
        assert second.inputs.file_ids[1] != large_id
        assert (work / "sum.txt").read_text() == (tmp_path / "large" / "work" / "one" / "sum.txt").read_text()
    finally:
        rig.stop()


def test_a_reupload_refused_again_fails_the_job_instead_of_looping(tmp_path, emulator, monkeypatch):
    rig = _large_rig(tmp_path, emulator)
    try:
        rig.start()
        first = rig.wait_terminal(rig.submit(MD5_SCRIPT, rig.workdir("one", {"mesh.bin": LARGE}), "21"))
        large_id = first.inputs.file_ids[1]
        name = emulator.store.files[large_id].name
        assert _api(rig, "DELETE", f"files/{large_id}/").status_code == 204
        store, add = emulator.store, emulator.store.add_file
        # From now on every upload of the large file is gone at once, as if deleted at every turn.
        monkeypatch.setattr(store, "add_file",
                            lambda rec: add(dataclasses.replace(rec, deleted=rec.name == name)))
        second = rig.wait_terminal(rig.submit(MD5_SCRIPT, rig.workdir("two", {"mesh.bin": LARGE}), "22"))
        assert second.state is JobState.FAILED
        assert "does not exist" in second.result.reason
        assert "refused again after its vanished cached inputs were uploaded anew" in second.result.reason
    finally:
        rig.stop()
