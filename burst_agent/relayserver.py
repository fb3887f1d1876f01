"""The agent's side of the relay protocol: status, live log, cancel, outputs, for the job's owner only."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import socketserver
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from burst_agent.pipeline.cancel import request_cancel
from burst_agent.pipeline.context import Context
from burst_agent.relayproto import LOG_CHUNK, ProtocolError, peer_uid, read_message, send_message
from burst_agent.staging.safepath import STAGING_DIR_NAME, UnsafePathError, safe_relpath
from burst_agent.store import JobRecord

Handler = Callable[["RelayServer", int, dict[str, Any]], tuple[dict[str, Any], list[int]]]


def _owned_by(path: Path, uid: int) -> bool:
    try:
        return os.lstat(path).st_uid == uid
    except FileNotFoundError:
        return False


def _read_log(path: str | None, offset: int) -> tuple[bytes, int]:
    if not path:
        return b"", 0
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(offset)
            return handle.read(LOG_CHUNK), size
    except FileNotFoundError:
        return b"", 0


def _output_files(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != STAGING_DIR_NAME]
        for name in filenames:
            path = Path(dirpath) / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(str(path.relative_to(root)))
    return sorted(found)


class RelayServer:
    """Serves <spool>/agent.sock; every request names an entry and must come from its owner (or root)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.last_seen: dict[str, float] = {}
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    # -- authorisation ------------------------------------------------------------------------

    def _job(self, uid: int, entry: str) -> JobRecord | None:
        job = self.ctx.store.by_entry(entry)
        if job is not None and uid in (job.owner_uid, 0):
            self.last_seen[job.id] = time.monotonic()
            return job
        return None

    def _unrecorded(self, uid: int, entry: str) -> dict[str, Any]:
        """An entry the agent has no job for: waiting in the spool, rejected, or not the caller's."""
        spool = self.ctx.spool
        if "/" in entry or entry.startswith("."):
            return {"state": "unknown"}
        reason_file = spool.failed / f"{entry}.reason"
        if _owned_by(spool.failed / entry, uid) and reason_file.exists():
            return {"state": "failed", "reason": reason_file.read_text(errors="replace").splitlines()[0]}
        if _owned_by(spool.incoming / entry, uid) or _owned_by(spool.claimed / entry, uid):
            return {"state": "waiting"}
        return {"state": "unknown"}

    # -- operations ---------------------------------------------------------------------------

    def status(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        entry = str(msg.get("entry", ""))
        job = self._job(uid, entry)
        if job is None:
            return self._unrecorded(uid, entry), []
        data, size = _read_log(job.stdout_path, max(0, int(msg.get("offset", 0))))
        return {
            "state": job.state.value, "terminal": job.terminal, "remote_status": job.remote_status,
            "remote_job_id": job.remote_job_id, "exit_code": job.exit_code, "reason": job.failure_reason,
            "log": base64.b64encode(data).decode(), "log_size": size,
        }, []

    def cancel(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        job = self._job(uid, str(msg.get("entry", "")))
        if job is None:
            return {"error": "no such job of yours"}, []
        job = request_cancel(self.ctx.store, job.id, self.ctx.clock())
        self.ctx.job_log(job).info("cancel requested by the relay", uid=uid)
        return {"state": job.state.value}, []

    def _results(self, uid: int, msg: dict[str, Any]) -> tuple[JobRecord | None, Path | None]:
        job = self._job(uid, str(msg.get("entry", "")))
        if job is None or not job.terminal or not job.output_dir:
            return job, None
        return job, Path(job.output_dir)

    def outputs(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        _job, root = self._results(uid, msg)
        if root is None:
            return {"error": "no finished job of yours with outputs"}, []
        return {"files": _output_files(root) if root.is_dir() else []}, []

    def output(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        _job, root = self._results(uid, msg)
        if root is None:
            return {"error": "no finished job of yours with outputs"}, []
        try:
            rel = safe_relpath(str(msg.get("path", "")))
            fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (UnsafePathError, OSError) as exc:
            return {"error": f"cannot open output: {exc}"}, []
        return {"path": str(rel), "size": os.fstat(fd).st_size}, [fd]

    def delivered(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        job, root = self._results(uid, msg)
        if job is None or root is None:
            return {"error": "no finished job of yours"}, []
        if root.parent == self.ctx.spool.results:  # only ever the agent's own staging copy
            shutil.rmtree(root, ignore_errors=True)
        self.ctx.job_log(job).info("outputs delivered by the relay")
        return {"ok": True}, []

    OPS: dict[str, Handler] = {
        "status": status, "cancel": cancel, "outputs": outputs, "output": output, "delivered": delivered,
    }

    # -- serving ------------------------------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        try:
            msg, fds = read_message(conn)
            for fd in fds:  # requests never carry files
                os.close(fd)
            handler = self.OPS.get(str(msg.get("op")))
            answer, out_fds = handler(self, peer_uid(conn), msg) if handler else ({"error": "unknown op"}, [])
        except (ProtocolError, ValueError, TypeError) as exc:
            answer, out_fds = {"error": str(exc)}, []
        try:
            send_message(conn, answer, out_fds)
        finally:
            for fd in out_fds:
                os.close(fd)

    def start(self) -> None:
        path = self.ctx.spool.socket_path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        outer = self

        class _Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    outer.handle(self.request)
                except OSError as exc:
                    outer.ctx.log.warning("relay connection failed", error=str(exc))

        self._server = socketserver.ThreadingUnixStreamServer(str(path), _Handler)
        self._server.daemon_threads = True
        os.chmod(path, 0o666)  # anyone may connect; SO_PEERCRED decides what they may see
        threading.Thread(target=self._server.serve_forever, name="relay-server", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with contextlib.suppress(FileNotFoundError):
                self.ctx.spool.socket_path.unlink()
