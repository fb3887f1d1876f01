"""Priority tiers: the table, QOS and `#BURST --priority` choice, tier prices in cheapest-fit and the body."""

import json
from decimal import Decimal
from pathlib import Path

import pytest

from burst_agent.config import ConfigError, PriorityTiersConfig, TranslateConfig, config_from_mapping
from burst_agent.model import Coretype
from burst_agent.planning import EntryFacts, decide
from burst_agent.relay import complete_request
from burst_agent.request import TranslateError
from burst_agent.tiers import TIERS, choose_tier, tier_price
from burst_agent.translate import load_catalogue, parse_script, translate

DATA = Path(__file__).parents[2] / "burst_agent" / "data" / "coretypes.json"
ITEMS = json.loads(DATA.read_text())
CATALOGUE = load_catalogue(ITEMS)
ECONOMY = PriorityTiersConfig(default="on-demand-economy")
CHOOSERS = PriorityTiersConfig(by_qos={"cheap": "on-demand-economy"},
                               user_choices=("on-demand-economy", "on-demand-priority"))
ONE_CORE = "#!/bin/bash\n#SBATCH -n 1\n./run\n"


def price(os_name, amount, active):
    """One GET /billing/computeprices/ item: onyx on plan "r"."""
    return {"coreType": "onyx", "os": os_name, "planType": "r", "value": {"amount": amount},
            "isActive": active}


def tier_of(text, cfg=CHOOSERS, **overrides):
    return choose_tier(parse_script(text, request_overrides=overrides or None), cfg)


def test_the_tier_table_follows_the_documents_billing_priority_options():
    assert {name: t.billing_priority for name, t in TIERS.items()} == {
        "on-demand-priority": "INSTANT", "on-demand-economy": "ON_DEMAND", "on-demand-reserved": "RESERVED"}
    assert [t.price_field for t in TIERS.values()] == ["price", "lowPriorityPrice", None]


def test_a_coretype_is_priced_per_tier_from_its_entry_and_plans():
    item = {"code": "x", "cores": [1], "memory": 1, "price": 0.2, "lowPriorityPrice": "0.05"}
    coretype = Coretype.from_api(item, {"2021-reserved": Decimal("0.12")})
    assert tier_price(coretype, "on-demand-priority", {}) == Decimal("0.2")
    assert tier_price(coretype, "on-demand-economy", {}) == Decimal("0.05")
    assert tier_price(coretype, "on-demand-reserved", {}) is None  # the list prices it nowhere
    plans = {"on-demand-reserved": "2021-reserved"}
    assert tier_price(coretype, "on-demand-reserved", plans) == Decimal("0.12")


def test_no_low_priority_price_or_a_false_permit_flag_means_no_price_in_that_tier():
    bare = Coretype.from_api({"code": "x", "cores": [1], "memory": 1, "price": 0.2, "lowPriorityPrice": None})
    assert tier_price(bare, "on-demand-economy", {}) is None
    barred = Coretype.from_api({"code": "y", "cores": [1], "memory": 1, "price": 0.2,
                                "lowPriorityPrice": "0.1", "permitLowPriorityCompute": False})
    assert tier_price(barred, "on-demand-economy", {}) is None
    assert tier_price(barred, "on-demand-priority", {}) == Decimal("0.2")


def test_qos_maps_to_a_tier_and_anything_else_gets_the_default():
    assert tier_of("#!/bin/bash\n#SBATCH --qos=cheap\nx\n") == "on-demand-economy"
    assert tier_of("#!/bin/bash\n#SBATCH -q long\nx\n") == "on-demand-priority"
    assert tier_of("#!/bin/bash\nx\n", qos="cheap") == "on-demand-economy"  # the request file's QOS
    assert tier_of("#!/bin/bash\nx\n") == "on-demand-priority"


def test_a_burst_priority_line_anywhere_wins_over_the_qos():
    assert tier_of("#!/bin/bash\n#SBATCH -q cheap\nx\n#BURST --priority on-demand-priority\n") == (
        "on-demand-priority")
    assert tier_of("#!/bin/bash\n#BURST --priority=on-demand-economy\nx\n") == "on-demand-economy"


@pytest.mark.parametrize(("line", "cfg", "why"), [
    ("#BURST --priority fastest", CHOOSERS, "unknown priority tier 'fastest': this site allows "
                                            "on-demand-economy, on-demand-priority"),
    ("#BURST --priority on-demand-economy", PriorityTiersConfig(),
     "a job may not choose priority tier 'on-demand-economy': this site allows none"),
    ("#BURST --priority", CHOOSERS, "give exactly one tier"),
    ("#BURST --priority a b", CHOOSERS, "give exactly one tier"),
])
def test_a_priority_line_the_site_does_not_allow_refuses_the_job_naming_the_line(line, cfg, why):
    with pytest.raises(TranslateError) as refused:
        tier_of(f"#!/bin/bash\n#SBATCH -n 1\n{line}\nx\n", cfg)
    assert refused.value.message.startswith(why)
    assert (refused.value.line, refused.value.directive) == (3, line)


def test_cheapest_fit_flips_coretype_when_the_tier_changes_relative_prices():
    priority = translate(parse_script(ONE_CORE), CATALOGUE, TranslateConfig())
    economy = translate(parse_script(ONE_CORE), CATALOGUE, TranslateConfig(priority_tiers=ECONOMY))
    assert (priority.coretype, priority.price_per_core_hour) == ("onyx", Decimal("0.07"))
    # onyx's low-priority discount is small (0.065), emerald's large (0.055): emerald wins in economy.
    assert (economy.coretype, economy.price_per_core_hour, economy.tier) == (
        "emerald", Decimal("0.055"), "on-demand-economy")
    assert economy.estimated_price_per_hour == Decimal("0.055")


