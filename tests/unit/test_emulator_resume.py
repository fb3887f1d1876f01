"""The emulator resuming a job it was running when it stopped: the command starts over, and outputs the
first run recorded just before the stop are dropped with its sandbox (else the job lists them twice)."""

from burst_agent.rescale.emulator.runner import JobRunner
from burst_agent.rescale.emulator.store import FileRecord, Job, Store


def test_a_job_run_again_from_the_start_lists_none_of_the_first_runs_outputs(tmp_path):
    store = Store()
    runner = JobRunner(store, tmp_path, step_seconds=60.0, stop_grace_seconds=1.0)
    stale = FileRecord("f1", "big.bin", tmp_path / "big.bin", 3, "0" * 32, 5, "big.bin", "out/big.bin")
    store.add_file(stale)
    job = Job("j1", "job", [{"command": "true", "hardware": {"coresPerSlot": 1}}], [], submitted=True,
              output_file_ids=["f1"])
    job.add_status("Executing")
    store.jobs[job.id] = job
    runner.resume(job)
    try:
        assert job.output_file_ids == [] and "f1" not in store.files
    finally:
        runner.shutdown()
