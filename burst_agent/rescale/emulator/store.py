"""In-memory emulator state (files, jobs, tags, projects) guarded by one lock."""

from __future__ import annotations

import secrets
import string
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OWNER = "emulator@example.com"
USER_DIR = "user/user_emu"
ID_ALPHABET = string.ascii_letters
PROJECTS: tuple[dict[str, Any], ...] = (
    {
        "id": "emuPrj",
        "isDefault": True,
        "name": "Emulator default project",
        "remainingAmounts": ["(no budget)"],
    },
    {
        "id": "bgtPrj",
        "isDefault": False,
        "name": "Project with a budget",
        "remainingAmounts": ["All: My budget ($100.00 available)"],
    },
)
TYPE_INPUT = 1
TYPE_OUTPUT = 5


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_tag(name: str) -> str:
    """Rescale's normalizedName: the tag without spaces, dashes and underscores."""
    return "".join(c for c in name if c not in " -_").lower()


@dataclass
class FileRecord:
    """One stored file: an upload (typeId 1) or a job output (typeId 5)."""

    id: str
    name: str
    disk_path: Path
    size: int
    md5: str
    type_id: int
    relative_path: str
    storage_path: str
    date_uploaded: str = field(default_factory=now_iso)
    deleted: bool = False
    tags: list[dict[str, str]] = field(default_factory=list)

    def to_api(self, base_url: str) -> dict[str, Any]:
        return {
            "typeId": self.type_id,
            "name": self.name,
            "dateUploaded": self.date_uploaded,
            "relativePath": self.relative_path,
            "encodedEncryptionKey": "",
            "downloadUrl": f"{base_url}api/v2/files/{self.id}/contents/",
            "sharedWith": [],
            "decryptedSize": self.size,
            "owner": OWNER,
            "path": self.storage_path,
            "isUploaded": True,
            "viewInBrowser": self.type_id == TYPE_OUTPUT,
            "id": self.id,
            "isDeleted": self.deleted,
            "md5": self.md5,
            "userTags": list(self.tags),
        }


@dataclass
class StatusEntry:
    status: str
    date: str
    reason: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {"status": self.status, "statusDate": self.date, "statusReason": self.reason}


@dataclass
class Job:
    """A saved job and, once submitted, its run."""

    id: str
    name: str
    analyses: list[dict[str, Any]]  # validated, normalized jobanalyses entries
    input_file_ids: list[str]
    is_low_priority: bool = False
    billing_priority: str | None = None
    project_id: str | None = None
    created: str = field(default_factory=now_iso)
    tags: list[dict[str, str]] = field(default_factory=list)
    statuses: list[StatusEntry] = field(default_factory=list)  # oldest first
    cluster_statuses: list[StatusEntry] = field(default_factory=list)
    output_file_ids: list[str] = field(default_factory=list)
    submitted: bool = False
    stop_mode: str | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen[bytes] | None = None
    work_dir: Path | None = None
    run_started: str | None = None
    run_completed: str | None = None
    thread: threading.Thread | None = None

    @property
    def status(self) -> str:
        return self.statuses[-1].status if self.statuses else ""

    @property
    def cluster_status(self) -> str:
        return self.cluster_statuses[-1].status if self.cluster_statuses else ""

    @property
    def completed(self) -> bool:
        return self.status == "Completed"

    def add_status(self, status: str, reason: str | None = None) -> None:
        self.statuses.append(StatusEntry(status, now_iso(), reason))

    def add_cluster_status(self, status: str) -> None:
        self.cluster_statuses.append(StatusEntry(status, now_iso()))


class Store:
    """All emulator state. Callers hold `lock` while reading or changing records."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, FileRecord] = {}
        self.jobs: dict[str, Job] = {}
        self.jobs_created = 0

    def new_id(self, length: int = 6) -> str:
        with self.lock:
            while True:
                candidate = "".join(secrets.choice(ID_ALPHABET) for _ in range(length))
                if candidate not in self.files and candidate not in self.jobs:
                    return candidate

    def live_file(self, file_id: str) -> FileRecord | None:
        with self.lock:
            record = self.files.get(file_id)
            return record if record is not None and not record.deleted else None

    def add_file(self, record: FileRecord) -> None:
        with self.lock:
            self.files[record.id] = record

    def add_job(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job
            self.jobs_created += 1

    def jobs_newest_first(self) -> list[Job]:
        with self.lock:
            return list(reversed(self.jobs.values()))

    def job_storage_bytes(self, job: Job) -> int:
        with self.lock:
            ids = [*job.input_file_ids, *job.output_file_ids]
            return sum(self.files[i].size for i in ids if i in self.files)
