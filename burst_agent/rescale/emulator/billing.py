"""GET /api/v2/billing/computeprices/: price per core-hour for each coretype, OS and plan."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from werkzeug.wrappers import Request, Response

from burst_agent.rescale.emulator.context import Context
from burst_agent.rescale.emulator.http import paginate

# (os, plan, factor on the coretype's on-demand `price`). The catalogue carries one on-demand price;
# the "pro" plan markup and the "reserved" plan's discount are emulator conventions (Rescale's own
# ratios differ by coretype, and the document names no plan for reserved hardware): a site prices
# the reserved tier from a plan it names (translate.priority_tiers.plan_prices).
PLANS: tuple[tuple[str, str, Decimal], ...] = (
    ("linux", "2021-on-demand", Decimal(1)),
    ("linux", "2021-on-demand-pro", Decimal("1.25")),
    ("linux", "2021-reserved", Decimal("0.6")),
)
_FOUR_PLACES = Decimal("0.0001")


def price_items(coretypes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The doc's compute price objects, derived from the coretype catalogue (coretype order)."""
    items = []
    for coretype in coretypes:
        base = Decimal(str(coretype.get("price", 0)))
        for os_name, plan, factor in PLANS:
            items.append(
                {
                    "coreType": coretype["code"],
                    "os": os_name,
                    "planType": plan,
                    "planName": plan,
                    "value": {
                        "currency": "USD",
                        "amount": str((base * factor).quantize(_FOUR_PLACES, ROUND_HALF_UP)),
                        "symbol": "$",
                    },
                    "isActive": not coretype.get("isDeprecated", False),
                }
            )
    return items


def compute_prices(ctx: Context, request: Request) -> Response:
    return paginate(request, price_items(list(ctx.catalogue.coretypes.values())))
