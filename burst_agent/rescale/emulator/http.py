"""HTTP helpers for the emulator views: JSON responses, API errors, DRF-style pagination."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000


class ApiError(Exception):
    """An error answered as JSON: `detail` (a message) or a field-error mapping as the body."""

    def __init__(self, status: int, body: str | dict[str, Any]) -> None:
        super().__init__(body if isinstance(body, str) else json.dumps(body))
        self.status = status
        self.body = {"detail": body} if isinstance(body, str) else body


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


def empty_response(status: int) -> Response:
    return Response(b"", status=status)


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> Response:
    return json_response(error.body, error.status, headers)


def json_body(request: Request) -> Any:
    """The request's JSON body; an empty body is an empty object (as DRF treats it)."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"JSON parse error - {exc}") from exc


def _page_size(request: Request) -> int:
    # DRF ignores an invalid page_size and clamps it to the maximum.
    try:
        size = int(request.args.get("page_size", DEFAULT_PAGE_SIZE))
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)


def _page_url(request: Request, page: int) -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
    if page > 1:
        args.append(("page", str(page)))
    query = urlencode(args)
    return request.base_url + (f"?{query}" if query else "")


def paginate(request: Request, items: Sequence[Any]) -> Response:
    """The envelope {count, next, previous, results}; next/previous are absolute URLs."""
    size = _page_size(request)
    last = max(1, -(-len(items) // size))
    raw_page = request.args.get("page", "1")
    page = int(raw_page) if raw_page.isdigit() else 0
    if raw_page == "last":
        page = last
    if not 1 <= page <= last:
        raise ApiError(404, "Invalid page.")
    return json_response(
        {
            "count": len(items),
            "next": _page_url(request, page + 1) if page < last else None,
            "previous": _page_url(request, page - 1) if page > 1 else None,
            "results": list(items[(page - 1) * size : page * size]),
        }
    )
