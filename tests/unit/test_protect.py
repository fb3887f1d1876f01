"""Protected mode's rule: a streak of failed creates over several jobs trips it, a success ends it."""

from burst_agent.pipeline.protect import Protection


def test_five_failures_of_three_jobs_trip_it_and_one_success_ends_it():
    p = Protection()
    trips = [p.failed(job, "AuthenticationError: 401", 0.0) for job in ("a", "a", "b", "b", "c")]
    assert trips == [False, False, False, False, True] and p.active
    assert "the last 5 creates or submits failed; last: AuthenticationError: 401" in p.reason()
    assert p.succeeded() and not p.active and p.may_create(0.0)


def test_one_bad_job_failing_again_and_again_does_not_trip_it():
    p = Protection()
    assert not any(p.failed("bad", "ValidationError: 400", 0.0) for _ in range(20)) and not p.active


def test_inside_it_one_probe_goes_per_interval():
    p = Protection(probe_s=60)
    for job in "abcde":
        p.failed(job, "401", 100.0)
    assert not p.may_create(120.0) and not p.probe_due(159.0)
    assert p.probe_due(160.0) and p.may_create(160.0) and not p.may_create(161.0)
