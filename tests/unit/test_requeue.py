"""Requeue as the relay sees it: a SIGTERM for a requeue (Restarts went up) is no cancel; after a run
ended, a job back in the queue was requeued."""

from burst_agent.requeue import being_requeued, came_back, restart_count

SHOW = "JobId=41 JobName=job.sh JobState=COMPLETING Reason=None Requeue=1 Restarts={n} BatchFlag=1"


def test_a_requeue_is_told_from_a_cancel_by_the_restart_count():
    first, second = {"SLURM_JOB_ID": "41"}, {"SLURM_JOB_ID": "41", "SLURM_RESTART_COUNT": "1"}
    calls = []
    assert being_requeued(first, lambda argv: calls.append(argv) or SHOW.format(n=1))
    assert calls == [["scontrol", "show", "job", "-o", "41"]]
    assert not being_requeued(first, lambda argv: SHOW.format(n=0))  # a scancel
    assert not being_requeued(second, lambda argv: SHOW.format(n=1))  # a scancel of the second run
    assert not being_requeued(second, lambda argv: None)  # scontrol failed: never guess a requeue
    assert (restart_count(second), restart_count(first), restart_count({})) == (1, 0, 0)


def test_no_scheduler_means_no_requeue():
    assert not being_requeued({"PBS_JOBID": "7.server"}, lambda argv: SHOW.format(n=9))
    assert not came_back("pbs", "7.server", lambda argv: "RUNNING\n")


def test_a_job_back_in_the_queue_after_its_epilog_was_requeued():
    answers = iter(["COMPLETING\n", "COMPLETING\n", "PENDING\n"])
    naps: list[float] = []
    assert came_back("slurm", "41", lambda argv: next(answers), sleep=naps.append)
    assert naps == [1.0, 1.0]
    assert not came_back("slurm", "41", lambda argv: "CANCELLED\n")
    assert not came_back("slurm", "41", lambda argv: None)  # purged: "Invalid job id"
