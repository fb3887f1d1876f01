"""Arguments, loading and Slurm command runs shared by the commands that read the agent's config."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from burst_agent.config import DEFAULT_CONFIG, Config, ConfigError, load_config


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help=f"agent config (default: {DEFAULT_CONFIG} if it exists, else built-in defaults)",
    )


def config_path(path: Path | None) -> Path | None:
    """`path`, else the default file if it exists, else None (the built-in defaults)."""
    return path if path is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)


def load_config_file(path: Path | None) -> Config:
    """The config at `path`, else the default file if it exists, else the built-in defaults."""
    return load_config(config_path(path))


def load(args: argparse.Namespace) -> Config:
    """The config named by --config (or the default file); a bad one exits 2 with the key path."""
    try:
        return load_config_file(args.config)
    except ConfigError as exc:
        print(f"burst-agent: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def reads_store(config: Config) -> bool:
    """Whether this process may open the agent's database itself (the agent's user, root); others ask
    the agent through its socket. A PostgreSQL store: root and the spool's owner (the agent's user)."""
    import os

    db = config.agent.state_db
    if not isinstance(db, Path):
        spool = Path(config.agent.spool_dir)
        return os.geteuid() == 0 or (spool.exists() and spool.stat().st_uid == os.geteuid())
    here = os.access(db.parent, os.W_OK | os.X_OK)
    return here and (os.access(db, os.R_OK | os.W_OK) if db.exists() else True)


def agent_unreachable(command: str, config: Config, exc: OSError) -> int:
    """Say on stderr that the agent's socket did not answer; the exit code."""
    print(f"burst-agent {command}: cannot reach the agent at {config.agent.spool_dir}/agent.sock "
          f"({exc.strerror or exc}); is it running?", file=sys.stderr)
    return 1


def ask_agent(config: Config, message: dict[str, Any]) -> dict[str, Any]:
    """One request to the running agent over its socket, as this user (SO_PEERCRED says who)."""
    from burst_agent.relayproto import call
    from burst_agent.spool import Spool

    answer, _fds = call(Spool(Path(config.agent.spool_dir)).socket_path, message)
    return answer


def slurm_output(argv: list[str], command: str, timeout: float = 30.0) -> str | None:
    """A Slurm command's stdout; None, said on stderr as `burst-agent COMMAND: ...`, when it failed."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"burst-agent {command}: {argv[0]}: {exc}", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"burst-agent {command}: {' '.join(argv[:5])}: {done.stderr.strip()[:300]}", file=sys.stderr)
        return None
    return done.stdout
