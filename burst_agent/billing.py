"""Rescale's bill (pure): the project billing CSV's line items, summed per Rescale job id and month.

The API document's "View Project Billing Summary" answers a CSV with this header, one line item per
row (Type Compute, Storage or Rescale Platform; `ID` the job's, or a storage device's, id), and a
last `Total` row (ragged in the document's sample: fewer cells, the label under Stop Date):

    Workspace ID,User,Type,ID,Name,...,Month,...,Charge,...
    {workspace},{user},Compute,mjXbT,...,2024-02,...,$2.85,...
    ,,,,,,,,,,,,,,Total,,,,,$2.89,,,

Parsing is strict where the figures come from: every column of the document's header must be there
(by name, so an added or moved column still parses), every line item has as many cells as the header,
a Month is YYYY-MM, a Charge an amount with at most one currency symbol; anything else is a
BillingFormatError naming the line and the column.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from burst_agent.record import JobRecord

# The document's header, in its order.
HEADER: tuple[str, ...] = (
    "Workspace ID", "User", "Type", "ID", "Name", "Custom Fields", "Project ID", "Project Name", "Software",
    "Rescale On-Demand License", "License Settings", "Month", "Submit Date", "Start Date", "Stop Date",
    "Description", "Billing Priority", "Cores", "Unit Hours", "Unit Charge/Hour", "Charge", "SKU", "Job Type",
    "Walltime",
)
# The document shows the line item types Compute, Storage and Rescale Platform. A job's charge sums
# every type (another, a software license say, is on the bill too); its Compute lines are kept apart.
COMPUTE = "Compute"
TOTAL_LABEL = "total"
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
# "$2.85", "-$1.00", "$-1.00", "($1.00)", "$1,234.50", "2.85", "€0.40": sign, symbol, digits.
_AMOUNT = re.compile(r"(?P<open>\()?(?P<sign1>-)?(?P<symbol>[^\d\s.,()+-]{0,3})(?P<sign2>-)?"
                     r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?P<close>\))?")


class BillingFormatError(ValueError):
    """A billing CSV that does not have the document's shape; the message names the line and column."""


@dataclass(frozen=True)
class LineItem:
    """One row of Rescale's bill."""

    line: int  # where the row ends in the CSV text, from 1 (the header)
    job_id: str  # the ID column: a Rescale job (or storage device) id
    kind: str  # the Type column
    month: str  # YYYY-MM
    project: str
    charge: Decimal


@dataclass(frozen=True)
class Bill:
    """A project's billing CSV, parsed: its line items, their currency symbol, the Total row's figure."""

    items: tuple[LineItem, ...]
    symbol: str  # "$" ("" when the charges carry none)
    stated_total: Decimal | None  # the Total row's amount, if it had one

    @property
    def total(self) -> Decimal:
        return sum((item.charge for item in self.items), Decimal(0))


@dataclass(frozen=True)
class JobCharge:
    """What Rescale billed one job in one month: every line item, and the Compute ones alone."""

    remote_job_id: str
    month: str
    project: str
    charge: Decimal
    compute: Decimal
    symbol: str


@dataclass(frozen=True)
class ActualCost:
    """A job's charges over every month billed so far (what the report shows as ACTUAL)."""

    charge: Decimal
    compute: Decimal
    symbol: str
    months: tuple[str, ...]


@dataclass(frozen=True)
class BillingSummary:
    """The workspace billing summary of one month, as Rescale answered it (totals only: no jobs)."""

    month: str
    summary: dict[str, Any]  # jobs, hardwareCharge, storageCharge, totalCharge, ...
    fetched_at: float


def parse_charge(text: str) -> tuple[str, Decimal]:
    """"$2.85" -> ("$", Decimal("2.85")); "-$1.00" and "($1.00)" are credits. ValueError otherwise."""
    match = _AMOUNT.fullmatch(text.strip())
    if match is None or bool(match["open"]) != bool(match["close"]) or (match["sign1"] and match["sign2"]):
        raise ValueError(f"{text!r} is not an amount")
    try:
        value = Decimal(match["number"].replace(",", ""))
    except InvalidOperation as exc:  # the pattern allows only digits; kept for safety
        raise ValueError(f"{text!r} is not an amount") from exc
    negative = bool(match["open"] or match["sign1"] or match["sign2"])
    return match["symbol"], -value if negative else value


def _is_total(cells: list[str]) -> bool:
    return any(cell.strip().lower() == TOTAL_LABEL for cell in cells)


def _total_amount(cells: list[str], line: int) -> Decimal | None:
    amounts = [cell for cell in cells if cell.strip() and cell.strip().lower() != TOTAL_LABEL]
    if len(amounts) > 1:
        raise BillingFormatError(f"billing CSV line {line}: the Total row has more than one figure")
    try:
        return parse_charge(amounts[0])[1] if amounts else None
    except ValueError as exc:
        raise BillingFormatError(f"billing CSV line {line}, Total row: {exc}") from exc


