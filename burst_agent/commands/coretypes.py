"""`burst-agent coretypes`: the coretype catalogue of the configured API, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# $/CORE-H: `price` (the on-demand-priority tier); ECONOMY: `lowPriorityPrice` (on-demand-economy).
COLUMNS = ("CODE", "NAME", "CORES", "MB/CORE", "$/CORE-H", "ECONOMY", "DEPRECATED")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="agent config file (YAML)")
    parser.add_argument("--json", action="store_true", help="print the API's coretype objects as JSON")


def format_table(items: list[dict[str, Any]]) -> str:
    """Aligned text table, one coretype a row, sorted by code."""
    from burst_agent.model import Coretype
    from burst_agent.textable import render

    rows = [
        (ct.code, ct.name, ",".join(map(str, ct.cores)), str(ct.memory_mb_per_core),
         str(ct.price_per_core_hour), str(ct.price("lowPriorityPrice") or "-"),
         "yes" if ct.is_deprecated else "no")
        for ct in sorted((Coretype.from_api(i) for i in items), key=lambda c: c.code)
    ]
    return render(COLUMNS, rows)


def run(args: argparse.Namespace) -> int:
    from burst_agent.config import ConfigError, load_config
    from burst_agent.model import CatalogueError
    from burst_agent.rescale.client import RescaleClient
    from burst_agent.rescale.errors import RescaleError
    from burst_agent.secret import TokenError, TokenSource, load_token

    try:
        api = load_config(args.config).api
        token = load_token(TokenSource(api.token_credential, api.token_file, api.token_env))
        with RescaleClient.from_config(api, token) as client:
            items = client.list_coretypes()
        text = json.dumps(items, indent=1) if args.json else format_table(items)
    except (ConfigError, TokenError, RescaleError, CatalogueError) as exc:
        print(f"burst-agent coretypes: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0
