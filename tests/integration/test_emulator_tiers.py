"""Priority tiers over real HTTP: the emulator's catalogue and compute prices pick the coretype, the job
is stored with the tier's billingPriorityValue, and a value outside the document's options is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from burst_agent.config import config_from_mapping
from burst_agent.pipeline.context import Catalogue
from burst_agent.rescale.errors import ValidationError
from burst_agent.translate import parse_script, translate

SCRIPT = "#!/bin/bash\n#SBATCH -n 1\n#SBATCH --qos=cheap\necho hi\n"
TIERS = {"by_qos": {"cheap": "on-demand-economy", "prepaid": "on-demand-reserved"},
         "plan_prices": {"on-demand-reserved": "2021-reserved"}}


@pytest.fixture
def client(rescale_client):
    return rescale_client


def _translated(client, script):
    cfg = config_from_mapping({"translate": {"priority_tiers": TIERS}}).translate
    catalogue = Catalogue(fetch=client.list_coretypes, fetch_prices=client.compute_prices).get()
    return translate(parse_script(script), catalogue, cfg)


def test_a_job_created_in_a_tier_is_stored_with_its_billing_priority_value(client):
    result = _translated(client, SCRIPT)
    assert (result.coretype, result.price_per_core_hour) == ("emerald", Decimal("0.055"))  # not onyx
    job = client.get_job(client.create_job(result.body)["id"])
    assert job["billingPriorityValue"] == "ON_DEMAND"
    assert job["jobanalyses"][0]["hardware"]["coreType"] == "emerald"


def test_the_reserved_tier_is_priced_from_the_plan_the_site_names(client):
    result = _translated(client, SCRIPT.replace("qos=cheap", "qos=prepaid"))
    assert (result.coretype, result.price_per_core_hour) == ("onyx", Decimal("0.0420"))  # 0.6 x 0.07
    assert client.get_job(client.create_job(result.body)["id"])["billingPriorityValue"] == "RESERVED"


def test_a_billing_priority_outside_the_documents_options_is_refused(client):
    body = {**_translated(client, SCRIPT).body, "billingPriorityValue": "SPOT"}
    with pytest.raises(ValidationError, match="INSTANT, ON_DEMAND, RESERVED"):
        client.create_job(body)
