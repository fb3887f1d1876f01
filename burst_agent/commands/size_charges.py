"""`burst-agent size-charges`: as SlurmUser, set each held burst job's cloud-core charge and release it."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from burst_agent.commands.common import add_config_argument, load, slurm_output

Run = Callable[[list[str]], str | None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--partitions", default="rescale", metavar="LIST",
                        help="comma list of the burst partitions (job_submit.lua's RESCALE_PARTITIONS)")
    parser.add_argument("--license", default="rescale_cores", metavar="NAME",
                        help="the license charged per cloud core (job_submit.lua's LICENSE_NAME)")
    parser.add_argument("--coretypes", type=Path, metavar="FILE",
                        help="the agent's catalogue copy (default: <spool>/catalogue/coretypes.json)")
    parser.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between passes")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")


def _run(argv: list[str]) -> str | None:
    return slurm_output(argv, "size-charges")


def one_pass(run: Run, partitions: str, license_name: str, catalogue: list, translate_cfg: object,
             reported: set[str]) -> int:
    """Size and release every job held for sizing in `partitions`; how many were released. A job that
    cannot be read is said once (`reported`: the ids said so far)."""
    from burst_agent import chargesize as cs

    released = 0
    listing = run(["squeue", "-h", "-t", "PD", "-p", partitions, "-o", cs.SQUEUE_FORMAT]) or ""
    for job in sorted(cs.held_jobs(listing), key=lambda held: int(held.job_id)):  # oldest first
        shown = run(["scontrol", "show", "job", "-o", job.job_id]) or ""
        mark = cs.sizing_mark(shown)
        if mark is None:
            if cs.unreadable(shown) and job.job_id not in reported:
                reported.add(job.job_id)
                print(f"job {job.job_id}: left held: its name, paths or comment repeat 'AdminComment=', so "
                      "whether it waits for sizing cannot be read; check it, then `scontrol release` it",
                      file=sys.stderr, flush=True)
            continue
        sizing = cs.size(job, run(["scontrol", "write", "batch_script", job.job_id, "-"]), catalogue,
                         translate_cfg, license_name)
        note = sizing.note

        def update(setting: str, job_id: str = job.job_id) -> str | None:
            return run(["scontrol", "update", f"JobId={job_id}", setting])

        if sizing.licenses is not None and update(f"Licenses={sizing.licenses}") is None:
            note = f"Licenses={sizing.licenses} refused by Slurm: estimate kept"
        # Submitted --hold: the mark goes, and the owner releases it. Else released first: a job whose
        # mark could not be cleared still runs (and the mark no longer matters once it does).
        if mark == cs.SIZING_HELD_MARK:
            if update(f"AdminComment={cs.SIZED_MARK}") is not None:
                print(f"job {job.job_id}: sized, kept held as submitted: {note}", flush=True)
        elif run(["scontrol", "release", job.job_id]) is not None:
            update(f"AdminComment={cs.SIZED_MARK}")
            released += 1
            print(f"job {job.job_id}: released: {note}", flush=True)
    return released


def run(args: argparse.Namespace) -> int:
    from burst_agent.cataloguecopy import catalogue_dir
    from burst_agent.commands.translate import CORETYPES_MAX_BYTES, _read_json
    from burst_agent.model import CatalogueError
    from burst_agent.translate import load_catalogue

    config = load(args)
    copies = catalogue_dir(Path(config.agent.spool_dir))
    path = args.coretypes or copies / "coretypes.json"
    prices_path = copies / "computeprices.json" if config.translate.priority_tiers.plan_prices else None
    reported: set[str] = set()
    said = ""
    while True:
        try:
            prices = _read_json(prices_path, CORETYPES_MAX_BYTES) if prices_path else None
            catalogue = load_catalogue(_read_json(path, CORETYPES_MAX_BYTES), prices)
        except (ValueError, CatalogueError) as exc:
            problem = f"the catalogue {exc} (the agent writes it once it has fetched it; or --coretypes FILE)"
            if problem != said:  # said once, not every pass
                print(f"burst-agent size-charges: {problem}", file=sys.stderr, flush=True)
                said = problem
            if args.once:
                return 1
        else:
            said = ""
            one_pass(_run, args.partitions, args.license, catalogue, config.translate, reported)
            if args.once:
                return 0
        time.sleep(args.interval)
