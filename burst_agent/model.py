"""Pure data types shared across the pure core and the I/O shells (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

PLAN_PREFIX = "plan:"  # a price source naming a GET /billing/computeprices/ planType


class CatalogueError(ValueError):
    """A coretype entry from the API (or a --coretypes file) is malformed."""


def price_value(value: Any, field: str, code: str) -> Decimal:
    # The API documents `price` as Decimal but ships it as a JSON number, other prices as strings.
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise CatalogueError(f"coretype {code!r}: {field} {value!r} is not a number") from exc
    if not number.is_finite():  # NaN would make every price comparison raise
        raise CatalogueError(f"coretype {code!r}: {field} {value!r} is not a number")
    return number


@dataclass(frozen=True)
class Coretype:
    """One entry of GET /api/v2/coretypes/: `memory` is MB per core, `price` per core-hour."""

    code: str
    name: str
    cores: tuple[int, ...]
    memory_mb_per_core: int
    price_per_core_hour: Decimal
    is_deprecated: bool = False
    walltime_required: bool = False
    # Prices besides `price`, by source: "lowPriorityPrice", "plan:<computeprices planType>".
    other_prices: tuple[tuple[str, Decimal], ...] = ()
    # The entry's permit* flags that are false (a coretype object may carry them; see tiers.py).
    not_permitted: frozenset[str] = frozenset()

    def price(self, source: str) -> Decimal | None:
        """The price per core-hour from one source (`price`, `lowPriorityPrice`, `plan:NAME`), if any."""
        return self.price_per_core_hour if source == "price" else dict(self.other_prices).get(source)

    @classmethod
    def from_api(cls, item: dict[str, Any], plan_prices: dict[str, Decimal] | None = None) -> Coretype:
        """One coretype object; `plan_prices` are its GET /billing/computeprices/ amounts by planType."""
        code = item.get("code")
        if not isinstance(code, str) or not code:
            raise CatalogueError(f"coretype entry without a code: {item!r:.200}")
        cores = item.get("cores")
        if not isinstance(cores, list) or not cores or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in cores
        ):
            raise CatalogueError(f"coretype {code!r}: cores must be a non-empty list of positive integers")
        memory = item.get("memory")
        if not isinstance(memory, int) or isinstance(memory, bool) or memory < 0:
            raise CatalogueError(f"coretype {code!r}: memory must be a non-negative integer (MB per core)")
        others = [(PLAN_PREFIX + plan, amount) for plan, amount in sorted((plan_prices or {}).items())]
        low = item.get("lowPriorityPrice")
        if low not in (None, ""):  # absent, null or "": the coretype has no low-priority price
            others.insert(0, ("lowPriorityPrice", price_value(low, "lowPriorityPrice", code)))
        return cls(
            code=code,
            name=str(item.get("name") or code),
            cores=tuple(sorted(set(cores))),
            memory_mb_per_core=memory,
            price_per_core_hour=price_value(item.get("price", 0), "price", code),
            is_deprecated=bool(item.get("isDeprecated", False)),
            walltime_required=bool(item.get("walltimeRequired", False)),
            other_prices=tuple(others),
            not_permitted=frozenset(k for k, v in item.items() if k.startswith("permit") and v is False),
        )
