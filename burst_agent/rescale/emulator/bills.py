"""The billing API's bill (API document, "Billing"): the workspace billing summary and a project's line
items as CSV, computed from what each emulated job ran.

Emulator conventions (the document gives the shapes, not how Rescale prices): a job's Compute line is
its tier's price per core-hour (billingPriorityValue INSTANT: the coretype's `price`; ON_DEMAND, or
isLowPriority without one: `lowPriorityPrice`; RESERVED: the `2021-reserved` plan of billing.PLANS)
x coresPerSlot x slots x the hours of its run window (started to completed, or to now while it runs);
its Storage line prices its input and output bytes at STORAGE_PRICE per TB-hour of that window; its
Rescale Platform line is $0.00, as in the document's sample. Every line is billed in the month the run
started, charges are rounded to cents, the Total row has the document's sample's shape. A job not yet
started is not on the bill; a deleted job leaves it (the emulator forgets it).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from werkzeug.wrappers import Request, Response

from burst_agent.rescale.emulator.billing import PLANS
from burst_agent.rescale.emulator.context import Context
from burst_agent.rescale.emulator.http import ApiError, json_response
from burst_agent.rescale.emulator.store import OWNER, PROJECTS, Job

WORKSPACE_ID = "00-000000001"  # the emulator's one workspace
WORKSPACE_LABEL = "Emulator workspace"
HEADER = (
    "Workspace ID", "User", "Type", "ID", "Name", "Custom Fields", "Project ID", "Project Name", "Software",
    "Rescale On-Demand License", "License Settings", "Month", "Submit Date", "Start Date", "Stop Date",
    "Description", "Billing Priority", "Cores", "Unit Hours", "Unit Charge/Hour", "Charge", "SKU", "Job Type",
    "Walltime",
)
STORAGE_PRICE = Decimal("0.4842")  # per TB-hour, the document's sample's unit charge
RESERVED_FACTOR = next(factor for _os, plan, factor in PLANS if plan == "2021-reserved")
_CENT = Decimal("0.01")
_UNIT = Decimal("0.0001")
_HOURS = Decimal("0.000001")


def _when(iso: str | None) -> datetime | None:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) if iso else None


def _shown(at: datetime | None) -> str:
    return at.strftime("%b %d, %Y %H:%M:%S") if at else ""  # "Feb 13, 2024 23:28:37"


def price_per_core_hour(ctx: Context, job: Job) -> Decimal:
    """The job's tier's price (see the module docstring)."""
    coretype = ctx.catalogue.coretypes[job.analyses[0]["hardware"]["coreType"]]
    price = Decimal(str(coretype.get("price", 0)))
    low = coretype.get("lowPriorityPrice")
    economy = Decimal(str(low)) if low is not None else price
    by_priority = {"INSTANT": price, "ON_DEMAND": economy, "RESERVED": price * RESERVED_FACTOR}
    if job.billing_priority in by_priority:
        return by_priority[job.billing_priority]
    return economy if job.is_low_priority else price


def _money(value: Decimal, places: Decimal = _CENT) -> str:
    return f"${value.quantize(places, ROUND_HALF_UP)}"


def _charge(value: Decimal) -> Decimal:
    return value.quantize(_CENT, ROUND_HALF_UP)


def line_items(ctx: Context, job: Job, now: datetime) -> list[dict[str, Any]]:
    """The job's Compute, Storage and Rescale Platform lines (none before its run started)."""
    with ctx.store.lock:
        started, completed = _when(job.run_started), _when(job.run_completed)
        storage_bytes = ctx.store.job_storage_bytes(job)
    if started is None:
        return []
    hardware = job.analyses[0]["hardware"]
    cores = int(hardware["coresPerSlot"]) * int(hardware.get("slots", 1))
    hours = Decimal(max(0.0, ((completed or now) - started).total_seconds())) / 3600
    price = price_per_core_hour(ctx, job)
    terabytes = Decimal(storage_bytes) / Decimal(10**12)
    common = {"job": job, "month": started.strftime("%Y-%m"), "started": started, "completed": completed,
              "cores": cores}
    return [
        {**common, "type": "Compute", "description": f"{hardware['coreType']}: {cores}-core cluster",
         "unit_hours": cores * hours, "unit_charge": price, "charge": _charge(price * cores * hours)},
        {**common, "type": "Storage", "description": f"Job storage: {terabytes.normalize()} tb storage",
         "unit_hours": terabytes * hours, "unit_charge": STORAGE_PRICE,
         "charge": _charge(STORAGE_PRICE * terabytes * hours)},
        {**common, "type": "Rescale Platform", "description": "Rescale Platform", "unit_hours": hours,
         "unit_charge": Decimal(0), "charge": Decimal(0)},
    ]


