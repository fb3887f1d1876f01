"""Views for /api/v2/files/: upload, list, metadata, delete, download, lines, tags."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from werkzeug.wrappers import Request, Response

from burst_agent.rescale.emulator.context import Context
from burst_agent.rescale.emulator.files import HashingFile, UploadRequest, download_response, safe_name
from burst_agent.rescale.emulator.http import ApiError, empty_response, json_body, json_response, paginate
from burst_agent.rescale.emulator.store import TYPE_INPUT, USER_DIR, FileRecord, normalize_tag


def upload(ctx: Context, request: Request) -> Response:
    """Multipart field `file`, with a Content-Length: chunked uploads get 411 as on Rescale."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower() or request.content_length is None:
        raise ApiError(
            411, "A Content-Length header is required; chunked transfer encoding is not supported."
        )
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, f'Unsupported media type "{request.mimetype}" in request.')
    upload_request = UploadRequest(request.environ)
    upload_request.upload_dir = ctx.uploads_dir
    try:
        storage = upload_request.files.get("file")
        if storage is None or not isinstance(storage.stream, HashingFile):
            raise ApiError(400, {"file": ["No file was submitted."]})
        stream = storage.stream
        stream.close()
        file_id = ctx.store.new_id()
        name = safe_name(storage.filename)
        final = ctx.uploads_dir / file_id
        os.replace(stream.path, final)
    finally:
        for leftover in request.environ.get("emulator.uploads", []):
            leftover.close()
            with contextlib.suppress(FileNotFoundError):
                leftover.path.unlink()
    record = FileRecord(
        id=file_id,
        name=name,
        disk_path=final,
        size=stream.size,
        md5=stream.md5.hexdigest(),
        type_id=TYPE_INPUT,
        relative_path=name,
        storage_path=f"{USER_DIR}/{name}-{file_id}",
    )
    ctx.store.add_file(record)
    return json_response(record.to_api(ctx.base_url(request)), 201)


def list_files(ctx: Context, request: Request) -> Response:
    search = request.args.get("search", "").lower()
    with ctx.store.lock:
        items = [
            f.to_api(ctx.base_url(request))
            for f in reversed(ctx.store.files.values())
            if not f.deleted and search in f.name.lower()
        ]
    return paginate(request, items)


def file_detail(ctx: Context, request: Request, file_id: str) -> Response:
    record = ctx.file(file_id)
    if request.method == "DELETE":
        with ctx.store.lock:
            record.deleted = True
        return empty_response(204)
    return json_response(record.to_api(ctx.base_url(request)))


def file_contents(ctx: Context, request: Request, file_id: str) -> Response:
    record = ctx.file(file_id)
    return download_response(request, record.disk_path, record.name, record.md5)


def file_lines(ctx: Context, request: Request, file_id: str) -> Response:
    record = ctx.file(file_id)
    with open(record.disk_path, "rb") as fh:
        text = fh.read(10 * 1024 * 1024).decode("utf-8", errors="replace")
    return json_response({"lines": text.splitlines(keepends=True)})


def tag_payload(request: Request) -> dict[str, str]:
    body: Any = json_body(request)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, {"name": ["This field is required."]})
    return {"name": name, "normalizedName": normalize_tag(name)}


def change_tags(ctx: Context, request: Request, tags: list[dict[str, str]]) -> Response:
    """GET lists, POST adds (idempotent by normalizedName), DELETE removes a tag."""
    if request.method == "GET":
        with ctx.store.lock:
            return json_response(list(tags))
    tag = tag_payload(request)
    with ctx.store.lock:
        present = [t for t in tags if t["normalizedName"] == tag["normalizedName"]]
        if request.method == "POST":
            if not present:
                tags.append(tag)
            return json_response(tag, 201)
        for t in present:
            tags.remove(t)
    return empty_response(204)


def file_tags(ctx: Context, request: Request, file_id: str) -> Response:
    return change_tags(ctx, request, ctx.file(file_id).tags)
