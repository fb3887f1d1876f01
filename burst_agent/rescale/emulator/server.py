"""Start the emulator: in-process threaded werkzeug server, or the CLI as a subprocess."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from burst_agent.rescale.emulator.app import EmulatorApp
from burst_agent.rescale.emulator.catalogue import Catalogue, load_coretypes
from burst_agent.rescale.emulator.context import Context
from burst_agent.rescale.emulator.faults import FaultInjector, FaultSettings
from burst_agent.rescale.emulator.persist import STATE_FILE, Persister, load, restore
from burst_agent.rescale.emulator.reqlog import RecordingMiddleware, RequestRecorder
from burst_agent.rescale.emulator.runner import JobRunner
from burst_agent.rescale.emulator.store import Store
from burst_agent.secret import Token

READY_PREFIX = "emulator listening on "


@dataclass(frozen=True)
class EmulatorOptions:
    host: str = "127.0.0.1"
    port: int = 0
    coretypes_file: Path | None = None
    step_seconds: float = 0.5
    stop_grace_seconds: float = 2.0
    request_log: Path | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)
    # Keep state in DATA/state.json and reload it on start; a stop then leaves running jobs unfinished,
    # and the next start runs their commands again (see README "State").
    persist: bool = False
    # What happens to an input named like an archive: files.ARCHIVE_MODES (place, extract, unpack).
    archive_inputs: str = "extract"


class _QuietHandler(WSGIRequestHandler):
    """No per-request lines on stderr: the JSON request log is the record."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class EmulatorHandle:
    """A running in-process emulator; `.url` is http://HOST:PORT without a slash; idempotent `.stop()`."""

    def __init__(
        self,
        server: Any,
        app: EmulatorApp,
        runner: JobRunner,
        recorder: RequestRecorder,
        faults: FaultInjector,
        token: Token,
        url: str,
        persister: Persister | None = None,
    ) -> None:
        self._server = server
        self.app = app
        self._runner = runner
        self._recorder = recorder
        self.faults = faults
        self._token = token
        self.url = url
        self._persister = persister
        self._address = server.socket.getsockname()[:2]
        self._wsgi = server.app
        self._http_lock = threading.Lock()
        self._outage_timer: threading.Timer | None = None
        self._thread = self._serve(server)
        self._stopped = False

    @staticmethod
    def _serve(server: Any) -> threading.Thread:
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="emulator-http", daemon=True
        )
        thread.start()
        return thread

    @property
    def online(self) -> bool:
        with self._http_lock:
            return self._server is not None

    def go_offline(self, seconds: float | None = None) -> None:
        """Close the listening socket: the API refuses connections, while jobs keep running (as on
        Rescale when the API is unreachable). Back online after `seconds`, or at `go_online()`."""
        with self._http_lock:
            if self._outage_timer is not None:
                self._outage_timer.cancel()
                self._outage_timer = None
            server, self._server = self._server, None
            if seconds is not None:
                self._outage_timer = threading.Timer(seconds, self.go_online)
                self._outage_timer.daemon = True
                self._outage_timer.start()
        if server is not None:
            server.shutdown()
            server.server_close()

    def go_online(self) -> None:
        """Listen again on the same address (the same URL)."""
        with self._http_lock:
            if self._server is not None or self._stopped:
                return
            host, port = self._address
            self._server = _make_server(host, port, self._wsgi)
            self._thread = self._serve(self._server)

    @property
    def token(self) -> str:
        return self._token.reveal()

    @property
    def store(self) -> Store:
        return self.app.ctx.store

    def set_faults(self, **patch: Any) -> FaultSettings:
        return self.faults.update(patch)

    def stats(self) -> dict[str, Any]:
        return self.app.stats()

    def stop(self) -> None:
        if self._stopped:
            return
        self.go_offline()
        self._stopped = True
        self._runner.shutdown(suspend=self._persister is not None)
        if self._persister is not None:
            self._persister.stop()
        self._recorder.close()

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatorHandle(url={self.url!r})"


