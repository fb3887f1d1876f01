"""Stage-in bundling, hashing and large-file caching through fake upload/cache callables."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest
from fstree import make_tree as _tree

from burst_agent.rescale.errors import IntegrityError
from burst_agent.staging.bundle import (
    BUNDLE_NAME,
    InputChangedError,
    build_bundle,
    hash_file,
    placement_script,
    stage_in,
    upload_name,
)
from burst_agent.staging.inputs import plan_inputs


class FakeRemote:
    """Upload and cache callables recording what was sent."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, bytes]] = []
        self.cache: dict[str, str] = {}

    def upload(self, reader, name: str) -> dict:
        data = b"".join(iter(lambda: reader.read(7), b""))
        self.uploads.append((name, data))
        md5 = hashlib.md5(data).hexdigest()
        return {"id": f"id{len(self.uploads)}", "md5": md5, "decryptedSize": len(data)}

    def cache_put(self, key: str, file_id: str, size: int) -> None:
        self.cache[key] = file_id


def test_bundle_holds_relative_paths_in_sorted_order_without_links(tmp_path: Path) -> None:
    work = _tree(tmp_path / "w", {"b.txt": b"B", "a/z.dat": b"Z", "a/y.sh": b"#!"})
    os.chmod(work / "a/y.sh", 0o750)
    os.symlink("b.txt", work / "link")
    dest = build_bundle(plan_inputs(work, ""), tmp_path / "bundle.tar.gz")
    with tarfile.open(dest, "r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["a/y.sh", "a/z.dat", "b.txt", "link"]
        assert all(m.isreg() for m in members)
        assert tar.extractfile("link").read() == b"B"
        assert members[0].mode == 0o755 and members[1].mode == 0o644


def test_bundle_is_deterministic(tmp_path: Path) -> None:
    work = _tree(tmp_path / "w", {"x": b"1", "d/y": b"2"})
    plan = plan_inputs(work, "")
    first = build_bundle(plan, tmp_path / "one.tar.gz").read_bytes()
    assert build_bundle(plan, tmp_path / "two.tar.gz").read_bytes() == first


def test_hash_file_is_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello" * 1000)
    assert hash_file(path) == hashlib.sha256(b"hello" * 1000).hexdigest()


def test_large_file_uploaded_once_then_served_from_cache(tmp_path: Path) -> None:
    work = _tree(tmp_path / "w", {"small.inp": b"s", "mesh.msh": b"M" * 200})
    plan = plan_inputs(work, "", large_threshold=100)
    remote = FakeRemote()
    kwargs = {"upload": remote.upload, "cache_get": remote.cache.get, "cache_put": remote.cache_put}
    first = stage_in(plan, tmpdir=tmp_path, owner_uid=1, **kwargs)
    second = stage_in(plan, tmpdir=tmp_path, owner_uid=1, **kwargs)
    large = upload_name(plan.large_files[0])
    assert [name for name, _ in remote.uploads] == [BUNDLE_NAME, large, BUNDLE_NAME]
    assert first.file_ids[1] == second.file_ids[1] == "id2"
    assert second.input_md5["mesh.msh"] == hashlib.md5(b"M" * 200).hexdigest()
    assert second.input_md5["small.inp"] == hashlib.md5(b"s").hexdigest()
    assert list(tmp_path.glob("burst-inputs-*")) == []  # temp bundle removed


def test_nested_large_file_gets_unique_upload_name_and_placement(tmp_path: Path) -> None:
    work = _tree(tmp_path / "w", {"case/mesh.msh": b"M" * 200})
    plan = plan_inputs(work, "", large_threshold=100)
    remote = FakeRemote()
    stage_in(plan, upload=remote.upload, cache_get=remote.cache.get, cache_put=remote.cache_put,
             tmpdir=tmp_path, owner_uid=1)
    name = remote.uploads[0][0]
    assert name.startswith(".burst-in-") and "." not in name[1:]  # no suffix a server could act on
    assert f"mkdir -p -- case && mv -f -- {name} case/mesh.msh ||" in placement_script(plan)


def _stage(plan, remote: FakeRemote, tmp_path: Path, owner_uid: int):
    return stage_in(plan, upload=remote.upload, cache_get=remote.cache.get, cache_put=remote.cache_put,
                    tmpdir=tmp_path, owner_uid=owner_uid)


def test_cached_large_file_is_never_reused_for_another_owner(tmp_path: Path) -> None:
    plan = plan_inputs(_tree(tmp_path / "w", {"mesh.msh": b"M" * 200}), "", large_threshold=100)
    remote = FakeRemote()
    first = _stage(plan, remote, tmp_path, owner_uid=1001)
    second = _stage(plan, remote, tmp_path, owner_uid=1002)
    assert [name for name, _ in remote.uploads] == [upload_name(plan.large_files[0])] * 2
    assert first.file_ids != second.file_ids


def test_bytes_cached_are_the_bytes_sent_even_if_the_file_changes_after_hashing(tmp_path: Path) -> None:
    work = _tree(tmp_path / "w", {"mesh.msh": b"M" * 200})
    plan = plan_inputs(work, "", large_threshold=100)
    remote = FakeRemote()

    def upload(reader, name: str) -> dict:
        (work / "mesh.msh").write_bytes(b"X" * 200)  # rewritten under the same inode, after the hash pass
        return remote.upload(reader, name)

    result = stage_in(plan, upload=upload, cache_get=remote.cache.get, cache_put=remote.cache_put,
                      tmpdir=tmp_path, owner_uid=1)
    sent = remote.uploads[0][1]
    assert result.input_md5["mesh.msh"] == hashlib.md5(sent).hexdigest()
    name = upload_name(plan.large_files[0])
    assert list(remote.cache) == [f"uid1:sha256:{hashlib.sha256(sent).hexdigest()}:{name}"]


def test_upload_refused_when_the_server_stored_other_bytes(tmp_path: Path) -> None:
    plan = plan_inputs(_tree(tmp_path / "w", {"mesh.msh": b"M" * 200}), "", large_threshold=100)
    remote = FakeRemote()
    lying = lambda reader, name: {**remote.upload(reader, name), "md5": "0" * 32}  # noqa: E731
    with pytest.raises(IntegrityError, match="the server stored md5"):
        stage_in(plan, upload=lying, cache_get=remote.cache.get, cache_put=remote.cache_put,
                 tmpdir=tmp_path, owner_uid=1)
    assert remote.cache == {}


def test_an_input_that_shrinks_during_the_upload_fails_it(tmp_path: Path) -> None:
    work = _tree(tmp_path / "w", {"mesh.msh": b"M" * 200})
    plan = plan_inputs(work, "", large_threshold=100)
    remote = FakeRemote()

    def upload(reader, name: str) -> dict:
        os.truncate(work / "mesh.msh", 10)
        return remote.upload(reader, name)

    with pytest.raises(InputChangedError, match="shrank"):
        stage_in(plan, upload=upload, cache_get=remote.cache.get, cache_put=remote.cache_put,
                 tmpdir=tmp_path, owner_uid=1)
