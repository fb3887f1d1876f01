"""Benchmark: our download (md5 in the same pass, fsync) vs `curl -o` on the same URL; upload/download RSS.

  python benchmarks/transfer_bench.py                      # own emulator in a temp dir, 1 GiB, 5 rounds
  python benchmarks/transfer_bench.py --size-mib 256 --repeat 3
  python benchmarks/transfer_bench.py --url http://127.0.0.1:8765 --token-file tok   # a running emulator

It creates a SIZE file of random bytes, uploads it with our client in a child process (peak RSS growth),
then runs rounds of: `curl -o FILE` (timed), `sync FILE` (timed on top: curl+sync), then our client in a
child process (timed inside the child around download_file, which verifies md5 and fsyncs). Reported:
per-round times, medians, the median of the per-round ratios ours/curl and ours/curl+sync (target >= 0.9),
and peak RSS growth (target < 50 MB). The token reaches children via the environment and curl via a 0600
header file, never a command line. Temp files and the emulator are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

TOKEN_ENV = "BURST_BENCH_TOKEN"


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """In a subprocess: one transfer, then a JSON line with seconds and peak RSS growth (MB)."""
    from burst_agent.config import RateLimits
    from burst_agent.rescale.client import RescaleClient
    from burst_agent.rescale.ratelimit import RateBudgets
    from burst_agent.secret import Token

    budgets = RateBudgets(RateLimits(enabled=False))
    client = RescaleClient(args.url, Token(os.environ[TOKEN_ENV]), budgets=budgets)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    base = _vm_kib("VmRSS")
    started = time.perf_counter()
    if args.child == "upload":
        result = client.upload_file(Path(args.path))
    else:
        done = client.download_file(args.file_id, Path(args.path), expected_md5=args.md5 or None)
        result = {"md5": done.md5, "size": done.size}
    seconds = time.perf_counter() - started
    grown = (_vm_kib("VmHWM") - base) / 1024
    print(json.dumps({"seconds": seconds, "rss_growth_mb": grown, "result": result}))


def run_child(mode: str, url: str, token: str, path: Path, file_id: str = "", md5: str = "") -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--url", url, "--path", str(path),
           "--file-id", file_id, "--md5", md5]
    env = {**os.environ, TOKEN_ENV: token}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_curl(url: str, header_file: Path, dest: Path) -> tuple[float, float]:
    """(seconds for `curl -o`, seconds for curl plus `sync FILE`)."""
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-H", f"@{header_file}", "-o", str(dest), url], check=True)
    fetched = time.perf_counter()
    subprocess.run(["sync", str(dest)], check=True)
    return fetched - started, time.perf_counter() - started


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        for offset in range(0, size, 1 << 20):
            fh.write(os.urandom(min(1 << 20, size - offset)))


def machine_facts() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return (f"nproc {os.cpu_count()}, CPU {model}, kernel {platform.release()}, "
            f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")


def start_server(args: argparse.Namespace, stack: ExitStack, work: Path) -> tuple[str, str]:
    if args.url:
        token = (args.token_file.read_text().strip() if args.token_file else os.environ.get(TOKEN_ENV, ""))
        if not token:
            sys.exit(f"--url needs --token-file or ${TOKEN_ENV}")
        return args.url.rstrip("/"), token
    from burst_agent.rescale.emulator import spawn_emulator_process

    token = secrets.token_urlsafe(24)
    process = stack.enter_context(spawn_emulator_process(work / "emulator", token))
    return process.url, token


def _mbs(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--url", help="use a running API at this base URL instead of starting an emulator")
    parser.add_argument("--token-file", type=Path, help=f"token for --url (or ${TOKEN_ENV})")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of curl / ours (default 5)")
    parser.add_argument("--workdir", type=Path, default=None, help="where temp files go (default: $TMPDIR)")
    parser.add_argument("--child", choices=("upload", "download"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--file-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--md5", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print("machine:", machine_facts())
    size = args.size_mib << 20
    with ExitStack() as stack:
        tmp = tempfile.TemporaryDirectory(prefix="transfer-bench-", dir=args.workdir)
        work = Path(stack.enter_context(tmp))
        base_url, token = start_server(args, stack, work)
        src = work / "bench.bin"
        make_file(src, size)
        up = run_child("upload", base_url, token, src)
        src.unlink()
        file_id, md5 = up["result"]["id"], up["result"]["md5"]
        header = work / "auth.hdr"
        header.touch(mode=0o600)
        header.write_text(f"Authorization: Token {token}\n")
        url = f"{base_url}/api/v2/files/{file_id}/contents/"
        print(f"\nsize {args.size_mib} MiB; upload {_mbs(size, up['seconds']):.0f} MB/s, "
              f"peak RSS growth {up['rss_growth_mb']:.1f} MB\n")
        print(f"{'round':>5} {'curl s':>7} {'curl+sync s':>11} {'ours s':>7} {'ours/curl':>9} "
              f"{'ours/curl+sync':>14} {'ours RSS MB':>11}")
        rows = []
        for n in range(1, args.repeat + 1):
            curl_s, synced_s = run_curl(url, header, work / "curl.bin")
            (work / "curl.bin").unlink()
            ours = run_child("download", base_url, token, work / "ours.bin", file_id, md5)
            (work / "ours.bin").unlink()
            row = (curl_s, synced_s, ours["seconds"], curl_s / ours["seconds"], synced_s / ours["seconds"],
                   ours["rss_growth_mb"])
            rows.append(row)
            print(f"{n:>5} {row[0]:>7.2f} {row[1]:>11.2f} {row[2]:>7.2f} {row[3]:>9.2f} {row[4]:>14.2f} "
                  f"{row[5]:>11.1f}")
        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"{'median':>6} {med[0]:>6.2f} {med[1]:>11.2f} {med[2]:>7.2f} {med[3]:>9.2f} {med[4]:>14.2f}")
        print(f"\ncurl {_mbs(size, med[0]):.0f} MB/s, curl+sync {_mbs(size, med[1]):.0f} MB/s, "
              f"ours (md5 + fsync) {_mbs(size, med[2]):.0f} MB/s (medians)")
        print(f"ratio ours/curl {med[3]:.2f}, ours/curl+sync {med[4]:.2f} (median of rounds; target >= 0.90)")
        # On a VM whose host is busy, curl (which fills 1 GiB of fresh page cache per round) can slow down
        # round after round while ours does not, which flatters the median: this is the strict reading.
        fastest = min(r[0] for r in rows)
        print(f"strict: fastest curl round {_mbs(size, fastest):.0f} MB/s vs median ours "
              f"{_mbs(size, med[2]):.0f} MB/s = {fastest / med[2]:.2f}")
        print(f"peak RSS growth: download max {max(r[5] for r in rows):.1f} MB, "
              f"upload {up['rss_growth_mb']:.1f} MB (target < 50)")


if __name__ == "__main__":
    main()
