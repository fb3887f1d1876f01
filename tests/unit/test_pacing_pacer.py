"""The dispatcher's shell: creates only for work let go for one; a waiting job is told once, then cleared."""

from __future__ import annotations

from jobkit import make_job, plan
from stagekit import stage_context

from burst_agent.config import RateLimits
from burst_agent.lifecycle import JobState
from burst_agent.pipeline.dispatch import Pacer
from burst_agent.pipeline.pacing import NOTE_REFRESH_S
from burst_agent.rescale.ratelimit import JOB_SUBMISSION, RateBudgets

NOW = [0.0]


def pacer(per_hour: float = 850.0, burst: float = 1.0) -> Pacer:
    limits = RateLimits(job_submission_per_hour=per_hour, job_submission_burst=burst, target_fraction=1.0)
    return Pacer(RateBudgets(limits, clock=lambda: NOW[0]), clock=lambda: NOW[0])


def test_only_the_job_let_go_for_a_create_may_create(tmp_path):
    with stage_context(tmp_path) as ctx:
        jobs = [make_job(ctx.store, e, JobState.STAGED) for e in ("a", "b")]
        p = pacer()
        plan_ = p.plan(jobs, lambda job: True)
        assert len(plan_.go) == 1
        a, b = sorted(jobs, key=lambda job: job.id != plan_.go[0].job_id)
        p.admitted(plan_.go[0])
        assert p.may_step(a) and not p.may_step(b)
        assert p.plan(jobs, lambda job: job.id != a.id).waiting_counts() == {JOB_SUBMISSION: 1}
        p.done(a.id)
        assert not p.may_step(a)


def test_a_translated_job_starts_its_uploads_only_if_let_go_for_them(tmp_path):
    with stage_context(tmp_path) as ctx:
        job = make_job(ctx.store, "t", JobState.TRANSLATED)
        p = pacer()
        assert not p.may_step(job)  # let go at RECEIVED (to translate), it stops here
        (work,) = p.plan([job], lambda j: True).go
        p.admitted(work)
        assert p.may_step(job)


def test_a_long_wait_is_told_once_in_the_log_and_status_then_cleared(tmp_path):
    out = tmp_path / "slurm-7.out"
    with stage_context(tmp_path) as ctx:
        jobs = [make_job(ctx.store, f"j{n}", JobState.STAGED, job_plan=plan(stdout_path=str(out)))
                for n in range(4)]
        p = pacer(per_hour=60.0)  # one a minute
        for _ in range(2):
            p.tell_waiting(ctx, p.plan(jobs, lambda job: True))
        assert out.read_text().count("burst-agent: waiting for Rescale's submission budget") == 3
        last = p.plan(jobs, lambda job: True).waiting[JOB_SUBMISSION][-1]
        assert ctx.store.get(last.job_id).result.reason == \
            "waiting for Rescale's submission budget: 3 jobs ahead, about 3 min"
        waiting = p.plan(jobs, lambda job: True).waiting[JOB_SUBMISSION][1]
        p.went_on(ctx, waiting)
        assert ctx.store.get(waiting.job_id).result.reason is None


def test_a_waiting_job_has_its_status_told_again_as_its_place_moves_but_its_log_once(tmp_path):
    out = tmp_path / "slurm-8.out"
    with stage_context(tmp_path) as ctx:
        jobs = [make_job(ctx.store, f"j{n}", JobState.STAGED, job_plan=plan(stdout_path=str(out)))
                for n in range(4)]
        p = pacer(per_hour=60.0)
        p.tell_waiting(ctx, p.plan(jobs, lambda job: True))
        gone, *_, last = p.plan(jobs, lambda job: True).waiting[JOB_SUBMISSION]
        before = ctx.store.get(last.job_id).result.reason
        jobs = [job for job in jobs if job.id != gone.job_id]  # one ahead of it went on
        NOW[0] += NOTE_REFRESH_S
        try:
            p.tell_waiting(ctx, p.plan(jobs, lambda job: True))
        finally:
            NOW[0] -= NOTE_REFRESH_S
        assert before.endswith("3 jobs ahead, about 3 min")
        assert ctx.store.get(last.job_id).result.reason.endswith("2 jobs ahead, about 2 min")
        assert out.read_text().count("burst-agent: waiting") == 3
