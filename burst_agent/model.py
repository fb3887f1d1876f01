"""Pure data types shared across the pure core and the I/O shells (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


class CatalogueError(ValueError):
    """A coretype entry from the API (or a --coretypes file) is malformed."""


def _decimal(value: Any, field: str, code: str) -> Decimal:
    # The API documents `price` as Decimal but ships it as a JSON number, other prices as strings.
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise CatalogueError(f"coretype {code!r}: {field} {value!r} is not a number") from exc


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

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Coretype:
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
        return cls(
            code=code,
            name=str(item.get("name") or code),
            cores=tuple(sorted(set(cores))),
            memory_mb_per_core=memory,
            price_per_core_hour=_decimal(item.get("price", 0), "price", code),
            is_deprecated=bool(item.get("isDeprecated", False)),
            walltime_required=bool(item.get("walltimeRequired", False)),
        )