def _row(item: dict[str, Any], project: dict[str, Any]) -> list[str]:
    job: Job = item["job"]
    hardware = job.analyses[0]["hardware"]
    values = {
        "Workspace ID": WORKSPACE_ID, "User": OWNER, "Type": item["type"], "ID": job.id, "Name": job.name,
        "Project ID": project["id"], "Project Name": project["name"], "Month": item["month"],
        "Submit Date": _shown(_when(job.created)), "Start Date": _shown(item["started"]),
        "Stop Date": _shown(item["completed"]), "Description": item["description"],
        "Billing Priority": job.billing_priority or "",
        "Cores": str(item["cores"]) if item["type"] == "Compute" else "",
        "Unit Hours": str(item["unit_hours"].quantize(_HOURS)),
        "Unit Charge/Hour": _money(item["unit_charge"], _UNIT), "Charge": _money(item["charge"]),
        "Walltime": str(hardware.get("walltime") or ""),
    }
    return [values.get(name, "") for name in HEADER]


def _project(project_id: str) -> dict[str, Any]:
    project = next((p for p in PROJECTS if p["id"] == project_id), None)
    if project is None:
        raise ApiError(404, "Not found.")
    return project


def _workspace(workspace: str) -> None:
    if workspace != WORKSPACE_ID:
        raise ApiError(404, "Not found.")


def project_csv(ctx: Context, request: Request, org: str, workspace: str, project_id: str) -> Response:
    """GET .../billing/projects/{projectId}/csv/: the project's line items, then the Total row."""
    _workspace(workspace)
    project, now = _project(project_id), datetime.now(UTC)
    items = [item for job in reversed(ctx.store.jobs_newest_first()) if job.project_id == project_id
             for item in line_items(ctx, job, now)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(_row(item, project) for item in items)
    total = sum((item["charge"] for item in items), Decimal(0))
    # As in the document's sample: the label under Stop Date, the figure under Unit Charge/Hour, 23 cells.
    writer.writerow([""] * 14 + ["Total"] + [""] * 4 + [_money(total)] + [""] * 3)
    return Response(out.getvalue(), mimetype="text/csv", content_type="text/csv; charset=utf-8")


def _period(request: Request) -> tuple[str, str]:
    errors, values = {}, {}
    for name in ("startYear", "startMonth", "endYear", "endMonth"):
        raw = request.args.get(name, "")
        if not raw.isdigit() or (name.endswith("Month") and not 1 <= int(raw) <= 12):
            errors[name] = ["A valid integer is required."]
        else:
            values[name] = int(raw)
    if errors:
        raise ApiError(400, errors)
    return (f"{values['startYear']:04d}-{values['startMonth']:02d}",
            f"{values['endYear']:04d}-{values['endMonth']:02d}")


def workspace_summary(ctx: Context, request: Request, org: str, workspace: str) -> Response:
    """GET .../workspaces/{workspace}/billing/?startYear&startMonth&endYear&endMonth: the period's charges
    of every job in the workspace, with or without a project."""
    _workspace(workspace)
    first, last = _period(request)
    now = datetime.now(UTC)
    items = [item for job in ctx.store.jobs_newest_first() for item in line_items(ctx, job, now)
             if first <= item["month"] <= last]
    by_type = {kind: sum((i["charge"] for i in items if i["type"] == kind), Decimal(0))
               for kind in ("Compute", "Storage", "Rescale Platform")}
    core_hours = sum((i["unit_hours"] for i in items if i["type"] == "Compute"), Decimal(0))
    query = request.query_string.decode()
    return json_response({
        "jobs": len({i["job"].id for i in items}), "hardwareCharge": float(by_type["Compute"]),
        "softwareCharge": 0, "storageCharge": float(by_type["Storage"]), "transferCharge": 0,
        "connectionsCharge": 0, "deposits": 0, "appliedCredit": 0, "appliedDeposit": 0,
        "totalCharge": float(sum(by_type.values(), Decimal(0))), "hardwareUsage": round(core_hours),
        "storageUsage": 0, "transferUsage": 0, "id": WORKSPACE_ID, "label": WORKSPACE_LABEL,
        "activeUsers": 1, "csvUrl": f"/organizations/{org}/workspaces/{workspace}/billing/csv/?{query}",
    })
