"""The relay keeps its Slurm job's Comment: on a phase change, at the end, in the database once ended."""

import io

import pytest

from burst_agent import relay


class Ran(list):
    """The commands the relay ran, and what each command name answers (True: it succeeded)."""

    answers = {"scontrol": True, "sacctmgr": True}


@pytest.fixture
def ran(monkeypatch):
    calls = Ran()
    calls.answers = dict(Ran.answers)
    monkeypatch.setattr(relay, "_ran", lambda argv: calls.append(argv) or calls.answers[argv[0]])
    return calls


def make(tmp_path, **kw) -> relay.Relay:
    return relay.Relay(tmp_path, io.BytesIO(), environ={"SLURM_JOB_ID": "41"}, **kw)


def answer(phase: str, cost: str) -> dict:
    return {"phase": phase, "remote_job_id": "AbCd", "record": f"{phase} | rescale=AbCd cost~={cost}"}


def test_a_phase_change_is_recorded_a_cost_tick_is_not_and_the_end_always_is(tmp_path, ran):
    r = make(tmp_path)
    r._record(answer("queued on Rescale", "0"))
    r._record(answer("executing on emerald x4 x1", "0.01"))
    r._record(answer("executing on emerald x4 x1", "0.02"))  # within RECORD_REFRESH_S: not worth an RPC
    r._record(answer("executing on emerald x4 x1", "0.03"), force=True)
    assert [argv[:2] + argv[-1:] for argv in ran] == [
        ["scontrol", "update", "Comment=queued on Rescale | rescale=AbCd cost~=0"],
        ["scontrol", "update", "Comment=executing on emerald x4 x1 | rescale=AbCd cost~=0.01"],
        ["scontrol", "update", "Comment=executing on emerald x4 x1 | rescale=AbCd cost~=0.03"]]


def test_an_ended_job_is_recorded_in_the_accounting_database(tmp_path, ran):
    ran.answers["scontrol"] = False  # the job has ended: slurmctld refuses the update
    make(tmp_path)._record(answer("completed (exit 0)", "1"), force=True)
    make(tmp_path, deliver=True)._record(answer("cancelled", "2"), force=True)  # a delivery: straight there
    assert [argv[0] for argv in ran] == ["scontrol", "sacctmgr", "sacctmgr"]
    assert ran[1][:7] == ["sacctmgr", "-i", "modify", "job", "where", "JobID=41", "set"]


def test_an_array_task_is_named_by_array_and_task_while_it_lives_and_by_its_raw_id_once_ended(tmp_path, ran):
    ran.answers["scontrol"] = False
    environ = {"SLURM_JOB_ID": "262", "SLURM_ARRAY_JOB_ID": "260", "SLURM_ARRAY_TASK_ID": "2"}
    relay.Relay(tmp_path, io.BytesIO(), environ=environ)._record(answer("cancelled", "1"), force=True)
    assert (ran[0][2], ran[1][5]) == ("JobId=260_2", "JobID=262")  # raw 260 would be the whole array
