"""Stage-out: 2,000 outputs of 8 KiB through download_all with the real client, concurrency 8 vs 1.

The emulator runs as its own process; the files are uploaded to it first (not timed), then fetched
with burst_agent.staging.outputs.download_all exactly as the agent's collect step calls it: the
RescaleClient's download_file (md5 and size checked), confined commit, durable=True (fsync per
file and per directory), rate budgets lifted. Each run writes into a fresh directory. Runs are
interleaved (1, 8, 1, 8 with --repeat 2) so machine noise hits both; the ratio is of the medians.
With --latency-ms the emulator delays every API request (a WAN round trip); 0 is pure loopback,
where only CPU and fsync can overlap.

Run:  .venv/bin/python benchmarks/stageout_bench.py [--files 2000] [--latency-ms 0,20] [--repeat 1] [--pool N]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import requests
from agentbench import PY, TOKEN, machine, table

from burst_agent.config import RateLimits
from burst_agent.rescale import transfer
from burst_agent.rescale.client import RescaleClient
from burst_agent.rescale.emulator import spawn_emulator_process
from burst_agent.rescale.ratelimit import RateBudgets
from burst_agent.secret import Token
from burst_agent.staging.outputs import OutputItem, download_all

TARGET_RATIO = 4.0
SIZE = 8 * 1024


def upload_outputs(client: RescaleClient, src: Path, files: int) -> list[OutputItem]:
    """Upload `files` distinct 8 KiB files; the items point at them under 20 nested directories."""
    def one(i: int) -> OutputItem:
        data = (f"{i:08d}".encode() * (SIZE // 8))[:SIZE]
        path = src / f"f{i}.dat"
        path.write_bytes(data)
        remote = client.upload_file(path, name=path.name)
        rel = PurePosixPath(f"out/d{i % 20:02d}/f{i:05d}.dat")
        return OutputItem(str(remote["id"]), rel, SIZE, hashlib.md5(data, usedforsecurity=False).hexdigest())

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(files)))


def fetch(client: RescaleClient, items: list[OutputItem], root: Path, concurrency: int) -> float:
    root.mkdir()

    def download(item: OutputItem, dest: Path) -> None:
        client.download_file(item.file_id, dest, expected_md5=item.md5, expected_size=item.size)

    started = time.perf_counter()
    report = download_all(items, download=download, concurrency=concurrency, root=root, margin_bytes=0)
    elapsed = time.perf_counter() - started
    if report.failed or report.refused or len(report.done) != len(items):
        raise RuntimeError(f"stage-out incomplete: {len(report.done)} done, {report.failed[:3]} "
                           f"{report.refused[:3]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--latency-ms", default="0,20", help="comma-separated emulator latencies")
    parser.add_argument("--repeat", type=int, default=1, help="runs per concurrency and latency")
    parser.add_argument("--pool", type=int, default=None,
                        help="experiment: override transfer.POOL, the buffers each download allocates")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.pool is not None:
        transfer.POOL = args.pool
    print(machine())
    print(f"each download allocates transfer.POOL x CHUNK = {transfer.POOL} x {transfer.CHUNK >> 10} KiB")
    tmp = Path(tempfile.mkdtemp(prefix="burst-stageout-bench-"))
    emulator = spawn_emulator_process(tmp / "emulator", TOKEN)
    rows = []
    try:
        # Budgets lifted: with the defaults every file request spends the "other" budget (7200/h, 120
        # saved up), so a 2,000-file stage-out takes ~16 min whatever the concurrency.
        budgets = RateBudgets(RateLimits(enabled=False))
        with RescaleClient(emulator.url, Token(TOKEN), budgets=budgets) as client:
            (tmp / "src").mkdir()
            items = upload_outputs(client, tmp / "src", args.files)
            run = 0
            for latency in (int(x) for x in args.latency_ms.split(",")):
                requests.post(f"{emulator.url}/_emulator/faults/", json={"latency_ms": latency},
                              headers={"Authorization": f"Token {TOKEN}"}, timeout=30).raise_for_status()
                times: dict[int, list[float]] = {1: [], args.concurrency: []}
                for _ in range(args.repeat):
                    for concurrency in times:
                        run += 1
                        times[concurrency].append(fetch(client, items, tmp / f"out{run}", concurrency))
                        shutil.rmtree(tmp / f"out{run}")
                one, many = statistics.median(times[1]), statistics.median(times[args.concurrency])
                verdict = "MET" if one / many >= TARGET_RATIO else "MISSED"
                rows.append([latency, f"{one:.1f} ({args.files / one:.0f}/s)",
                             f"{many:.1f} ({args.files / many:.0f}/s)", f"{one / many:.2f}x", verdict])
    finally:
        emulator.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    headers = ["emulator latency (ms)", "concurrency 1: s (files/s)",
               f"concurrency {args.concurrency}: s (files/s)", "speed-up", f">= {TARGET_RATIO:.0f}x"]
    print(table(headers, rows))
    print(f"{args.files} files x {SIZE // 1024} KiB, median of {args.repeat} interleaved runs each")
    print(f"command: {PY} benchmarks/stageout_bench.py --files {args.files} --latency-ms {args.latency_ms} "
          f"--repeat {args.repeat}" + (f" --pool {args.pool}" if args.pool is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