def test_the_body_carries_the_tiers_billing_priority_value():
    body = translate(parse_script(ONE_CORE), CATALOGUE, TranslateConfig(priority_tiers=ECONOMY)).body
    assert body["billingPriorityValue"] == "ON_DEMAND"
    reserved = PriorityTiersConfig(default="on-demand-reserved", plan_prices={"on-demand-reserved": "r"})
    prices = [price("linux", "0.03", True)]
    result = translate(parse_script(ONE_CORE), load_catalogue(ITEMS, prices),
                       TranslateConfig(priority_tiers=reserved))
    assert (result.body["billingPriorityValue"], result.coretype, result.price_per_core_hour) == (
        "RESERVED", "onyx", Decimal("0.03"))  # only onyx has a price on that plan


def test_plan_prices_take_only_active_linux_prices():
    prices = [price("windows", "0.01", True), price("linux", "0.02", False)]
    onyx = next(c for c in load_catalogue(ITEMS, prices) if c.code == "onyx")
    assert onyx.price("plan:r") is None and onyx.price("lowPriorityPrice") == Decimal("0.065")


def test_a_pinned_coretype_without_a_price_in_the_tier_is_refused():
    items = [{**i, "lowPriorityPrice": None} if i["code"] == "onyx" else i for i in ITEMS]
    cfg = TranslateConfig(coretype="onyx", priority_tiers=ECONOMY)
    with pytest.raises(TranslateError, match=r"'onyx' .* has no on-demand-economy price .*lowPriorityPrice"):
        translate(parse_script(ONE_CORE), load_catalogue(items), cfg)


def test_no_priced_coretype_fitting_says_how_many_had_no_price():
    items = [{**i, "lowPriorityPrice": ""} for i in ITEMS]
    # 7 candidates: the deprecated coretype and the GPU ones are none for a CPU job.
    with pytest.raises(TranslateError, match=r"no coretype fits .*; 7 coretype\(s\) have no on-demand"):
        translate(parse_script(ONE_CORE), load_catalogue(items), TranslateConfig(priority_tiers=ECONOMY))


def test_the_plan_is_priced_at_the_tier_so_every_estimate_follows():
    facts = EntryFacts(name="e", kind="file", owner_uid=1, owner_name="ana", agent_uid=1, request={},
                       script="#!/bin/bash\n#SBATCH -n 1\n#BURST --priority on-demand-economy\nx\n",
                       scheduler_job_id=None, has_manifest=False, workdir_is_dir=False,
                       results_dir="/r/e", spool_log="/l/e.log")
    cfg = config_from_mapping({"translate": {"priority_tiers": {"user_choices": ["on-demand-economy"]}}})
    plan, _ = decide(facts, CATALOGUE, cfg.translate, reconcile_key="k", projects={})
    assert (plan.coretype, plan.price_per_core_hour, plan.body["billingPriorityValue"]) == (
        "emerald", Decimal("0.055"), "ON_DEMAND")


@pytest.mark.parametrize(("section", "message"), [
    ({"default": "fast"}, "translate.priority_tiers.default: unknown tier 'fast'; expected one of"),
    ({"by_qos": {"hi": "nope"}}, "translate.priority_tiers.by_qos.hi: unknown tier 'nope'"),
    ({"user_choices": ["on-demand-reserved"]},
     "translate.priority_tiers.user_choices[0]: tier on-demand-reserved has no price in the coretype list"),
    ({"plan_prices": {"gold": "p"}}, "translate.priority_tiers.plan_prices.gold: unknown tier 'gold'"),
])
def test_bad_tier_settings_are_config_errors_naming_the_key(section, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_mapping({"translate": {"priority_tiers": section}})


def test_the_qos_reaches_the_request_from_slurm_sbatch_and_the_relay():
    assert parse_script("#!/bin/bash\n#SBATCH --qos=cheap\nx\n").request.qos == "cheap"
    assert parse_script("#!/bin/bash\n#SBATCH -q cheap\nx\n").warnings == ()
    environ = {"SLURM_JOB_ID": "5", "SLURM_JOB_QOS": "normal"}
    assert complete_request({"workdir": "/w"}, environ, Path("/"))["qos"] == "normal"  # the default QOS
    assert complete_request({"workdir": "/w", "qos": "cheap"}, environ, Path("/"))["qos"] == "cheap"


def test_translate_cli_prices_a_plan_priced_tier_from_a_prices_file(tmp_path, capsys):
    from burst_agent.cli import main

    (tmp_path / "job.sh").write_text(ONE_CORE)
    (tmp_path / "prices.json").write_text(json.dumps([price("linux", "0.03", True)]))
    (tmp_path / "site.yaml").write_text("translate: {priority_tiers: {default: on-demand-reserved, "
                                        "plan_prices: {on-demand-reserved: r}}}\n")
    argv = ["translate", str(tmp_path / "job.sh"), "--config", str(tmp_path / "site.yaml"),
            "--coretypes", str(DATA)]
    assert main([*argv, "--prices", str(tmp_path / "prices.json")]) == 0
    body = json.loads(capsys.readouterr().out)
    hardware = body["jobanalyses"][0]["hardware"]
    assert (body["billingPriorityValue"], hardware["coreType"]) == ("RESERVED", "onyx")
    assert main(argv) == 2  # no price list: no coretype has a reserved price
    assert "have no on-demand-reserved price (computeprices plan 'r')" in capsys.readouterr().err
