"""Rescale's priority tiers: the job body's billingPriorityValue and the price each is billed at (pure)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from burst_agent.model import PLAN_PREFIX, Coretype
from burst_agent.request import ParsedScript, TranslateError


@dataclass(frozen=True)
class Tier:
    """One tier: what the job body sends, the coretype list's price for it, the flag that may forbid it."""

    name: str
    billing_priority: str  # the document's billingPriorityValue option
    price_field: str | None  # a GET /coretypes/ price field; None: the list prices it nowhere
    permit_field: str  # a coretype object's flag; false: the coretype does not run this tier


# The document: INSTANT is On Demand Priority, ON_DEMAND On Demand Economy, RESERVED On Demand Reserved;
# `price` is the on-demand price and `lowPriorityPrice` the low-priority one, and a hardware filter's
# allowPriority / allowLowPriority allow "On Demand Priority" / "On Demand Economy pricing".
TIERS: dict[str, Tier] = {t.name: t for t in (
    Tier("on-demand-priority", "INSTANT", "price", "permitPriorityCompute"),
    Tier("on-demand-economy", "ON_DEMAND", "lowPriorityPrice", "permitLowPriorityCompute"),
    Tier("on-demand-reserved", "RESERVED", None, "permitReservedCompute"),
)}
_LINE = re.compile(r"^\s*#BURST\s+--priority(?:=|\s+|$)(.*)$")


class TierPolicy(Protocol):
    """The site's choice of tier (config.PriorityTiersConfig, which imports this module)."""

    @property
    def default(self) -> str: ...
    @property
    def by_qos(self) -> Mapping[str, str]: ...
    @property
    def user_choices(self) -> tuple[str, ...]: ...


def price_source(tier: str, plan_prices: Mapping[str, str]) -> str | None:
    """Where `tier`'s price comes from: a computeprices plan the site names, else the coretype list."""
    plan = plan_prices.get(tier)
    return PLAN_PREFIX + plan if plan else TIERS[tier].price_field


def tier_price(coretype: Coretype, tier: str, plan_prices: Mapping[str, str]) -> Decimal | None:
    """The coretype's price per core-hour in `tier`; None when it has none or does not permit the tier."""
    source = price_source(tier, plan_prices)
    if source is None or TIERS[tier].permit_field in coretype.not_permitted:
        return None
    return coretype.price(source)


def _script_choice(text: str) -> tuple[int, str, str] | None:
    """The last `#BURST --priority TIER` line anywhere in the script: (line number, text, tier)."""
    found = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.match(line)
        if match is None:
            continue
        try:
            words = shlex.split(match.group(1), comments=True)
        except ValueError as exc:
            raise TranslateError(f"cannot split the line: {exc}", line=number,
                                 directive=line.strip()) from exc
        if len(words) != 1:
            raise TranslateError(f"give exactly one tier, one of {', '.join(TIERS)}", line=number,
                                 directive=line.strip())
        found = (number, line.strip(), words[0])
    return found


def choose_tier(parsed: ParsedScript, cfg: TierPolicy) -> str:
    """The script's `#BURST --priority` line (a tier the site lets jobs choose), else the QOS's tier,
    else the default."""
    choice = _script_choice(parsed.text)
    if choice is not None:
        number, line, tier = choice
        if tier not in cfg.user_choices:
            allowed = ", ".join(cfg.user_choices) or "none (translate.priority_tiers.user_choices is empty)"
            what = "unknown priority tier" if tier not in TIERS else "a job may not choose priority tier"
            raise TranslateError(f"{what} {tier!r}: this site allows {allowed}", line=number, directive=line)
        return tier
    qos = parsed.request.qos
    return cfg.by_qos.get(qos, cfg.default) if qos else cfg.default
