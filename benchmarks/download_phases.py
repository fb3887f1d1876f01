"""Where a 1 GiB download's time goes: first byte, body, md5 tail, fsync; and the md5 thread's own CPU.

  python benchmarks/download_phases.py [--size-mib 1024] [--repeat 4]

Starts an emulator, uploads a random file, then downloads it `--repeat` times with the real client while
timing its phases (the client's internals are wrapped, not changed). If `hash_cpu` is close to `body`,
the download runs at md5's speed: nothing but a faster md5 (a faster CPU) makes it quicker.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import transfer_bench

from burst_agent.config import RateLimits
from burst_agent.rescale import transfer
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.emulator import spawn_emulator_process
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.secret import Token

marks: dict[str, Any] = {}


def _instrument() -> None:
    pump, hasher_run, fsync = transfer._pump, transfer._Hasher.run, os.fsync

    def timed_pump(response: Any, fh: Any, name: str, hasher: Any, done: int, total: Any, _: Any) -> int:
        def first(_done: int, _total: Any) -> None:
            marks.setdefault("first_byte", time.perf_counter())

        count = pump(response, fh, name, hasher, done, total, first)
        marks["last_byte"] = time.perf_counter()
        return count

    def timed_run(self: Any) -> None:
        started = time.thread_time()
        hasher_run(self)
        marks["hash_cpu"] = time.thread_time() - started
        marks["hash_done"] = time.perf_counter()

    def timed_fsync(fd: int) -> None:
        started = time.perf_counter()
        fsync(fd)
        marks["fsync"] = marks.get("fsync", 0.0) + time.perf_counter() - started

    transfer._pump = timed_pump
    transfer._Hasher.run = timed_run
    transfer.os.fsync = timed_fsync


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    _instrument()
    size = args.size_mib << 20
    print(f"{'total s':>8} {'to first byte':>13} {'body':>6} {'md5 tail':>8} {'after md5':>9} "
          f"{'md5 thread CPU':>14} {'fsyncs':>7} {'MB/s':>5}")
    with tempfile.TemporaryDirectory(prefix="download-phases-") as tmp:
        work, token = Path(tmp), secrets.token_urlsafe(24)
        with spawn_emulator_process(work / "emulator", token) as emulator:
            source = work / "source.bin"
            transfer_bench.make_file(source, size)
            client = RescaleClient(emulator.url, Token(token), budgets=RateBudgets(RateLimits(enabled=False)))
            meta = client.upload_file(source)
            source.unlink()
            for _ in range(args.repeat):
                marks.clear()
                started = time.perf_counter()
                client.download_file(str(meta["id"]), work / "out.bin", expected_md5=meta["md5"])
                ended = time.perf_counter()
                (work / "out.bin").unlink()
                body, seconds = marks["last_byte"] - marks["first_byte"], ended - started
                print(f"{seconds:>8.3f} {marks['first_byte'] - started:>13.3f} {body:>6.3f} "
                      f"{marks['hash_done'] - marks['last_byte']:>8.3f} {ended - marks['hash_done']:>9.3f} "
                      f"{marks['hash_cpu']:>14.3f} {marks['fsync']:>7.3f} {size / seconds / 1e6:>5.0f}")


if __name__ == "__main__":
    main()
