"""collect alone: the exit code and outputs fetched from a fake client, and the final state they give."""

from __future__ import annotations

import hashlib

import pytest
from jobkit import make_job, plan
from stagekit import FakeClient, stage_context

from burst_agent.command_wrapper import EXIT_CODE_FILE
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.cancel import vanished_reason
from burst_agent.pipeline.collect import collect, final_state
from burst_agent.pipeline.errors import PermanentJobError
from burst_agent.rescale.errors import NotFoundError
from burst_agent.rescale.ratelimit import BudgetExhausted

S = JobState
OUTPUT = b"result data\n"


def listed(file_id, path, data):
    return {"id": file_id, "relativePath": path, "decryptedSize": len(data),
            "md5": hashlib.md5(data).hexdigest()}


def client_for(exit_code: bytes) -> FakeClient:
    files = {"x1": exit_code, "o1": OUTPUT}
    return FakeClient(files, iter_job_files=[listed("x1", EXIT_CODE_FILE, exit_code),
                                             listed("o1", "out/result.txt", OUTPUT)])


@pytest.fixture
def out(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def staging_out(ctx, out, **changes):
    job_plan = plan(output_dir=str(out), stdout_path=str(out / "output.log"), **changes)
    return make_job(ctx.store, "e", S.STAGING_OUT, job_plan=job_plan)


def test_exit_code_zero_and_an_output_make_the_job_done(tmp_path, out):
    with stage_context(tmp_path, client_for(b"0\n")) as ctx:
        job = collect(ctx, staging_out(ctx, out))
        assert ctx.client.calls == [("iter_job_files", ("R-e",)), ("download_file", ("x1",)),
                                    ("download_file", ("o1",))]
        assert (job.state, job.result.exit_code, job.result.reason) == (S.DONE, 0, None)
        assert (out / "out" / "result.txt").read_bytes() == OUTPUT
        assert not (out / EXIT_CODE_FILE).exists()  # a control file, never an output


def test_a_nonzero_exit_code_fails_the_job_with_it(tmp_path, out):
    with stage_context(tmp_path, client_for(b"3\n")) as ctx:
        job = collect(ctx, staging_out(ctx, out))
        assert (job.state, job.result.exit_code) == (S.FAILED, 3)
        assert job.result.reason == "the script exited with code 3"
        assert (out / "out" / "result.txt").read_bytes() == OUTPUT


def test_a_cancelled_job_ends_cancelled_with_its_outputs(tmp_path, out):
    with stage_context(tmp_path, client_for(b"143\n")) as ctx:
        job = staging_out(ctx, out)
        job = collect(ctx, ctx.store.request_cancel(job.id, ctx.clock()))
        assert (job.state, job.result.exit_code) == (S.CANCELLED, 143)
        assert job.result.reason == "cancelled on request"
        assert (out / "out" / "result.txt").exists()


def test_a_cancelled_job_pulls_no_outputs_when_told_not_to(tmp_path, out):
    with stage_context(tmp_path, client_for(b"143\n"), {"staging": {"pull_outputs_on_cancel": False}}) as ctx:
        job = staging_out(ctx, out)
        job = collect(ctx, ctx.store.request_cancel(job.id, ctx.clock()))
        assert ctx.client.names() == ["iter_job_files", "download_file"]  # the exit code only
        assert job.state is S.CANCELLED and not (out / "out").exists()


def test_an_output_dir_deleted_meanwhile_fails_the_job_before_any_call(tmp_path):
    with stage_context(tmp_path, client_for(b"0\n")) as ctx:
        with pytest.raises(PermanentJobError, match="no longer exists; the outputs stay on Rescale"):
            collect(ctx, staging_out(ctx, tmp_path / "gone"))
        assert ctx.client.calls == []


@pytest.mark.parametrize(("cancelled", "said", "code", "expected"), [
    (False, "Completed successfully", 0, (S.DONE, None, None)),
    (True, "Job was stopped by user", 143, (S.CANCELLED, "cancelled on request", None)),
    (False, None, 3, (S.FAILED, "the script exited with code 3", "exit_code")),
    (False, "Exceeds job walltime", 0, (S.FAILED, "Rescale: Exceeds job walltime", "remote")),
    (False, None, None, (S.FAILED, "no exit code came back: the script did not run to its end", "remote")),
    (False, "Odd news", 2, (S.FAILED, "the script exited with code 2 (Rescale: Odd news)", "exit_code")),
])
def test_final_state_of_a_finished_remote_run(cancelled, said, code, expected):
    assert final_state(cancelled, said, code) == expected


def test_a_stop_made_on_rescale_fails_the_job_as_cancelled_there():
    state, reason, reason_class = final_state(False, "Job was stopped by user", 143)
    assert (state, reason_class) == (S.FAILED, "cancelled")
    assert reason == ("stopped on Rescale, not by burst-agent (Rescale: Job was stopped by user); "
                      "the script exited with code 143")


def test_a_remote_job_gone_before_its_outputs_fails_the_job_and_quarantines_its_entry(tmp_path, out):
    gone = NotFoundError("no such job", status=404)
    with stage_context(tmp_path, FakeClient(iter_job_files=gone, job_statuses=gone)) as ctx:
        (ctx.spool.claimed / "e").write_text("#!/bin/bash\necho hi\n")
        job = collect(ctx, staging_out(ctx, out))
        assert ctx.client.calls == [("iter_job_files", ("R-e",)), ("job_statuses", ("R-e",))]
        assert (job.state, job.result.reason) == (S.FAILED, vanished_reason("R-e"))
        assert (ctx.spool.failed / "e.reason").read_text().startswith(vanished_reason("R-e"))


def test_outputs_come_over_as_many_ranges_as_the_config_says(tmp_path, out):
    client, asked = client_for(b"0\n"), []
    fetch = client.download_file
    client.download_file = lambda file_id, dest, **kw: (asked.append(kw), fetch(file_id, dest))[1]
    config = {"staging": {"range_connections": 3, "range_min_bytes": 1024}}
    with stage_context(tmp_path, client, config) as ctx:
        collect(ctx, staging_out(ctx, out))
    outputs = [kw for kw in asked if "progress" in kw]  # not the exit code, fetched into memory
    assert [(kw["range_connections"], kw["range_min_bytes"]) for kw in outputs] == [(3, 1024)]


class SpentOnce(FakeClient):
    """The file-access budget is spent at the first output's download (a worker may not wait for it)."""

    spent = True

    def download_file(self, file_id, dest, **checks):
        if file_id == "o1" and self.spent:
            self.spent = False
            raise BudgetExhausted("file-access", 1.0)
        return super().download_file(file_id, dest, **checks)


def test_a_spent_budget_mid_stage_out_fails_no_file_and_the_next_pass_reads_no_exit_code_again(tmp_path, out):
    client = SpentOnce(client_for(b"0\n").files, iter_job_files=client_for(b"0\n").answers["iter_job_files"])
    with stage_context(tmp_path, client) as ctx:
        job = staging_out(ctx, out)
        with pytest.raises(BudgetExhausted):
            collect(ctx, job)
        job = collect(ctx, ctx.store.get(job.id))
        assert (job.state, job.result.exit_code, job.result.reason) == (S.DONE, 0, None)
        assert (out / "out" / "result.txt").read_bytes() == OUTPUT
    assert not client.spent  # the first pass found the budget spent at o1 (recorded only when it goes)
    assert client.calls == [("iter_job_files", ("R-e",)), ("download_file", ("x1",)),
                            ("iter_job_files", ("R-e",)), ("download_file", ("o1",))]
