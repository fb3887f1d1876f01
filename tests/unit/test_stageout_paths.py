"""Stage-out path safety: safe_relpath, confined writes, output selection, free space."""

from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath

import pytest

from burst_agent.staging.confined import ConfinementError, write_output
from burst_agent.staging.outputs import InsufficientSpaceError, check_free_space, select_outputs
from burst_agent.staging.safepath import UnsafePathError, safe_relpath


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../x", "'..'"), ("/etc/x", "absolute"), ("a/../../b", "'..'"), ("", "empty"),
        ("./", "empty"), ("a\x00b", "NUL"), ("a\\..\\b", "backslash"), ("a\nb", "control"),
        (".burst/exit_code", "reserved"), ("x" * 256, "255"),
    ],
)
def test_safe_relpath_refuses(name: str, reason: str) -> None:
    with pytest.raises(UnsafePathError, match=reason) as info:
        safe_relpath(name)
    assert info.value.name == name


def test_safe_relpath_normalises_dot_and_empty_components() -> None:
    assert safe_relpath("./a//b/./c.txt") == PurePosixPath("a/b/c.txt")


def test_planted_symlink_dir_is_refused_and_nothing_lands_outside(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, root / "out")
    with pytest.raises(ConfinementError, match="'out' is a symlink"):
        write_output(root, PurePosixPath("out/f"), io.BytesIO(b"data"))
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in root.iterdir()) == ["out"]


def test_final_name_symlink_is_not_followed(tmp_path: Path) -> None:
    root, victim = tmp_path / "root", tmp_path / "victim"
    root.mkdir()
    victim.write_bytes(b"original")
    os.symlink(victim, root / "result.dat")
    with pytest.raises(ConfinementError, match="destination is a symlink"):
        write_output(root, PurePosixPath("result.dat"), io.BytesIO(b"evil"))
    assert victim.read_bytes() == b"original" and (root / "result.dat").is_symlink()
    assert [p.name for p in root.iterdir()] == ["result.dat"]  # no temp file left behind


def test_write_output_creates_dirs_and_replaces_regular_file(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    staged.write_bytes(b"new")
    (tmp_path / "root/a/b").mkdir(parents=True)
    (tmp_path / "root/a/b/f").write_bytes(b"old")
    final = write_output(tmp_path / "root", PurePosixPath("a/b/f"), staged)
    assert final.read_bytes() == b"new" and not staged.exists()
    write_output(tmp_path / "root", PurePosixPath("c/d/g"), io.BytesIO(b"streamed"))
    assert (tmp_path / "root/c/d/g").read_bytes() == b"streamed"


def test_insufficient_space_names_needed_and_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = os.statvfs_result((4096, 1, 5000, 1050, 1050, 100, 50, 50, 0, 255))  # frsize 1, bavail 1050
    monkeypatch.setattr(os, "statvfs", lambda _path: fake)
    with pytest.raises(InsufficientSpaceError, match=r"need 1100 bytes .*only 1050 available") as info:
        check_free_space(tmp_path, 1000, margin_bytes=100)
    assert (info.value.needed, info.value.free) == (1100, 1050)
    check_free_space(tmp_path, 100, margin_bytes=100)


def test_select_outputs_skips_unchanged_inputs_and_control_files_and_refuses_unsafe() -> None:
    remote = [
        {"id": "a1", "relativePath": "case.inp", "md5": "AAA", "decryptedSize": 3},
        {"id": "a2", "relativePath": "mesh.msh", "md5": "new", "decryptedSize": 5},
        {"id": "a3", "relativePath": ".burst/exit_code", "md5": "x"},
        {"id": "a4", "relativePath": "../evil", "md5": "y"},
        {"id": "../a5", "relativePath": "ok", "md5": "z"},
        {"id": "a6", "relativePath": "./results/out.csv", "md5": "q", "decryptedSize": 9},
    ]
    sel = select_outputs(remote, {"case.inp": "aaa", "mesh.msh": "old"})
    picked = [(i.file_id, str(i.rel), i.size) for i in sel.items]
    assert picked == [("a2", "mesh.msh", 5), ("a6", "results/out.csv", 9)]
    assert [(p.path, p.reason) for p in sel.skipped] == [
        ("case.inp", "skip: unchanged input"), (".burst/exit_code", "skip: agent control file")]
    assert [p.path for p in sel.refused] == ["../evil", "ok"]
