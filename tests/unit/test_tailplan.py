"""The live-log tail schedule: backoff, reset on growth, the budget cap, printing first, no starvation."""

from burst_agent.pipeline.tailplan import TailPlan, TailPolicy


def policy(**changes: float) -> TailPolicy:
    return TailPolicy(**{"min_interval_s": 5.0, "max_interval_s": 300.0, "per_hour": 1e6, "cycle_s": 10.0,
                         **changes})


def run(plan: TailPlan, seconds: float, grows=lambda job_id, now: False, start: float = 0.0) -> list[str]:
    """Drive the plan cycle by cycle for `seconds`; the jobs tailed, in order."""
    tailed: list[str] = []
    now = start
    while now < start + seconds:
        for job_id in plan.ranked(now):
            if not plan.has_budget():
                break
            plan.tailed(job_id, now, grew=grows(job_id, now))
            tailed.append(job_id)
        now += plan.policy.cycle_s
    return tailed


def test_a_new_executing_job_is_due_at_once_and_a_finished_one_is_forgotten():
    plan = TailPlan(policy(), 0.0)
    plan.sync(["a", "b"], 0.0)
    assert plan.ranked(0.0) == ["a", "b"]
    plan.sync(["b"], 1.0)
    assert list(plan.slots) == ["b"]


def test_empty_tails_double_the_interval_of_a_job_that_printed_up_to_the_maximum():
    plan = TailPlan(policy(cycle_s=1.0), 0.0)
    plan.sync(["a"], 0.0)
    plan.tailed("a", 0.0, grew=True)
    intervals = []
    for now in (5.0, 15.0, 35.0, 75.0, 155.0, 315.0, 615.0):
        assert plan.ranked(now) == ["a"]
        plan.tailed("a", now, grew=False)
        intervals.append(plan.slots["a"].interval)
    assert intervals == [10, 20, 40, 80, 160, 300, 300]


def test_a_job_that_never_printed_backs_off_fivefold():
    plan = TailPlan(policy(cycle_s=1.0), 0.0)
    plan.sync(["a"], 0.0)
    intervals = []
    for now in (0.0, 25.0, 150.0):
        assert plan.ranked(now) == ["a"]
        plan.tailed("a", now, grew=False)
        intervals.append(plan.slots["a"].interval)
    assert intervals == [25, 125, 300]


def test_new_bytes_bring_a_silent_job_back_to_the_minimum_interval():
    plan = TailPlan(policy(), 0.0)
    plan.sync(["a"], 0.0)
    plan.tailed("a", 0.0, grew=True)
    for now in (5.0, 15.0):
        plan.tailed("a", now, grew=False)
    plan.tailed("a", 35.0, grew=True)
    assert plan.slots["a"].interval == 5 and plan.slots["a"].due == 40.0


def test_a_printing_job_comes_back_every_interval_on_average_whatever_the_cycle():
    plan = TailPlan(policy(min_interval_s=25.0), 0.0)
    plan.sync(["a"], 0.0)
    assert len(run(plan, 1000.0, grows=lambda _job, _now: True)) == 40  # every 25 s on a 10 s cycle


def test_1000_silent_jobs_never_spend_more_than_the_budget():
    plan = TailPlan(policy(per_hour=3600.0), 0.0)
    plan.sync([str(n) for n in range(1000)], 0.0)
    assert len(run(plan, 3600.0)) <= plan.policy.capacity + 3600 + 1000  # one token each new job brings


def test_1000_silent_jobs_once_backed_off_cost_about_one_tail_per_maximum_interval():
    plan = TailPlan(policy(), 0.0)
    plan.sync([str(n) for n in range(1000)], 0.0)
    run(plan, 3600.0)
    assert len(run(plan, 3600.0, start=3600.0)) <= 1000 * 3600 / 300 + 1000


def test_over_the_cap_printing_jobs_go_before_silent_ones():
    plan = TailPlan(policy(per_hour=360.0), 0.0)  # one tail per 10 s cycle, a bucket of two
    plan.sync(["silent", "printer"], 0.0)
    run(plan, 10.0, grows=lambda job_id, _now: job_id == "printer")  # both tailed once
    tailed = run(plan, 100.0, grows=lambda job_id, _now: job_id == "printer", start=10.0)
    assert tailed.count("printer") > 2 * tailed.count("silent")


def test_printing_jobs_using_the_whole_budget_do_not_starve_a_silent_one():
    plan = TailPlan(policy(per_hour=360.0), 0.0)  # 1 tail per cycle; 10 printers would take 20
    plan.sync(["silent", *(f"p{n}" for n in range(10))], 0.0)
    tailed = run(plan, 3600.0, grows=lambda job_id, _now: job_id != "silent")
    assert tailed.count("silent") >= 3


def test_under_a_tight_budget_printing_jobs_take_turns():
    plan = TailPlan(policy(per_hour=360.0), 0.0)  # 1 tail per cycle for 20 printing jobs
    plan.sync([str(n) for n in range(20)], 0.0)
    tailed = run(plan, 3600.0, grows=lambda _job, _now: True)
    counts = [tailed.count(str(n)) for n in range(20)]
    assert min(counts) >= max(counts) - 2  # they take turns


def test_a_tail_spends_as_many_tokens_as_it_made_requests():
    plan = TailPlan(policy(per_hour=360.0), 0.0)  # a bucket of two tokens, and one the new job brings
    plan.sync(["a"], 0.0)
    plan.tailed("a", 0.0, grew=False, calls=2)  # run id listed, then the log read
    assert plan.has_budget()
    plan.tailed("a", 0.0, grew=False, calls=1)
    assert not plan.has_budget()
