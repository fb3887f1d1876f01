"""Rescale's bill in the store, on both backends: a month billed again replaces its figures, a job's
actual cost sums its months, the workspace summary is kept per month."""

from decimal import Decimal

from burst_agent.billing import JobCharge
from burst_agent.stores import open_store


def charge(job: str, month: str, total: str, compute: str) -> JobCharge:
    return JobCharge(job, month, "P1", Decimal(total), Decimal(compute), "$")


def test_a_jobs_actual_cost_sums_its_months_and_a_month_billed_again_replaces_its_figures(state_location):
    with open_store(state_location) as store:
        store.record_charges([charge("A", "2024-03", "1.00", "0.90"), charge("A", "2024-04", "0.50", "0.50")])
        store.record_charges([charge("A", "2024-04", "0.75", "0.70"), charge("B", "2024-04", "0.10", "0.00")])
        costs = store.actual_costs()
    assert {job: (str(c.charge), str(c.compute), c.months) for job, c in costs.items()} == {
        "A": ("1.75", "1.60", ("2024-03", "2024-04")), "B": ("0.10", "0.00", ("2024-04",))}


def test_the_workspace_summary_is_kept_per_month(state_location):
    with open_store(state_location) as store:
        store.record_billing_summary("2024-04", {"totalCharge": 1.0})
        store.record_billing_summary("2024-04", {"totalCharge": 2.5, "jobs": 3})
        assert store.billing_summary("2024-04").summary == {"totalCharge": 2.5, "jobs": 3}
        assert store.billing_summary("2024-03") is None
