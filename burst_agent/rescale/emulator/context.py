"""What every emulator view needs: state, catalogue, runner, directories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from werkzeug.wrappers import Request

from burst_agent.rescale.emulator.catalogue import Catalogue
from burst_agent.rescale.emulator.http import ApiError
from burst_agent.rescale.emulator.runner import JobRunner
from burst_agent.rescale.emulator.store import FileRecord, Job, Store


@dataclass
class Context:
    store: Store
    catalogue: Catalogue
    runner: JobRunner
    uploads_dir: Path

    def job(self, job_id: str) -> Job:
        with self.store.lock:
            job = self.store.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "Not found.")
        return job

    def file(self, file_id: str) -> FileRecord:
        record = self.store.live_file(file_id)
        if record is None:
            raise ApiError(404, "Not found.")
        return record

    @staticmethod
    def base_url(request: Request) -> str:
        return request.host_url