def start_emulator(data_dir: Path | str, token: str | Token, **options: Any) -> EmulatorHandle:
    """Serve the emulator on a background thread. Options: EmulatorOptions fields, or fault fields."""
    fault_keys = set(FaultSettings.__dataclass_fields__)
    fault_patch = {k: options.pop(k) for k in list(options) if k in fault_keys}
    opts = EmulatorOptions(**options)
    faults = opts.faults.merged(fault_patch)
    secret = token if isinstance(token, Token) else Token(token)
    data = Path(data_dir)
    (data / "files").mkdir(parents=True, exist_ok=True)
    (data / "jobs").mkdir(parents=True, exist_ok=True)
    store = Store()
    runner = JobRunner(store, data / "jobs", opts.step_seconds, opts.stop_grace_seconds, opts.archive_inputs)
    persister = None
    if opts.persist:
        state = load(data / STATE_FILE)
        unfinished = restore(store, state) if state is not None else []
        for job in store.jobs_newest_first():
            if job.completed:
                runner.finish_cluster(job)
        for job in unfinished:
            runner.resume(job)
        persister = Persister(store, data / STATE_FILE).start()
    ctx = Context(store, Catalogue.build(load_coretypes(opts.coretypes_file)), runner, data / "files")
    recorder = RequestRecorder(opts.request_log)
    app = EmulatorApp(ctx, secret.reveal(), recorder)
    injector = FaultInjector(app, faults)
    app.faults = injector
    runner.no_capacity = lambda: injector.settings.no_capacity
    server = _make_server(opts.host, opts.port, RecordingMiddleware(injector, recorder))
    host, port = server.socket.getsockname()[:2]
    handle = EmulatorHandle(
        server, app, runner, recorder, injector, secret, f"http://{host}:{port}", persister
    )
    app.outage = handle.go_offline
    return handle


def _make_server(host: str, port: int, wsgi: Any) -> Any:
    server = make_server(host, port, wsgi, threaded=True, request_handler=_QuietHandler)
    server.daemon_threads = True
    return server


class EmulatorProcess:
    """The CLI emulator in a subprocess; `.stop()` sends SIGTERM and waits."""

    def __init__(self, process: subprocess.Popen[str], url: str, token_file: Path, token: Token) -> None:
        self.process = process
        self._token = token
        self.pid = process.pid
        self.url = url
        self._token_file = token_file

    @property
    def token(self) -> str:
        return self._token.reveal()

    def __repr__(self) -> str:
        return f"EmulatorProcess(pid={self.pid}, url={self.url!r})"

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self._token_file.unlink()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cli_flags(options: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for key, value in options.items():
        if value is None:
            continue
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def spawn_emulator_process(
    data_dir: Path | str, token: str | Token, *, ready_timeout: float = 20.0, **options: Any
) -> EmulatorProcess:
    """Run `burst-agent emulate` (options as CLI flag names with underscores) and wait for its ready line."""
    secret = token if isinstance(token, Token) else Token(token)
    fd, name = tempfile.mkstemp(prefix="emulator-token-")  # mode 0600: never on the command line
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.reveal())
    command = [
        sys.executable,
        "-m",
        "burst_agent.cli",
        "emulate",
        "--data-dir",
        str(data_dir),
        "--token-file",
        name,
        *_cli_flags(options),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + ready_timeout
    line = ""
    while time.monotonic() < deadline and process.stdout is not None:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            break
        if process.poll() is not None:
            break
    if not line.startswith(READY_PREFIX):
        process.kill()
        process.wait()
        Path(name).unlink(missing_ok=True)
        raise RuntimeError(f"emulator did not start (exit {process.returncode}, said {line.strip()!r})")
    return EmulatorProcess(process, line[len(READY_PREFIX) :].strip().rstrip("/"), Path(name), secret)
