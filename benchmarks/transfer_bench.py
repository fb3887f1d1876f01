"""Benchmark: our download (md5 in the same pass) vs `curl -o` on the same URL, and upload memory.

Run against a running emulator (or any API that has the file):
  burst-agent emulate --port 8765 --token T --data-dir /tmp/emu &
  python benchmarks/transfer_bench.py --url http://127.0.0.1:8765 --token T --size-mib 1024

It creates a SIZE file, uploads it with our client (in a child process, to measure its peak RSS growth),
then downloads it `--repeat` times with curl and with our client, alternating, each in its own process.
Reported: best throughput of each, the ratio ours/curl (target >= 0.9), and the peak RSS growth of the
download and upload children (target < 50 MB). The token reaches children via the environment and curl
via a 0600 header file, never via a command line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN_ENV = "BURST_BENCH_TOKEN"


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    Path("/proc/self/clear_refs").write_text("5")


def child(args: argparse.Namespace) -> None:
    """Runs in a subprocess: one transfer, then a JSON line with seconds and peak RSS growth."""
    from burst_agent.config import RateLimits
    from burst_agent.rescale.client import RescaleClient
    from burst_agent.rescale.ratelimit import RateBudgets
    from burst_agent.secret import Token

    budgets = RateBudgets(RateLimits(enabled=False))
    client = RescaleClient(args.url, Token(os.environ[TOKEN_ENV]), budgets=budgets)
    _reset_peak()
    base = _vm_kib("VmRSS")
    started = time.perf_counter()
    if args.child == "upload":
        result: dict[str, object] = client.upload_file(Path(args.path))
    else:
        dl = client.download_file(args.file_id, Path(args.path), expected_md5=args.md5)
        result = {"md5": dl.md5, "size": dl.size}
    seconds = time.perf_counter() - started
    grown = (_vm_kib("VmHWM") - base) / 1024
    print(json.dumps({"seconds": seconds, "rss_growth_mb": grown, "result": result}))


def run_child(mode: str, url: str, token: str, path: Path, file_id: str = "", md5: str = "") -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--url", url, "--path", str(path),
           "--file-id", file_id, "--md5", md5]
    env = {**os.environ, TOKEN_ENV: token}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_curl(url: str, header_file: Path, dest: Path, fsync: bool) -> float:
    """curl -o; with `fsync`, also `sync FILE` (we fsync before the rename, curl does not)."""
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-H", f"@{header_file}", "-o", str(dest), url], check=True)
    if fsync:
        subprocess.run(["sync", str(dest)], check=True)
    return time.perf_counter() - started


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        for _ in range(size >> 20):
            fh.write(block)
        fh.write(block[: size & ((1 << 20) - 1)])


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--url", required=True, help="API base URL, e.g. http://127.0.0.1:8765")
    parser.add_argument("--token", help=f"API token (or ${TOKEN_ENV})")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="where the test files go (default: tmp)")
    parser.add_argument("--child", choices=("upload", "download"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--file-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--md5", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.md5 = args.md5 or None
        child(args)
        return
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        parser.error(f"--token or ${TOKEN_ENV} is required")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        src = work / "bench.bin"
        size = args.size_mib << 20
        make_file(src, size)
        up = run_child("upload", args.url, token, src)
        file_id, md5 = up["result"]["id"], up["result"].get("md5") or ""
        print(f"upload: {size / up['seconds'] / 1e6:.0f} MB/s, peak RSS growth {up['rss_growth_mb']:.1f} MB")
        src.unlink()
        header = work / "auth.hdr"
        header.touch(mode=0o600)
        header.write_text(f"Authorization: Token {token}\n")
        url = f"{args.url.rstrip('/')}/api/v2/files/{file_id}/contents/"
        curl_s, synced_s, ours_s, growth = [], [], [], []
        for _ in range(args.repeat):
            for fsync, times in ((False, curl_s), (True, synced_s)):
                times.append(run_curl(url, header, work / "curl.bin", fsync))
                (work / "curl.bin").unlink()
            ours = run_child("download", args.url, token, work / "ours.bin", file_id, md5)
            ours_s.append(ours["seconds"])
            growth.append(ours["rss_growth_mb"])
            (work / "ours.bin").unlink()
        curl_mbs, synced_mbs, ours_mbs = (size / min(t) / 1e6 for t in (curl_s, synced_s, ours_s))
        print(f"download: curl {curl_mbs:.0f} MB/s, curl+fsync {synced_mbs:.0f} MB/s, "
              f"ours (md5 + fsync) {ours_mbs:.0f} MB/s")
        print(f"ratio vs curl {ours_mbs / curl_mbs:.2f}, vs curl+fsync {ours_mbs / synced_mbs:.2f} "
              "(target >= 0.90)")
        print(f"download peak RSS growth: max {max(growth):.1f} MB (target < 50)")


if __name__ == "__main__":
    main()
