"""`burst-agent emulate`: run the local Rescale-compatible API emulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
from pathlib import Path


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def _path_pattern(text: str) -> str:
    from burst_agent.rescale.emulator import FaultSettings

    try:
        FaultSettings().merged({"path_pattern": text})  # the same check the runtime endpoint makes
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1 only)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    token = parser.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="API token clients must send (prefer --token-file)")
    token.add_argument("--token-file", type=Path, help="file holding the API token (mode 0600)")
    parser.add_argument("--data-dir", type=Path, required=True, help="where uploads and job sandboxes live")
    parser.add_argument("--coretypes", type=Path, help="coretype catalogue JSON (default: embedded)")
    parser.add_argument("--step-seconds", type=float, default=0.5, help="delay between job statuses")
    parser.add_argument(
        "--stop-grace-seconds", type=float, default=2.0, help="SIGTERM-to-SIGKILL delay for a graceful stop"
    )
    parser.add_argument("--fault-429", type=_probability, default=0.0, help="probability of a 429")
    parser.add_argument("--fault-500", type=_probability, default=0.0, help="probability of a 500")
    parser.add_argument(
        "--fault-drop", type=_probability, default=0.0, help="probability of a dropped connection"
    )
    parser.add_argument(
        "--fault-truncate",
        type=_probability,
        default=0.0,
        help="probability that a download body is cut short",
    )
    parser.add_argument("--latency-ms", type=int, default=0, help="latency added to every API request")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with a 429")
    parser.add_argument(
        "--fault-methods", default="", help="comma-separated methods faults apply to (default all)"
    )
    parser.add_argument("--fault-path-prefix", default="/api/", help="path prefix faults apply to")
    parser.add_argument("--fault-path-pattern", type=_path_pattern, default="",
                        help="regular expression the whole path must match for a fault (default any)")
    parser.add_argument("--seed", type=int, help="seed for the fault RNG (reproducible runs)")
    parser.add_argument("--request-log", type=Path, help="append one JSON line per request to this file")
    parser.add_argument("--persist", action="store_true",
                        help="keep jobs and files in DATA_DIR/state.json across restarts")
    parser.add_argument("--archive-inputs", choices=("place", "extract", "unpack"), default="extract",
                        help="inputs named like archives: left as they are, unpacked beside themselves "
                             "(default), or unpacked and removed as a server was seen to do")


def run(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading

    from burst_agent.rescale.emulator import FaultSettings, start_emulator
    from burst_agent.secret import Token, TokenError, TokenSource, load_token

    try:
        token = Token(args.token) if args.token else load_token(TokenSource(file=args.token_file), environ={})
    except TokenError as exc:
        print(f"burst-agent emulate: {exc}", file=sys.stderr)
        return 2
    faults = FaultSettings(
        fault_429=args.fault_429,
        fault_500=args.fault_500,
        fault_drop=args.fault_drop,
        fault_truncate=args.fault_truncate,
        latency_ms=args.latency_ms,
        retry_after=args.retry_after,
        methods=tuple(m.strip().upper() for m in args.fault_methods.split(",") if m.strip()),
        path_prefix=args.fault_path_prefix,
        path_pattern=args.fault_path_pattern,
        seed=args.seed,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    handle = start_emulator(
        args.data_dir,
        token,
        host=args.host,
        port=args.port,
        coretypes_file=args.coretypes,
        step_seconds=args.step_seconds,
        stop_grace_seconds=args.stop_grace_seconds,
        request_log=args.request_log,
        faults=faults,
        persist=args.persist,
        archive_inputs=args.archive_inputs,
    )
    try:
        print(f"emulator listening on {handle.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        handle.stop()
    return 0
