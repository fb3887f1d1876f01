"""The agent's side of the relay protocol: status, live log, cancel, outputs, for the job's owner only."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from burst_agent.conncaps import Acceptor, ConnectionCaps, accept_loop
from burst_agent.jobview import as_dict
from burst_agent.pipeline.cancel import request_cancel
from burst_agent.pipeline.context import Context
from burst_agent.record import JobRecord
from burst_agent.relayproto import (
    LOG_CHUNK,
    ProtocolError,
    offset_field,
    peer_uid,
    read_request,
    send_message,
    text_field,
)
from burst_agent.schedrecord import phase, record_text
from burst_agent.staging.safepath import STAGING_DIR_NAME, UnsafePathError, safe_relpath

Handler = Callable[["RelayServer", int, dict[str, Any]], tuple[dict[str, Any], list[int]]]
# What a malformed request can raise on its way through json and the handlers: an error answer each.
BAD_REQUEST = (ProtocolError, ValueError, TypeError, OverflowError, RecursionError)
REFUSAL_LOG_EVERY_S = 60.0
# How often a relay's log position is written to the store while it only grows (it is kept in memory
# between): a relay killed in between costs its delivery at most this many seconds of duplicated log.
OFFSET_SAVE_EVERY_S = 15.0
JOBS_SHOWN = 2000  # the newest of a user's jobs in one `jobs` answer (an answer line is capped)


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
            if offset >= size:  # also past what lseek() takes on this file system (EINVAL)
                return b"", size
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

    def __init__(self, ctx: Context, *, accept_timeout_s: float = 0.5) -> None:
        self.ctx = ctx
        self.accept_timeout_s = accept_timeout_s  # how long stop() may wait for the accept loop to see it
        self.last_seen: dict[str, float] = {}
        self._acceptor = Acceptor()
        self._caps = ConnectionCaps("relay")  # connections being served, by uid
        self._refused = 0
        self._logged_at: dict[str, float] = {}
        self._positions: dict[str, tuple[str, int, float]] = {}  # job id -> (log file, offset, saved at)

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

    def _note_position(self, job: JobRecord, log_file: str, offset: int) -> None:
        """Remember where the relay's own log file stands, so a delivery after its death goes on there."""
        saved = job.progress
        if not log_file or (log_file == saved.relay_log and offset == saved.relay_log_offset):
            return
        now = time.monotonic()
        known = self._positions.get(job.id)
        saved_at = known[2] if known else float("-inf")
        if job.terminal or log_file != saved.relay_log or now - saved_at >= OFFSET_SAVE_EVERY_S:
            self.ctx.store.record_progress(job.id, relay_log=log_file, relay_log_offset=offset)
            saved_at = now
        self._positions[job.id] = (log_file, offset, saved_at)

    def position(self, job: JobRecord) -> tuple[str | None, int]:
        """The relay's log file and offset: the freshest the agent has heard (memory, else the store)."""
        known = self._positions.get(job.id)
        return (known[0], known[1]) if known else (job.progress.relay_log, job.progress.relay_log_offset)

    def status(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        entry = text_field(msg, "entry")
        offset = offset_field(msg)
        job = self._job(uid, entry)
        if job is None:
            return self._unrecorded(uid, entry), []
        self._note_position(job, text_field(msg, "log_file"), offset)
        plan = job.plan
        data, size = _read_log(plan.stdout_path if plan else None, offset)
        return {
            "state": job.state.value, "terminal": job.terminal, "remote_status": job.remote.status,
            "remote_job_id": job.remote_job_id, "exit_code": job.result.exit_code,
            "reason": job.result.reason,
            "hardware": plan.hardware if plan else None, "cores": plan.cores if plan else None,
            "phase": phase(job), "record": record_text(job, self.ctx.clock()),
            "log": base64.b64encode(data).decode(), "log_size": size,
        }, []

    def _own(self, uid: int, ref: str) -> JobRecord | None:
        """The caller's job named by local id, spool entry name or scheduler job id (root: anyone's)."""
        store = self.ctx.store
        job = store.get(ref) or store.by_entry(ref)
        if job is None and ref and uid:
            jobs = store.owned_by(uid, scheduler_job_id=ref)
            job = jobs[-1] if jobs else None
        return job if job is not None and uid in (job.owner_uid, 0) else None

    def cancel(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        ref = text_field(msg, "job") or text_field(msg, "entry")
        job = self._job(uid, ref) or self._own(uid, ref)
        if job is None:
            return {"error": "no such job of yours"}, []
        job = request_cancel(self.ctx.store, job.id, self.ctx.clock())
        self.ctx.job_log(job).info("cancel requested over the relay socket", uid=uid)
        return {"id": job.id, "state": job.state.value, "terminal": job.terminal}, []

    def jobs(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """`burst-agent status` for a user who cannot read the agent's database: their own jobs only."""
        everything = msg.get("all") is True
        store = self.ctx.store
        found = [job for job in (store.jobs() if uid == 0 else store.owned_by(uid))
                 if everything or not job.terminal]
        now, shown = self.ctx.clock(), found[-JOBS_SHOWN:]
        return {"jobs": [as_dict(job, now) for job in shown], "not_shown": len(found) - len(shown)}, []

    def find(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """The caller's newest job for a scheduler job id (a delivery knows only that id)."""
        jobs = self.ctx.store.owned_by(uid, scheduler_job_id=text_field(msg, "scheduler_job_id"))
        if jobs:
            self.ctx.job_log(jobs[-1]).info("delivery after the relay asks for its job", uid=uid)
        return ({"entry": jobs[-1].entry} if jobs else {"state": "unknown"}), []

    def resume(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """What a delivery needs to take over from a dead relay: where its log stands, the workdir."""
        job = self._job(uid, text_field(msg, "entry"))
        if job is None:
            return {"state": "unknown"}, []
        log_file, offset = self.position(job)
        delivered = job.progress.delivered_at is not None
        self.ctx.job_log(job).info("delivery resumes", log_offset=offset, delivered=delivered,
                                   state=job.state.value)
        return {"log_file": log_file, "offset": offset, "delivered": delivered,
                "workdir": job.plan.workdir if job.plan else None, "state": job.state.value}, []

    def _results(self, uid: int, msg: dict[str, Any]) -> tuple[JobRecord | None, Path | None]:
        job = self._job(uid, text_field(msg, "entry"))
        if job is None or not job.terminal or job.plan is None:
            return job, None
        return job, Path(job.plan.output_dir)

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
            rel = safe_relpath(text_field(msg, "path"))
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
        self.ctx.store.record_progress(job.id, delivered_at=self.ctx.clock())
        self._positions.pop(job.id, None)
        self.ctx.job_log(job).info("outputs delivered by the relay")
        return {"ok": True}, []

    OPS: dict[str, Handler] = {
        "status": status, "cancel": cancel, "outputs": outputs, "output": output, "delivered": delivered,
        "jobs": jobs, "find": find, "resume": resume,
    }

    # -- serving ------------------------------------------------------------------------------

    def answer(self, uid: int, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """The answer to one request of `uid` (whichever listener it came by) and the descriptors to
        hand over with it (the caller closes them)."""
        op = msg.get("op")
        handler = self.OPS.get(op) if isinstance(op, str) else None
        return handler(self, uid, msg) if handler else ({"error": "unknown op"}, [])

    def handle(self, conn: socket.socket, uid: int) -> None:
        """One request from `uid` on `conn`, answered within the deadline (twice: to read, to answer)."""
        timeout = self.ctx.config.agent.relay_request_timeout_s
        out_fds: list[int] = []
        try:
            msg = read_request(conn, time.monotonic() + timeout)
            answer, out_fds = self.answer(uid, msg)
        except BAD_REQUEST as exc:
            answer = {"error": str(exc)[:200] or type(exc).__name__}
        try:
            conn.settimeout(timeout)
            send_message(conn, answer, out_fds)
        finally:
            for fd in out_fds:
                os.close(fd)

    def _admit(self, uid: int) -> str | None:
        """Count the connection in, or say why not (the caps are read live, so SIGHUP changes them)."""
        cfg = self.ctx.config.agent
        return self._caps.admit(uid, f"uid {uid}", cfg.relay_max_connections,
                                cfg.relay_max_connections_per_user)

    def _release(self, uid: int) -> None:
        self._caps.release(uid)

    def _refuse(self, conn: socket.socket, uid: int, reason: str) -> None:
        """Answer at once without waiting for the request (never blocks the accept loop), and close."""
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            send_message(conn, {"error": reason, "busy": True})
        conn.close()
        self._refused += 1
        if self._now_and_then("refused"):
            # Load shedding at work (relays retry quietly), not a fault: info, at most once a minute.
            self.ctx.log.info("relay connections refused", uid=uid, reason=reason, refused=self._refused)
            self._refused = 0

    def _now_and_then(self, what: str) -> bool:
        """True at most once a minute per `what`: a flood must not flood the log too."""
        now = time.monotonic()
        if now - self._logged_at.get(what, -REFUSAL_LOG_EVERY_S) < REFUSAL_LOG_EVERY_S:
            return False
        self._logged_at[what] = now
        return True

    def _serve_one(self, conn: socket.socket, uid: int) -> None:
        try:
            with conn:
                self.handle(conn, uid)
        except OSError as exc:  # the peer went away or would not take its answer in time
            self.ctx.log.debug("relay connection failed", uid=uid, error=str(exc))
        except Exception as exc:  # a bug or the store failing: one log line, no traceback, and no answer
            # (an error answer to `outputs` would let the relay go on to `delivered` and lose the outputs).
            self.ctx.log.error("relay request failed", uid=uid, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._release(uid)

    def _dispatch(self, conn: socket.socket) -> None:
        try:
            uid = peer_uid(conn)
        except OSError:
            conn.close()
            return
        refusal = self._admit(uid)
        if refusal is not None:
            self._refuse(conn, uid, refusal)
            return
        try:
            threading.Thread(target=self._serve_one, args=(conn, uid), name="relay-conn", daemon=True).start()
        except RuntimeError:  # no thread to be had
            self._release(uid)
            self._refuse(conn, uid, "busy: the agent cannot start a thread; retry")

    def _accept_loop(self, listener: socket.socket) -> None:
        def warn(error: str) -> None:
            if self._now_and_then("accept"):
                self.ctx.log.warning("relay socket accept failed", error=error)
        accept_loop(listener, self._acceptor.stopping, lambda conn, _peer: self._dispatch(conn), warn)

    def start(self) -> None:
        path = self.ctx.spool.socket_path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        os.chmod(path, 0o666)  # anyone may connect; SO_PEERCRED decides what they may see
        listener.listen(socket.SOMAXCONN)
        listener.settimeout(self.accept_timeout_s)  # so the loop sees stop(); accepted sockets are blocking
        self._acceptor.start(listener, "relay-server", self._accept_loop)

    def stop(self) -> None:
        if self._acceptor.stop():
            with contextlib.suppress(FileNotFoundError):
                self.ctx.spool.socket_path.unlink()
