"""Benchmark: one large file over an emulated WAN (ranged download vs aria2c), or over loopback (vs curl).

  python benchmarks/wan_download.py                        # WAN: 4 GiB, 8 connections, 50 MB/s each, 40 ms
  python benchmarks/wan_download.py --size-mib 512         # a quick WAN run
  python benchmarks/wan_download.py --mode loopback        # 1 GiB, no caps: vs `curl URL | tee F | md5sum`

Starts an emulator (spawn_emulator_process, temp dir), uploads a random file, and in WAN mode caps each
connection's bandwidth (emulator setting bandwidth_bytes_per_s) and delays every answer by the round
trip (latency_ms). Then, in each round: our client in a child process (download_file with the declared
size and md5: HEAD, parallel ranges, md5 in order, fsync, rename; timed inside the child), and the
peer on the same link: `aria2c -x8 -s8` (WAN, if installed; timed alone, and with `md5sum` after it as
a verified peer) or `curl URL | tee FILE | md5sum` (loopback). md5 speed of this CPU (hashlib over a
256 MiB buffer in memory) is measured in the same run. The token reaches the child via the environment
and aria2c / curl via 0600 files, never a command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import transfer_bench
from transfer_bench import TOKEN_ENV, machine_facts, make_file

MB = 1e6


def child(args: argparse.Namespace) -> None:
    """In a subprocess: one download as the agent makes it; a JSON line with its seconds."""
    from burst_agent.config import RateLimits
    from burst_agent.rescale.client import RescaleClient
    from burst_agent.rescale.ratelimit import RateBudgets
    from burst_agent.secret import Token

    budgets = RateBudgets(RateLimits(enabled=False))
    client = RescaleClient(args.url, Token(os.environ[TOKEN_ENV]), budgets=budgets)
    started = time.perf_counter()
    done = client.download_file(args.file_id, Path(args.path), expected_md5=args.md5,
                                expected_size=args.size, range_connections=args.connections)
    print(json.dumps({"seconds": time.perf_counter() - started, "md5": done.md5}))


def ours(url: str, token: str, dest: Path, file_id: str, md5: str, size: int, connections: int) -> float:
    cmd = [sys.executable, __file__, "--child", "--url", url, "--path", str(dest), "--file-id", file_id,
           "--md5", md5, "--size", str(size), "--connections", str(connections)]
    env = {**os.environ, TOKEN_ENV: token}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["md5"] == md5
    dest.unlink()
    return result["seconds"]


def timed(command: list[str] | str, **kw: object) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - started


def aria2c(url: str, conf: Path, dest: Path, md5: str) -> tuple[float, float]:
    """(seconds for `aria2c -x8 -s8`, seconds with `md5sum` of its file after it)."""
    fetched = timed(["aria2c", "-x8", "-s8", f"--conf-path={conf}", "-d", str(dest.parent), "-o", dest.name,
                     "--allow-overwrite=true", "--auto-file-renaming=false", "--console-log-level=warn",
                     "--summary-interval=0", "--download-result=hide", "--show-console-readout=false", url],
                    stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    out = subprocess.run(["md5sum", str(dest)], check=True, capture_output=True, text=True).stdout
    assert out.split()[0] == md5, "aria2c's file is not the file"
    dest.unlink()
    return fetched, fetched + time.perf_counter() - started


def curl_tee_md5(url: str, header: Path, dest: Path, md5: str) -> float:
    pipeline = (f"set -o pipefail; curl -sS --fail -H @{shlex.quote(str(header))} {shlex.quote(url)}"
                f" | tee {shlex.quote(str(dest))} | md5sum > {shlex.quote(str(dest))}.md5")
    seconds = timed(["bash", "-c", pipeline])
    assert Path(f"{dest}.md5").read_text().split()[0] == md5
    dest.unlink()
    return seconds


def md5_speed(size: int = 256 << 20) -> float:
    """MB/s of hashlib.md5 over a buffer in memory, 256 KiB updates as the client makes them; best of 3."""
    view = memoryview(os.urandom(size))
    best = float("inf")
    for _ in range(3):
        digest, started = hashlib.md5(usedforsecurity=False), time.perf_counter()
        for at in range(0, size, 256 << 10):
            digest.update(view[at : at + (256 << 10)])
        best = min(best, time.perf_counter() - started)
    return size / best / MB


def secret_files(work: Path, token: str) -> tuple[Path, Path]:
    header, conf = work / "auth.hdr", work / "aria2.conf"
    for path, text in ((header, f"Authorization: Token {token}\n"),
                       (conf, f"header=Authorization: Token {token}\n")):
        path.touch(mode=0o600)
        path.write_text(text)
    return header, conf


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--mode", choices=("wan", "loopback"), default="wan")
    parser.add_argument("--size-mib", type=int, help="default: 4096 (wan), 1024 (loopback)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--bandwidth-mbps", type=float, default=50.0, help="MB/s per connection (wan)")
    parser.add_argument("--rtt-ms", type=int, default=40, help="round trip: every answer's delay (wan)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (default 1)")
    parser.add_argument("--workdir", type=Path, default=None, help="where temp files go (default: $TMPDIR)")
    for hidden in ("--url", "--path", "--file-id", "--md5"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    wan = args.mode == "wan"
    size = (args.size_mib or (4096 if wan else 1024)) << 20
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print("machine:", machine_facts())
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wan-bench-", dir=args.workdir)))
        from burst_agent.rescale.emulator import spawn_emulator_process

        token = os.urandom(18).hex()
        base_url = stack.enter_context(spawn_emulator_process(work / "emulator", token)).url
        src = work / "bench.bin"
        make_file(src, size)
        up = transfer_bench.run_child("upload", base_url, token, src)
        src.unlink()
        file_id, md5 = up["result"]["id"], up["result"]["md5"]
        header, conf = secret_files(work, token)
        if wan:
            link = {"bandwidth_bytes_per_s": int(args.bandwidth_mbps * MB), "latency_ms": args.rtt_ms}
            requests.post(f"{base_url}/_emulator/faults/", json=link, timeout=10,
                          headers={"Authorization": f"Token {token}"}).raise_for_status()
            print(f"link: {args.bandwidth_mbps:g} MB/s per connection, {args.rtt_ms} ms per answer")
        url = f"{base_url}/api/v2/files/{file_id}/contents/"
        hashing = md5_speed()
        has_aria2c = shutil.which("aria2c") is not None
        print(f"size {size >> 20} MiB; md5 on this CPU {hashing:.0f} MB/s\n")
        rows = []
        for n in range(1, args.repeat + 1):
            mine = ours(base_url, token, work / "ours.bin", file_id, md5, size, args.connections)
            if not wan:
                peer = verified = curl_tee_md5(url, header, work / "curl.bin", md5)
                one = ours(base_url, token, work / "ours.bin", file_id, md5, size, 1)
                names = ("curl|tee|md5sum", "", "ours over one stream")
            else:
                nan = float("nan")
                peer, verified = aria2c(url, conf, work / "aria2c.bin", md5) if has_aria2c else (nan, nan)
                one, names = nan, ("aria2c -x8 -s8", "aria2c then md5sum", "")
            rows.append((mine, peer, verified, one))
            shown = [f"{name} {_rate(size, s)}" for name, s in zip(("ours", *names), rows[-1], strict=True)
                     if name]
            print(f"round {n}: " + ", ".join(dict.fromkeys(shown)))
        mine, peer, verified, one = (min(col) for col in zip(*rows, strict=True))
        print()
        if wan:
            link_mbs = min(args.connections * args.bandwidth_mbps, 400.0)
            print(f"ours / min(md5 {hashing:.0f}, {link_mbs:.0f} MB/s): "
                  f"{size / mine / MB / min(hashing, link_mbs):.2f} (target >= 0.90)")
            print(f"ours / aria2c -x8 -s8: {peer / mine:.2f} (target >= 1.0); "
                  f"ours / aria2c then md5sum: {verified / mine:.2f}")
        else:
            print(f"ours / curl|tee|md5sum: {peer / mine:.2f} (target >= 1.0); "
                  f"ours over one stream / curl|tee|md5sum: {peer / one:.2f}")


def _rate(size: int, seconds: float) -> str:
    return f"{size / seconds / MB:.0f} MB/s ({seconds:.2f} s)"


if __name__ == "__main__":
    main()
