"""Emulator files: streamed upload with md5, download, Range 206/416, 411 for chunked, metadata, delete."""

from __future__ import annotations

import hashlib
import os

import requests


def test_multi_megabyte_upload_download_md5_roundtrip(api, auth, upload):
    data = os.urandom(5 * 1024 * 1024 + 123)
    meta = upload("big.bin", data)
    assert meta["md5"] == hashlib.md5(data).hexdigest() and meta["decryptedSize"] == len(data)
    response = requests.get(meta["downloadUrl"], headers=auth, timeout=30)
    assert response.status_code == 200 and int(response.headers["Content-Length"]) == len(data)
    assert hashlib.md5(response.content).hexdigest() == meta["md5"]


def test_range_request_returns_206_with_content_range(auth, upload):
    meta = upload("r.txt", b"0123456789")
    response = requests.get(meta["downloadUrl"], headers={**auth, "Range": "bytes=2-5"}, timeout=10)
    assert response.status_code == 206 and response.content == b"2345"
    assert response.headers["Content-Range"] == "bytes 2-5/10"


def test_unsatisfiable_range_is_416(auth, upload):
    meta = upload("r.txt", b"0123456789")
    response = requests.get(meta["downloadUrl"], headers={**auth, "Range": "bytes=50-60"}, timeout=10)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */10"


def test_chunked_upload_is_rejected_with_411(api, auth):
    body = iter([b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nx\r\n--b--\r\n'])
    headers = {**auth, "Content-Type": "multipart/form-data; boundary=b"}
    response = requests.post(f"{api}files/contents/", headers=headers, data=body, timeout=10)
    assert response.status_code == 411


def test_upload_without_file_field_is_400(api, auth):
    response = requests.post(f"{api}files/contents/", headers=auth, files={"other": ("x", b"x")}, timeout=10)
    assert response.status_code == 400 and "file" in response.json()


def test_metadata_get_and_delete(api, auth, upload):
    meta = upload("m.txt", b"hello")
    got = requests.get(f"{api}files/{meta['id']}/", headers=auth, timeout=10).json()
    assert got == meta and got["typeId"] == 1 and got["name"] == "m.txt"
    assert requests.delete(f"{api}files/{meta['id']}/", headers=auth, timeout=10).status_code == 204
    assert requests.get(f"{api}files/{meta['id']}/", headers=auth, timeout=10).status_code == 404
    assert requests.get(meta["downloadUrl"], headers=auth, timeout=10).status_code == 404


def test_upload_name_cannot_escape_data_dir(emulator, upload):
    meta = upload("../../evil.txt", b"x")
    assert meta["name"] == "evil.txt"
    assert not (emulator.store.files[meta["id"]].disk_path.parent.parent.parent / "evil.txt").exists()
