"""`burst-agent translate`: print the POST /api/v2/jobs/ body a Slurm or PBS script becomes."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from burst_agent.spool import REQUEST_MAX_BYTES, SCRIPT_MAX_BYTES

EXIT_UNTRANSLATABLE = 2
CACHE_TTL_S = 24 * 3600
CORETYPES_MAX_BYTES = 16 * 1024 * 1024  # the real catalogue is well under 1 MiB
NO_TOKEN_HELP = (
    "without the agent's API token (only the agent's user holds it), pass --coretypes FILE: the JSON of "
    "GET /api/v2/coretypes/, which the agent's user writes with `burst-agent coretypes --json > FILE`"
)
JSON_MAX_DIGITS = 100  # int() itself stops at 4300 digits, with advice meant for programmers
_NOT_REGULAR = {
    stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", type=Path, metavar="SCRIPT", help="the batch script")
    parser.add_argument(
        "--scheduler",
        choices=("auto", "slurm", "pbs"),
        default="auto",
        help="directive dialect (default: detected from the directives)",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="agent config file (YAML)")
    parser.add_argument(
        "--coretypes",
        type=Path,
        metavar="FILE",
        help="JSON of GET /api/v2/coretypes/ (`burst-agent coretypes --json`); default: ask the configured "
        "API, cached, which needs the API token",
    )
    parser.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="JSON of GET /api/v2/billing/computeprices/, for a priority tier priced from a plan "
        "(translate.priority_tiers.plan_prices); default with such a tier: ask the configured API, cached",
    )
    parser.add_argument(
        "--request",
        type=Path,
        metavar="FILE",
        help="the scheduler's merged request (JSON, see docs/translation.md); wins over the script",
    )


def _cache_path(url: str, kind: str = "coretypes") -> Path:
    import hashlib
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "burst-agent" / f"{kind}-{hashlib.sha256(url.encode()).hexdigest()[:16]}.json"


def _read_cache(path: Path) -> list[dict[str, Any]] | None:
    import time

    try:
        if time.time() - path.stat().st_mtime > CACHE_TTL_S:
            return None
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return items if isinstance(items, list) else None


def _write_cache(path: Path, items: list[dict[str, Any]]) -> None:
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".coretypes-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(items, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs a later API call


def fetch_catalogue(api: Any, kind: str = "coretypes") -> list[dict[str, Any]]:
    """GET /api/v2/coretypes/ (or, kind "computeprices", /billing/computeprices/) from the configured API,
    cached for a day per API URL."""
    from burst_agent.rescale.client import RescaleClient
    from burst_agent.secret import TokenError, TokenSource, load_token

    path = _cache_path(api.url, kind)
    cached = _read_cache(path)
    if cached is not None:
        return cached
    try:
        token = load_token(TokenSource(api.token_credential, api.token_file, api.token_env))
    except TokenError as exc:
        what = "coretype catalogue" if kind == "coretypes" else "compute prices"
        raise TokenError(f"cannot fetch the {what}: {exc}; {NO_TOKEN_HELP}") from exc
    with RescaleClient.from_config(api, token) as client:
        items = client.list_coretypes() if kind == "coretypes" else client.compute_prices()
    _write_cache(path, items)
    return items


def _read_text(path: Path, cap: int) -> str:
    """A regular file's UTF-8 text of at most `cap` bytes; anything else is a ValueError saying why."""
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "a special file")
                raise ValueError(f"{path}: cannot read: {kind}, not a regular file")
            with open(fd, "rb", closefd=False) as f:
                data = f.read(cap + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > cap:
        raise ValueError(f"{path}: cannot read: larger than the {cap}-byte limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: cannot read: not UTF-8 text") from exc


def _json_int(digits: str) -> int:
    if len(digits.lstrip("-")) > JSON_MAX_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits is too large")
    return int(digits)


def _read_json(path: Path, cap: int) -> Any:
    text = _read_text(path, cap)
    try:
        return json.loads(text, parse_int=_json_int)
    except RecursionError as exc:
        raise ValueError(f"{path}: not valid JSON: nested too deeply") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from burst_agent.config import ConfigError, load_config
    from burst_agent.model import CatalogueError
    from burst_agent.request import TranslateError
    from burst_agent.rescale.errors import RescaleError
    from burst_agent.secret import TokenError
    from burst_agent.translate import load_catalogue, parse_script, translate

    name = str(args.script)
    try:
        text = _read_text(args.script, SCRIPT_MAX_BYTES)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNTRANSLATABLE
    try:
        overrides = _read_json(args.request, REQUEST_MAX_BYTES) if args.request else None
    except ValueError as exc:
        print(f"{name}: request file {exc}", file=sys.stderr)
        return EXIT_UNTRANSLATABLE
    try:
        config = load_config(args.config)
        if args.coretypes:
            data = _read_json(args.coretypes, CORETYPES_MAX_BYTES)
        else:
            data = fetch_catalogue(config.api)
        prices = None
        if args.prices:
            prices = _read_json(args.prices, CORETYPES_MAX_BYTES)
        elif config.translate.priority_tiers.plan_prices and not args.coretypes:
            prices = fetch_catalogue(config.api, "computeprices")
        catalogue = load_catalogue(data, prices)
    except (ConfigError, CatalogueError, TokenError, RescaleError, ValueError) as exc:
        print(f"burst-agent translate: {exc}", file=sys.stderr)
        return 1
    try:
        parsed = parse_script(text, scheduler=args.scheduler, request_overrides=overrides)
        result = translate(parsed, catalogue, config.translate, job_name_hint=args.script.name,
                           keep_outputs=config.staging.keep_outputs_on_rescale)
    except TranslateError as exc:
        print(exc.render(name), file=sys.stderr)
        return EXIT_UNTRANSLATABLE
    for warning in result.warnings:
        print(warning.render(name), file=sys.stderr)
    print(json.dumps(result.body, indent=2))
    return 0
