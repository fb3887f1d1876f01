"""Stage-in bundling, hashing and large-file caching through fake upload/cache callables."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

from fstree import make_tree as _tree

from burst_agent.staging.bundle import BUNDLE_NAME, build_bundle, hash_file, placement_script, stage_in
from burst_agent.staging.inputs import plan_inputs


class FakeRemote:
    """Upload and cache callables recording what was sent."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, bytes]] = []
        self.cache: dict[str, str] = {}

    def upload(self, path: Path, name: str) -> str:
        self.uploads.append((name, path.read_bytes()))
        return f"id{len(self.uploads)}"

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
    first = stage_in(plan, tmpdir=tmp_path, **kwargs)
    second = stage_in(plan, tmpdir=tmp_path, **kwargs)
    assert [name for name, _ in remote.uploads] == [BUNDLE_NAME, "mesh.msh", BUNDLE_NAME]
    assert first.file_ids[1] == second.file_ids[1] == "id2"
    assert second.input_md5["mesh.msh"] == hashlib.md5(b"M" * 200).hexdigest()
    assert second.input_md5["small.inp"] == hashlib.md5(b"s").hexdigest()
    assert list(tmp_path.glob("burst-inputs-*")) == []  # temp bundle removed


def test_nested_large_file_gets_unique_upload_name_and_placement(tmp_path: Path) -> None:
    work = _tree(tmp_path / "w", {"case/mesh.msh": b"M" * 200})
    plan = plan_inputs(work, "", large_threshold=100)
    remote = FakeRemote()
    stage_in(plan, upload=remote.upload, cache_get=remote.cache.get, cache_put=remote.cache_put,
             tmpdir=tmp_path)
    name = remote.uploads[0][0]
    assert name.startswith(".burst-in-") and name.endswith("-mesh.msh")
    assert placement_script(plan) == f"mkdir -p -- case && mv -f -- {name} case/mesh.msh"
