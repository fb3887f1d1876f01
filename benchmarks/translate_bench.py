"""Benchmark: parse + select + build the job body for 10,000 scripts (target: under 10 s).

Run: .venv/bin/python benchmarks/translate_bench.py [N]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml

from burst_agent.config import config_from_mapping
from burst_agent.translate import load_catalogue, parse_script, translate

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 10.0


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    scripts = [p.read_text() for p in sorted((ROOT / "tests/golden/scripts").glob("[sp]*.sh"))]
    catalogue = load_catalogue(json.loads((ROOT / "burst_agent/data/coretypes.json").read_text()))
    # The golden scripts' own settings (GPU coretypes, priority tiers some scripts choose).
    golden = yaml.safe_load((ROOT / "tests/golden/config.yaml").read_text())
    cfg = config_from_mapping(golden, "tests/golden/config.yaml").translate
    start = time.perf_counter()
    for i in range(count):
        parsed = parse_script(scripts[i % len(scripts)])
        json.dumps(translate(parsed, catalogue, cfg, job_ids={"job_id": str(i)}).body)
    elapsed = time.perf_counter() - start
    verdict = "OK" if elapsed < TARGET_S else "SLOW"
    print(f"translate_bench: {count} scripts ({len(scripts)} distinct) in {elapsed:.2f} s "
          f"({elapsed / count * 1e6:.0f} us each): {verdict} (target < {TARGET_S:.0f} s for 10000)")
    print("command: .venv/bin/python benchmarks/translate_bench.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
