"""LogTailer against a fake client: what it appends, the requests it makes, its budget, one job's trouble."""

import pytest
from jobkit import S, make_job, plan
from stagekit import Clock, FakeClient, stage_context

from burst_agent.config import ConfigError, config_from_mapping
from burst_agent.pipeline.logtail import LogTailer, tail_budget_per_hour
from burst_agent.record import Remote
from burst_agent.rescale.ratelimit import BudgetExhausted

CONFIG = {"agent": {"log_tail_interval_s": 10, "log_tail_min_interval_s": 10, "log_tail_max_interval_s": 80}}


class Busy:
    """A claim whose named jobs a worker holds."""

    def __init__(self, *held: str) -> None:
        self.held = set(held)

    def try_add(self, job_id: str) -> bool:
        return job_id not in self.held

    def discard(self, job_id: str) -> None:
        pass


def executing(ctx, tmp_path, entry: str):
    job = make_job(ctx.store, entry, S.RUNNING, job_plan=plan(stdout_path=str(tmp_path / f"{entry}.out")))
    ctx.store.record_remote(job.id, Remote(status="Executing"))
    return job


def cycles(tailer: LogTailer, ctx, clock: Clock, seconds: float, claim=None) -> None:
    for _ in range(int(seconds // 10)):
        tailer.cycle(ctx, claim or Busy())
        clock.now += 10


def test_new_bytes_are_appended_and_the_run_id_is_listed_once(tmp_path):
    client = FakeClient(list_runs=[{"id": "1"}], read_run_file=lambda *_a, offset: b"line\n"[offset:] or b"")
    clock = Clock()
    with stage_context(tmp_path, client, CONFIG) as ctx:
        job = executing(ctx, tmp_path, "a")
        cycles(LogTailer(1e6, clock=clock), ctx, clock, 30)
        assert (tmp_path / "a.out").read_bytes() == b"line\n"
        assert ctx.store.get(job.id).progress.log_offset == 5
    assert client.names() == ["list_runs", "read_run_file", "read_run_file"]  # at 0 and 10 s; then 30 s


def test_a_silent_job_is_read_less_and_less_often(tmp_path):
    client = FakeClient(list_runs=[{"id": "1"}], read_run_file=b"")
    clock = Clock()
    with stage_context(tmp_path, client, CONFIG) as ctx:
        executing(ctx, tmp_path, "a")
        cycles(LogTailer(1e6, clock=clock), ctx, clock, 600)
    # At 0 and 50 s (a job that never printed backs off fivefold), then every 80 s (the maximum).
    assert client.names().count("read_run_file") == 8


def test_a_cycle_spends_no_more_than_the_budget(tmp_path):
    client = FakeClient(list_runs=[{"id": "1"}], read_run_file=b"x")
    clock = Clock()
    with stage_context(tmp_path, client, CONFIG) as ctx:
        for n in range(30):
            executing(ctx, tmp_path, f"j{n}")
        cycles(LogTailer(3600.0, clock=clock), ctx, clock, 10)  # 1 request/s: a bucket of 20
    assert len(client.calls) <= 20 + 30  # and one token each new job brings (its runs listing)


def test_a_failing_tail_stops_no_other_job_and_a_held_job_waits(tmp_path):
    def read(remote_id, *_args, offset):
        if remote_id == "R-bad":
            raise OSError("boom")
        return b"ok\n"[offset:]

    client = FakeClient(list_runs=[{"id": "1"}], read_run_file=read)
    clock = Clock()
    with stage_context(tmp_path, client, CONFIG) as ctx:
        held = [executing(ctx, tmp_path, entry) for entry in ("bad", "good", "held")][-1]
        cycles(LogTailer(1e6, clock=clock), ctx, clock, 10, claim=Busy(held.id))
        assert ctx.log.events("warning") == ["live log tail failed"]
    assert (tmp_path / "good.out").read_text() == "ok\n" and not (tmp_path / "held.out").exists()


def test_a_maximum_interval_below_the_minimum_is_refused_naming_both_keys():
    agent = {"log_tail_min_interval_s": 30, "log_tail_max_interval_s": 20}
    with pytest.raises(ConfigError, match=r"c\.yaml: agent\.log_tail_max_interval_s: 20 is below .*min"):
        config_from_mapping({"agent": agent}, "c.yaml")


@pytest.mark.parametrize(("executing", "per_hour"),
                         [(0, 1440.0), (10, 1440.0), (500, 7500.0), (10**5, 19125.0)])
def test_the_tail_budget_follows_the_executing_jobs_between_a_floor_and_the_scope_share(executing, per_hour):
    # the floor: 10 jobs read every 25 s; the cap: 0.25 of 90,000/h x 0.85
    assert tail_budget_per_hour(config_from_mapping({}, "test"), executing) == pytest.approx(per_hour)


def test_a_spent_budget_ends_the_cycle_and_the_jobs_stay_due(tmp_path):
    spent = [True]

    def read(*_args, offset):
        if spent[0]:
            raise BudgetExhausted("jobs-usage", 1.0)
        return b"late\n"[offset:]

    client = FakeClient(list_runs=[{"id": "1"}], read_run_file=read)
    clock = Clock()
    with stage_context(tmp_path, client, CONFIG) as ctx:
        executing(ctx, tmp_path, "a"), executing(ctx, tmp_path, "b")
        tailer = LogTailer(1e6, clock=clock)
        tailer.cycle(ctx, Busy())
        assert client.names() == ["list_runs", "read_run_file"]  # the first one found it spent: no more
        spent[0] = False
        tailer.cycle(ctx, Busy())  # the same instant: both are still due
    assert [(tmp_path / f"{e}.out").read_bytes() for e in "ab"] == [b"late\n", b"late\n"]
