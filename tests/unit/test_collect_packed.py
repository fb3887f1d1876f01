"""collect with packed outputs: the archive instead of one request per file, the loose files as fallback."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
from jobkit import make_job, plan
from stagekit import FakeClient, stage_context

from burst_agent.command_wrapper import EXIT_CODE_FILE, OUTPUTS_ARCHIVES
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.collect import FAILURES, StageOutIncomplete, collect
from burst_agent.rescale.errors import IntegrityError

OUTPUTS = {f"out/f{n}.txt": f"file {n}\n".encode() for n in range(5)}
KEPT, SOLE = OUTPUTS_ARCHIVES["all"], OUTPUTS_ARCHIVES["archive"]


def listed(file_id, path, data):
    return {"id": file_id, "relativePath": path, "decryptedSize": len(data),
            "md5": hashlib.md5(data).hexdigest()}


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Client(FakeClient):
    """Lists the exit code, the archive (under `name`) and, if `loose`, every output on its own."""

    def __init__(self, archive: bytes | None, name: str = KEPT, loose: bool = True, broken: bool = False):
        files = {"x1": b"0\n", **{f"o{n}": data for n, data in enumerate(OUTPUTS.values())}}
        listing = [listed("x1", EXIT_CODE_FILE, b"0\n")]
        if archive is not None:
            files["t1"] = archive
            listing.append(listed("t1", name, archive))
        if loose:
            listing += [listed(f"o{n}", path, data) for n, (path, data) in enumerate(OUTPUTS.items())]
        super().__init__(files, iter_job_files=listing)
        self.broken = broken

    def download_file(self, file_id, dest, **checks):
        if self.broken and file_id == "t1":  # as transfer.download does after a corrupt body
            self.calls.append(("download_file", (file_id,)))
            raise IntegrityError("downloaded file is corrupt: md5 0123 != expected 4567")
        return super().download_file(file_id, dest, **checks)

    def downloads(self) -> list[str]:
        return [args[0] for name, args in self.calls if name == "download_file"]


def collected(tmp_path, client, passes: int = 1):
    """The job after `passes` stage-out passes (all but the last must leave it incomplete)."""
    root = tmp_path / "out"
    root.mkdir(exist_ok=True)
    with stage_context(tmp_path, client) as ctx:
        job = make_job(ctx.store, "e", JobState.STAGING_OUT,
                       job_plan=plan(output_dir=str(root), stdout_path=str(root / "output.log")))
        try:
            for _ in range(passes - 1):
                with pytest.raises(StageOutIncomplete, match=SOLE):
                    collect(ctx, job)
            return collect(ctx, job), root
        finally:
            FAILURES.forget(job.id)


def landed(root) -> dict[str, bytes]:
    return {path: (root / path).read_bytes() for path in OUTPUTS if (root / path).exists()}


def test_the_archive_replaces_the_loose_downloads(tmp_path):
    client = Client(tar_of(OUTPUTS))
    job, root = collected(tmp_path, client)
    assert client.downloads() == ["x1", "t1"]  # five outputs, two file requests
    assert job.state is JobState.DONE and landed(root) == OUTPUTS


def test_without_an_archive_every_file_comes_on_its_own(tmp_path):
    client = Client(None)
    job, root = collected(tmp_path, client)
    assert sorted(client.downloads()) == ["o0", "o1", "o2", "o3", "o4", "x1"]
    assert job.state is JobState.DONE and landed(root) == OUTPUTS


def test_a_corrupt_archive_falls_back_to_the_loose_files(tmp_path):
    client = Client(tar_of(OUTPUTS), broken=True)
    job, root = collected(tmp_path, client)
    assert sorted(client.downloads()) == ["o0", "o1", "o2", "o3", "o4", "t1", "x1"]
    assert (job.state, job.result.reason) == (JobState.DONE, None) and landed(root) == OUTPUTS


def test_a_truncated_archive_falls_back_to_the_loose_files(tmp_path):
    whole = tar_of(OUTPUTS)
    job, root = collected(tmp_path, Client(whole[:len(whole) // 2]))  # listed md5 matches: only tar can tell
    assert (job.state, job.result.reason) == (JobState.DONE, None) and landed(root) == OUTPUTS


def test_files_the_archive_does_not_hold_still_come_loose(tmp_path):
    client = Client(tar_of(dict(list(OUTPUTS.items())[:3])), name=SOLE)
    _job, root = collected(tmp_path, client)
    assert sorted(client.downloads()) == ["o3", "o4", "t1", "x1"] and landed(root) == OUTPUTS


def test_a_sole_archive_that_fails_is_retried_then_reported_lost(tmp_path):
    client = Client(tar_of(OUTPUTS), name=SOLE, loose=False, broken=True)
    job, _root = collected(tmp_path, client, passes=3)  # ATTEMPTS: 3 passes for an md5 mismatch
    assert client.downloads().count("t1") == 3
    assert f"outputs not delivered: {SOLE} (IntegrityError: downloaded file is corrupt" in job.result.reason


def test_a_sole_archive_refused_is_named_in_the_reason(tmp_path):
    job, root = collected(tmp_path, Client(b"garbage" * 300, name=SOLE, loose=False))
    assert (job.state, job.result.reason) == (JobState.DONE, f"outputs refused: {SOLE}")
    assert f"output '{SOLE}' refused: not a readable tar archive" in (root / "output.log").read_text()
