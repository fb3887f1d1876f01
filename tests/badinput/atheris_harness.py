"""Coverage-guided fuzzing with atheris (not part of the pytest suite; see docs/bad-input.md).

    .venv/bin/python tests/badinput/atheris_harness.py parser -runs=100000
    .venv/bin/python tests/badinput/atheris_harness.py config -runs=100000

Only TranslateError (parser) and ConfigError (config) may escape; anything else is a finding.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from burst_agent.config import ConfigError, TranslateConfig, load_config
    from burst_agent.dialects import parse_script
    from burst_agent.request import TranslateError
    from burst_agent.translate import load_catalogue, translate

CATALOGUE = load_catalogue(json.loads(files("burst_agent.data").joinpath("coretypes.json").read_text()))
CFG = TranslateConfig()
SCHEDULERS = ("auto", "slurm", "pbs")
CONFIG_FILE = Path(tempfile.mkdtemp(prefix="burst-atheris-")) / "config.yaml"


def parser_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    scheduler = SCHEDULERS[fdp.ConsumeIntInRange(0, 2)]
    text = fdp.ConsumeBytes(fdp.remaining_bytes()).decode("utf-8", "surrogateescape")
    with contextlib.suppress(TranslateError):
        translate(parse_script(text, scheduler=scheduler), CATALOGUE, CFG)


def config_target(data: bytes) -> None:
    CONFIG_FILE.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load_config(CONFIG_FILE, {})


TARGETS = {"parser": parser_target, "config": config_target}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
