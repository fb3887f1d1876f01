"""`burst-agent size-charges`: as SlurmUser, set each held burst job's cloud-core charge and release it."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from burst_agent.commands.common import add_config_argument, load, slurm_output

if TYPE_CHECKING:
    from burst_agent.chargesize import HeldJob

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


SIZERS = 4  # jobs sized at once: slurmctld answers several commands at a time (docs/benchmarks.md)


def size_one(run: Run, job: HeldJob, license_name: str, catalogue: list, translate_cfg: object,
             reported: set[str]) -> bool:
    """Size one held job and release it (or unmark it, if submitted --hold); whether it was released.
    A job that cannot be read is said once (`reported`: the ids said so far)."""
    from burst_agent import chargesize as cs

    shown = run(["scontrol", "show", "job", "-o", job.job_id]) or ""
    mark = cs.sizing_mark(shown)
    if mark is None:
        if cs.unreadable(shown) and job.job_id not in reported:
            reported.add(job.job_id)
            print(f"job {job.job_id}: left held: its name, paths or comment repeat 'AdminComment=', so "
                  "whether it waits for sizing cannot be read; check it, then `scontrol release` it",
                  file=sys.stderr, flush=True)
        return False
    sizing = cs.size(job, run(["scontrol", "write", "batch_script", job.job_id, "-"]), catalogue,
                     translate_cfg, license_name)
    note = sizing.note

    def update(setting: str) -> str | None:
        return run(["scontrol", "update", f"JobId={job.job_id}", setting])

    if sizing.licenses is not None and update(f"Licenses={sizing.licenses}") is None:
        note = f"Licenses={sizing.licenses} refused by Slurm: estimate kept"
    # Submitted --hold: the mark goes, and the owner releases it. Else released first: a job whose
    # mark could not be cleared still runs (and the mark no longer matters once it does).
    if mark == cs.SIZING_HELD_MARK:
        if update(f"AdminComment={cs.SIZED_MARK}") is not None:
            print(f"job {job.job_id}: sized, kept held as submitted: {note}", flush=True)
        return False
    if run(["scontrol", "release", job.job_id]) is None:
        return False
    update(f"AdminComment={cs.SIZED_MARK}")
    print(f"job {job.job_id}: released: {note}", flush=True)
    return True


def one_pass(run: Run, partitions: str, license_name: str, catalogue: list, translate_cfg: object,
             reported: set[str], sizers: int = SIZERS) -> int:
    """Size every job held for sizing in `partitions`, oldest first, `sizers` at a time; how many
    were released."""
    from concurrent.futures import ThreadPoolExecutor

    from burst_agent.chargesize import SQUEUE_FORMAT, held_jobs

    listing = run(["squeue", "-h", "-t", "PD", "-p", partitions, "-o", SQUEUE_FORMAT]) or ""
    jobs = sorted(held_jobs(listing), key=lambda held: int(held.job_id))
    with ThreadPoolExecutor(max_workers=sizers) as pool:
        done = pool.map(lambda job: size_one(run, job, license_name, catalogue, translate_cfg, reported),
                        jobs)
        return sum(done)


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
