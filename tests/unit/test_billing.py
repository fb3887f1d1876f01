"""Rescale's project billing CSV (the API document's header and sample): line items summed per job and
month, the Total row left out, malformed rows named, currencies read."""

from decimal import Decimal

import pytest
from jobkit import S, make_job, plan
from stagekit import open_store

from burst_agent.billing import (
    HEADER,
    BillingFormatError,
    charges_by_job,
    parse_charge,
    parse_project_csv,
    projects_to_fetch,
)
from burst_agent.record import Remote

# The document's sample, as it stands (a storage device's lines), and one job's lines of our own.
SAMPLE = """\
Workspace ID,User,Type,ID,Name,Custom Fields,Project ID,Project Name,Software,Rescale On-Demand License,\
License Settings,Month,Submit Date,Start Date,Stop Date,Description,Billing Priority,Cores,Unit Hours,\
Unit Charge/Hour,Charge,SKU,Job Type,Walltime
{workspace},{user},Compute,mjXbT,New Storage Device,,duOxgb,ProjectZ,,,,2024-02,"Feb 13, 2024 23:28:37",\
"Feb 13, 2024 23:35:23",,High Performance Storage: 4-core storage cluster,,,29.37778,$0.0968,$2.85,\
HW-04US01-EM1-I21-L00,,
{workspace},{user},Storage,mjXbT,New Storage Device,,duOxgb,ProjectZ,,,,2024-02,"Feb 13, 2024 23:28:37",\
"Feb 13, 2024 23:35:23",,High Performance Storage: 0.009765625 tb storage,,,0.071723090,$0.4842,$0.04,\
ST-04US01-BLK-00,,
{workspace},{user},Rescale Platform,mjXbT,New Storage Device,,duOxgb,ProjectZ,,,,2024-02,\
"Feb 13, 2024 23:28:37","Feb 13, 2024 23:35:23",,Rescale Platform,,,29.377777778,$0.0000,$0.00,,,
,,,,,,,,,,,,,,Total,,,,,$2.89,,,
"""


def row(job: str, kind: str, charge: str, month: str = "2024-03") -> str:
    cells = dict.fromkeys(HEADER, "") | {"Type": kind, "ID": job, "Month": month, "Charge": charge,
                                         "Project ID": "duOxgb"}
    return ",".join(f'"{cells[name]}"' for name in HEADER) + "\n"


def bill(*rows: str, total: str | None = None) -> str:
    """A billing CSV of these rows, with a Total row shaped as the document's if `total` is given."""
    end = f",,,,,,,,,,,,,,Total,,,,,{total},,,\n" if total else ""
    return ",".join(HEADER) + "\n" + "".join(rows) + end


def test_the_documents_sample_is_one_charge_the_total_row_aside():
    parsed = parse_project_csv(SAMPLE)
    assert [(i.kind, str(i.charge)) for i in parsed.items] == [("Compute", "2.85"), ("Storage", "0.04"),
                                                               ("Rescale Platform", "0.00")]
    assert (parsed.symbol, parsed.stated_total, parsed.total) == ("$", Decimal("2.89"), Decimal("2.89"))
    [charge] = charges_by_job(parsed)
    assert (charge.remote_job_id, charge.month, charge.project) == ("mjXbT", "2024-02", "duOxgb")
    assert (charge.charge, charge.compute) == (Decimal("2.89"), Decimal("2.85"))


def test_only_the_wanted_jobs_are_summed_per_month():
    text = SAMPLE + row("AbCd", "Compute", "$1.50") + row("AbCd", "Storage", "$0.25") + row(
        "AbCd", "Compute", "$0.10", month="2024-04")
    charges = charges_by_job(parse_project_csv(text), {"AbCd"})
    assert [(c.month, c.charge, c.compute) for c in charges] == [
        ("2024-03", Decimal("1.75"), Decimal("1.50")), ("2024-04", Decimal("0.10"), Decimal("0.10"))]


@pytest.mark.parametrize(("bad", "message"), [
    (row("AbCd", "Compute", "$1.5x"), r"line 6, column Charge: '\$1.5x' is not an amount"),
    (row("AbCd", "Compute", "$1.50", month="March"), "line 6, column Month: 'March' is not YYYY-MM"),
    (row("", "Compute", "$1.50"), "line 6, column ID: empty"),
    (row("AbCd", "Compute", "$1.50").replace(",", ",,", 1), "line 6: 25 cells, the header has 24"),
])
def test_a_malformed_row_is_named_by_line_and_column(bad, message):
    with pytest.raises(BillingFormatError, match=message):
        parse_project_csv(SAMPLE + bad)


def test_a_header_without_a_documented_column_names_it():
    with pytest.raises(BillingFormatError, match=r"line 1 \(the header\): no column Charge$"):
        parse_project_csv(SAMPLE.replace("Unit Charge/Hour,Charge,", "Unit Charge/Hour,Amount,", 1))


@pytest.mark.parametrize(("text", "read"), [
    ("$2.85", ("$", "2.85")), ("$1,234.50", ("$", "1234.50")), ("-$1.00", ("$", "-1.00")),
    ("($0.40)", ("$", "-0.40")), ("€3", ("€", "3")), ("0.00", ("", "0.00")),
])
def test_charges_are_read_with_their_currency_symbol(text, read):
    assert parse_charge(text) == (read[0], Decimal(read[1]))


@pytest.mark.parametrize("text", ["$", "2.8.5", "$(1.00", "1,23.00", "--$1"])
def test_what_is_not_an_amount_is_refused(text):
    with pytest.raises(ValueError, match="is not an amount"):
        parse_charge(text)


def test_a_bill_in_two_currencies_is_refused():
    with pytest.raises(BillingFormatError, match=r"several currencies \(\$, €\)"):
        parse_project_csv(SAMPLE + row("AbCd", "Compute", "€1.50"))


APR_10 = 1_712_707_200.0  # 2024-04-10T00:00:00Z


def test_the_projects_fetched_are_those_of_runs_of_this_month_and_the_last_or_still_running(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        for entry, project, start, end in [("a", "P1", APR_10 - 86400 * 20, APR_10 - 86400 * 19),  # March
                                           ("b", "P2", APR_10 - 86400 * 60, APR_10 - 86400 * 59),  # February
                                           ("c", "P3", APR_10 - 3600, None),  # still running
                                           ("d", None, APR_10 - 7200, APR_10)]:
            job = make_job(store, entry, S.RUNNING, job_plan=plan(project=project))
            store.record_remote(job.id, Remote(status="Executing", started_at=start, finished_at=end))
        assert projects_to_fetch(store.jobs(), APR_10) == ["P1", "P3"]
