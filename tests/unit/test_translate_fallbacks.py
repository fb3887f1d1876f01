"""Capacity failover at translation: the plan keeps the next cheapest coretypes, each with its own body."""

import json
from dataclasses import replace
from pathlib import Path

from jobkit import plan

from burst_agent.config import CoretypeRule, TranslateConfig
from burst_agent.record import Hardware, decode_plan, encode_plan
from burst_agent.translate import load_catalogue, parse_script, translate

DATA = Path(__file__).parents[2] / "burst_agent" / "data" / "coretypes.json"
CATALOGUE = load_catalogue(json.loads(DATA.read_text()))
SCRIPT = "#!/bin/bash\n#SBATCH -N 1 -n 6 --mem=20G\nx\n"


def test_fallbacks_are_the_next_cheapest_fits_in_order_each_with_its_own_hardware():
    result = translate(parse_script(SCRIPT), CATALOGUE, TranslateConfig(), fallbacks=2)
    prices = [result.estimated_price_per_hour] + [hw.price_per_core_hour * hw.cores_per_slot * hw.slots
                                                  for hw in result.fallbacks]
    assert len(result.fallbacks) == 2 and prices == sorted(prices)
    codes = [result.coretype] + [hw.coretype for hw in result.fallbacks]
    assert len(set(codes)) == 3
    for hw in result.fallbacks:
        hardware = hw.body["jobanalyses"][0]["hardware"]
        assert (hardware["coreType"], hardware["coresPerSlot"], hardware["slots"]) == \
            (hw.coretype, hw.cores_per_slot, hw.slots)


def test_no_fallbacks_when_none_are_asked_for_or_a_rule_pins_the_coretype():
    assert translate(parse_script(SCRIPT), CATALOGUE, TranslateConfig()).fallbacks == ()
    pinned = TranslateConfig(rules=(CoretypeRule(coretype="nickel"),))
    assert translate(parse_script(SCRIPT), CATALOGUE, pinned, fallbacks=2).fallbacks == ()


def test_a_plan_with_fallbacks_survives_the_store_and_runs_its_attempts():
    spare = Hardware("onyx", 8, 2, plan().price_per_core_hour * 2, {"name": "x", "jobanalyses": []})
    decided = replace(plan(), fallbacks=(spare,))
    assert decode_plan(encode_plan(decided)) == decided
    second = decided.on_attempt(1)
    assert (second.coretype, second.cores, second.body, second.script) == ("onyx", 16, spare.body,
                                                                           decided.script)
    assert decided.on_attempt(0) is decided


def test_same_cores_keeps_only_fallbacks_with_the_first_choices_core_count():
    every = translate(parse_script(SCRIPT), CATALOGUE, TranslateConfig(), fallbacks=5)
    same = translate(parse_script(SCRIPT), CATALOGUE, TranslateConfig(), fallbacks=5, same_cores=True)
    cores = same.cores_per_slot * same.slots
    assert same.fallbacks and all(hw.cores_per_slot * hw.slots == cores for hw in same.fallbacks)
    assert [hw for hw in every.fallbacks if hw.cores_per_slot * hw.slots == cores][:5] == list(same.fallbacks)
    assert any(hw.cores_per_slot * hw.slots != cores for hw in every.fallbacks)