def parse_project_csv(text: str) -> Bill:
    """The line items of a project billing CSV (the Total row checked for shape, not summed in)."""
    reader = csv.reader(text.lstrip("\ufeff").splitlines(keepends=True), strict=True)
    try:
        rows = [(reader.line_num, cells) for cells in reader]
    except csv.Error as exc:
        raise BillingFormatError(f"billing CSV line {reader.line_num}: {exc}") from exc
    rows = [(line, cells) for line, cells in rows if any(cell.strip() for cell in cells)]
    if not rows:
        raise BillingFormatError(f"billing CSV is empty: expected the header {','.join(HEADER[:4])},...")
    header = [cell.strip() for cell in rows[0][1]]
    missing = [name for name in HEADER if name not in header]
    if missing:
        raise BillingFormatError(f"billing CSV line {rows[0][0]} (the header): no column "
                                 f"{', '.join(missing)}")
    where = {name: header.index(name) for name in ("Type", "ID", "Month", "Project ID", "Charge")}
    items: list[LineItem] = []
    symbols: set[str] = set()
    stated: Decimal | None = None
    for number, cells in rows[1:]:
        kind = cells[where["Type"]].strip() if len(cells) > where["Type"] else ""
        if not kind and _is_total(cells):
            stated = _total_amount(cells, number)
            continue
        if len(cells) != len(header):
            raise BillingFormatError(f"billing CSV line {number}: {len(cells)} cells, the header has "
                                     f"{len(header)}")
        item, symbol = _line_item(number, cells, where)
        items.append(item)
        symbols.add(symbol)
    named = symbols - {""}  # a bare "0.00" goes with any currency
    if len(named) > 1:
        raise BillingFormatError(f"billing CSV: charges in several currencies ({', '.join(sorted(named))})")
    return Bill(tuple(items), next(iter(named), ""), stated)


def _line_item(number: int, cells: list[str], where: Mapping[str, int]) -> tuple[LineItem, str]:
    def cell(name: str) -> str:
        return cells[where[name]].strip()

    for name in ("Type", "ID"):
        if not cell(name):
            raise BillingFormatError(f"billing CSV line {number}, column {name}: empty")
    if not _MONTH.fullmatch(cell("Month")):
        raise BillingFormatError(f"billing CSV line {number}, column Month: {cell('Month')!r} is not YYYY-MM")
    try:
        symbol, charge = parse_charge(cell("Charge"))
    except ValueError as exc:
        raise BillingFormatError(f"billing CSV line {number}, column Charge: {exc}") from exc
    item = LineItem(number, cell("ID"), cell("Type"), cell("Month"), cell("Project ID"), charge)
    return item, symbol


def charges_by_job(bill: Bill, wanted: Iterable[str] | None = None) -> list[JobCharge]:
    """Per (job id, month) the sum of its line items and of its Compute ones; only `wanted` ids if given."""
    keep = None if wanted is None else set(wanted)
    sums: dict[tuple[str, str], list[Decimal]] = {}
    projects: dict[tuple[str, str], str] = {}
    for item in bill.items:
        if keep is not None and item.job_id not in keep:
            continue
        key = (item.job_id, item.month)
        total = sums.setdefault(key, [Decimal(0), Decimal(0)])
        total[0] += item.charge
        if item.kind == COMPUTE:
            total[1] += item.charge
        projects.setdefault(key, item.project)
    return [JobCharge(job, month, projects[(job, month)], charge, compute, bill.symbol)
            for (job, month), (charge, compute) in sorted(sums.items())]


def total_by_job(charges: Iterable[JobCharge]) -> dict[str, ActualCost]:
    """Each job's charges summed over its months."""
    jobs: dict[str, ActualCost] = {}
    for item in charges:
        was = jobs.get(item.remote_job_id)
        if was is None:
            jobs[item.remote_job_id] = ActualCost(item.charge, item.compute, item.symbol, (item.month,))
        else:
            jobs[item.remote_job_id] = ActualCost(was.charge + item.charge, was.compute + item.compute,
                                                  was.symbol, tuple(sorted({*was.months, item.month})))
    return jobs


def month_of(at: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(at))


def previous_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def projects_to_fetch(jobs: Iterable[JobRecord], now: float) -> list[str]:
    """The Rescale projects of the runs that ended this month or the last (Rescale's bill lags the run),
    or are still running: whose billing CSV a reconciliation reads."""
    months = {month_of(now), previous_month(month_of(now))}
    found = {job.plan.project for job in jobs
             if job.plan is not None and job.plan.project and job.remote.started_at is not None
             and month_of(job.remote.finished_at or now) in months}
    return sorted(p for p in found if p)


def next_day(now: float) -> float:
    """Midnight UTC after `now`: when a reconciliation refused for lack of billing access tries again."""
    return (now // 86400 + 1) * 86400
