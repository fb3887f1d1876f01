"""The watch loop: one job's trouble (a 500, a 404, a malformed answer) never holds up another job."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from jobkit import make_job
from stagekit import open_store

from burst_agent.lifecycle import JobState
from burst_agent.metrics import Metrics
from burst_agent.pipeline.context import Context
from burst_agent.pipeline.watch import PollTrouble, poll
from burst_agent.rescale.errors import NotFoundError, ServerError

DONE = [{"status": "Completed", "statusReason": "Completed successfully",
         "statusDate": "2026-01-01T00:00:00"}]


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def bind(self, **_kw: Any) -> Log:
        return self

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((event, kw))


@pytest.fixture
def setup(tmp_path):
    store, answers = open_store(tmp_path / "db"), {}
    for name in ("a", "b"):
        make_job(store, name, JobState.SUBMITTED, remote_job_id=f"R{name}")

    def statuses(remote_id: str) -> Any:
        answer = answers[remote_id]
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = SimpleNamespace(iter_jobs=lambda **_kw: iter([{"no id": 1}]), job_statuses=statuses)
    spool = SimpleNamespace(quarantine=lambda *_a: None, retire=lambda *_a: None)
    ctx = Context(config=None, client=client, store=store, spool=spool, catalogue=None, log=Log(),  # type: ignore[arg-type]
                  metrics=Metrics())
    yield ctx, answers, {name: store.by_entry(name).id for name in ("a", "b")}
    store.close()


def test_a_500_for_one_job_is_logged_once_and_the_other_job_moves_on(setup):
    ctx, answers, ids = setup
    answers.update(Ra=ServerError("boom", status=500), Rb=DONE)
    trouble = PollTrouble()
    poll(ctx, trouble=trouble)
    poll(ctx, trouble=trouble)
    assert ctx.store.get(ids["b"]).state is JobState.STAGING_OUT
    assert ctx.store.get(ids["a"]).state is JobState.SUBMITTED
    assert [kw["job"] for event, kw in ctx.log.lines if "failed" in event] == [ids["a"]]


def test_a_job_gone_on_rescale_fails_with_the_reason_and_the_other_moves_on(setup):
    ctx, answers, ids = setup
    answers.update(Ra=NotFoundError("gone", status=404), Rb=DONE)
    poll(ctx, trouble=PollTrouble())
    job = ctx.store.get(ids["a"])
    assert job.state is JobState.FAILED
    assert job.result.reason == "the remote job Ra no longer exists on Rescale (deleted there?)"
    assert ctx.store.get(ids["b"]).state is JobState.STAGING_OUT
