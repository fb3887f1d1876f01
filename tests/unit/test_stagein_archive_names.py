"""User files named like archives reach the remote workdir byte-identical: no name a server could unpack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fstree import make_tree

from burst_agent.staging.bundle import BUNDLE_NAME, build_bundle, placement_script, upload_name
from burst_agent.staging.inputs import InputSelectionError, plan_inputs

ARCHIVE_NAMES = ("data.tar.gz", "d.tgz", "d.tar", "d.zip", "d.gz", "d.bz2", "d.xz", "case/mesh.tar.bz2")
TARGETS = ("data.tar.gz", "d.zip", "case/mesh.tar.bz2", "small.tgz", "small.zip")


def _remote(tmp_path: Path, server_unpacked_bundle: bool = False) -> tuple[Path, dict[str, bytes]]:
    """A remote workdir as the server leaves it: every upload under its upload name; run the placement."""
    files = {"data.tar.gz": b"\x1f\x8b" + b"T" * 300, "d.zip": b"PK\x03\x04" + b"Z" * 300,
             "case/mesh.tar.bz2": b"BZh9" + b"M" * 300, "small.tgz": b"\x1f\x8bs", "small.zip": b"PKs"}
    plan = plan_inputs(make_tree(tmp_path / "w", files), "", large_threshold=100)
    remote = tmp_path / "remote"
    remote.mkdir(parents=True)
    if server_unpacked_bundle:  # as if a server had unpacked the bundle and removed it
        make_tree(remote, {str(m.rel): m.source.read_bytes() for m in plan.bundle_members})
    else:
        build_bundle(plan, remote / BUNDLE_NAME)
    for member in plan.large_files:
        (remote / upload_name(member)).write_bytes(member.source.read_bytes())
    subprocess.run(["sh", "-ec", placement_script(plan)], cwd=remote, check=True)
    return remote, files


@pytest.mark.parametrize("rel", ARCHIVE_NAMES)
def test_no_large_file_is_uploaded_under_a_name_with_a_suffix(rel: str, tmp_path: Path) -> None:
    plan = plan_inputs(make_tree(tmp_path / "w", {rel: b"x" * 200}), "", large_threshold=100)
    name = upload_name(plan.large_files[0])
    assert name.startswith(".burst-in-") and "." not in name[1:]
    assert "." not in BUNDLE_NAME.removesuffix(".bundle")  # the bundle's name is no archive's either


def test_placement_puts_each_file_under_its_own_name_whether_or_not_a_server_unpacked(tmp_path: Path) -> None:
    remote, files = _remote(tmp_path / "kept")
    assert {rel: (remote / rel).read_bytes() for rel in TARGETS} == files
    assert sorted(p.name for p in remote.iterdir()) == ["case", "d.zip", "data.tar.gz", "small.tgz",
                                                        "small.zip"]
    unpacked, files = _remote(tmp_path / "unpacked", server_unpacked_bundle=True)
    assert {rel: (unpacked / rel).read_bytes() for rel in TARGETS} == files


def test_a_large_input_that_did_not_arrive_stops_the_job_with_its_name(tmp_path: Path) -> None:
    plan = plan_inputs(make_tree(tmp_path / "w", {"data.tar.gz": b"T" * 200}), "", large_threshold=100)
    run = subprocess.run(["sh", "-ec", placement_script(plan)], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1
    assert "burst-agent: input data.tar.gz did not arrive" in run.stderr


@pytest.mark.parametrize("rel", [BUNDLE_NAME, ".burst-in-0123"])
def test_names_the_uploads_use_are_reserved(rel: str, tmp_path: Path) -> None:
    with pytest.raises(InputSelectionError, match="reserved for the agent's uploads"):
        plan_inputs(make_tree(tmp_path / "w", {rel: b"x"}), "")
