"""`burst-agent config check FILE`: validate a config; print it in effect, with overrides and token source."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="validate FILE; print the effective config (defaults filled in) as YAML",
        description="Validate FILE (exit 2 naming the key path on error) and print the effective config.",
    )
    check.add_argument("file", type=Path, metavar="FILE", help="the agent config (YAML)")


def effective_yaml(path: Path, environ: Mapping[str, str]) -> str:
    """The effective config of `path` as YAML, headed by comments: overrides applied, where the token is.

    Raises ConfigError (naming the file and key path) if the config is invalid.
    """
    import yaml

    from burst_agent.config import effective_dict, env_override_paths, load_config
    from burst_agent.doctor import find_token

    config = load_config(path, environ)
    overrides = env_override_paths(environ)
    header = [f"# burst-agent effective configuration: {path} (valid)"]
    header += [f"# environment override: {name} -> {key}" for name, key in overrides.items()]
    header.append(f"# token: {find_token(config.api, environ).describe()}")
    body = yaml.safe_dump(effective_dict(config), sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def check(path: Path, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    from burst_agent.config import ConfigError, env_override_paths

    try:
        text = effective_yaml(path, environ)
    except ConfigError as exc:
        print(f"burst-agent config check: {exc}", file=err)
        for name, key in env_override_paths(environ).items():
            print(f"  (environment override in effect: {name} -> {key})", file=err)
        return 2
    out.write(text)
    return 0


def run(args: argparse.Namespace) -> int:
    return check(args.file, dict(os.environ), sys.stdout, sys.stderr)
