"""Stage-in input selection: default walk, ignores, #BURST --input globs, caps and symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fstree import make_tree as _tree

from burst_agent.staging.inputs import InputPatternError, InputTooLargeError, plan_inputs


def _rels(plan) -> list[str]:
    return sorted(str(f.rel) for f in [*plan.bundle_members, *plan.large_files])


def test_default_selection_excludes_scheduler_logs_script_ignores_and_git(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "job.sh": b"#!/bin/sh\n", "slurm-42.out": b"log", "slurm-7_3.out": b"log", "my.log": b"x",
        "mesh/a.msh": b"m", "scratch/tmp.dat": b"t", "notes.bak": b"b", ".git/HEAD": b"ref",
        ".burstignore": b"scratch/\n*.bak\n", "data/.hidden": b"h", ".burst-staging/f1.partial": b"p",
    })
    plan = plan_inputs(tmp_path, "#!/bin/sh\necho\n", exclude=[tmp_path / "job.sh", Path("my.log")])
    assert _rels(plan) == ["data/.hidden", "mesh/a.msh"]


def test_burstignore_negation_cannot_reinclude_git(tmp_path: Path) -> None:
    _tree(tmp_path, {".git/config": b"c", "keep.txt": b"k", ".burstignore": b"!.git/\n"})
    assert _rels(plan_inputs(tmp_path, "")) == ["keep.txt"]


def test_input_directives_select_only_named_files(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "mesh/a.msh": b"a", "mesh/sub/b.msh": b"b", "mesh/readme": b"r", "case.inp": b"c",
        "other.txt": b"o", "lib/x.so": b"x", "lib/deep/y.so": b"y",
    })
    script = "#!/bin/sh\n#SBATCH -n 4\n#BURST --input mesh/**/*.msh\n#BURST --input=case.inp 'lib'\nrun\n"
    plan = plan_inputs(tmp_path, script)
    assert _rels(plan) == ["case.inp", "lib/deep/y.so", "lib/x.so", "mesh/a.msh", "mesh/sub/b.msh"]


def test_input_pattern_matching_nothing_names_its_line(tmp_path: Path) -> None:
    _tree(tmp_path, {"case.inp": b"c"})
    script = "#!/bin/sh\n#BURST --input case.inp\n#BURST --input missing/*.dat\n"
    with pytest.raises(InputPatternError, match=r"line 3: .*missing/\*\.dat.* matches nothing") as info:
        plan_inputs(tmp_path, script)
    assert info.value.lineno == 3


@pytest.mark.parametrize("pattern", ["../secret", "/etc/passwd", "a/../../b"])
def test_input_pattern_escaping_workdir_is_refused(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(InputPatternError, match="line 1"):
        plan_inputs(tmp_path, f"#BURST --input {pattern}\n")


def test_total_size_cap_error_names_cap_and_actual_size(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.bin": b"x" * 600, "b.bin": b"y" * 500})
    with pytest.raises(InputTooLargeError, match=r"1100 bytes.*max_total_bytes=1000 bytes") as info:
        plan_inputs(tmp_path, "", max_total_bytes=1000)
    assert (info.value.cap, info.value.actual) == (1000, 1100)


def test_file_count_cap(tmp_path: Path) -> None:
    _tree(tmp_path, {f"f{i}": b"." for i in range(4)})
    with pytest.raises(InputTooLargeError, match=r"4 files, over the cap max_files=3 files"):
        plan_inputs(tmp_path, "", max_files=3)


def test_symlinks_outside_dangling_and_to_dirs_are_skipped_with_warnings(tmp_path: Path) -> None:
    outside = _tree(tmp_path / "outside", {"secret": b"s", "dir/f": b"f"})
    work = _tree(tmp_path / "work", {"real.dat": b"r", "sub/g": b"g"})
    os.symlink(outside / "secret", work / "out_link")
    os.symlink(outside / "dir", work / "out_dir")
    os.symlink(work / "nope", work / "dangling")
    os.symlink("sub", work / "in_dir")
    os.symlink("real.dat", work / "in_link")
    plan = plan_inputs(work, "")
    assert _rels(plan) == ["in_link", "real.dat", "sub/g"]
    assert next(f for f in plan.bundle_members if str(f.rel) == "in_link").source == work / "real.dat"
    text = "\n".join(plan.warnings)
    assert "out_link: symlink points outside" in text and "dangling: dangling symlink" in text
    assert "out_dir: symlink points outside" in text and "in_dir: symlink to a directory" in text


def test_input_glob_does_not_descend_a_symlinked_dir(tmp_path: Path) -> None:
    outside = _tree(tmp_path / "outside", {"x.dat": b"x"})
    work = _tree(tmp_path / "work", {"a.dat": b"a"})
    os.symlink(outside, work / "link")
    plan = plan_inputs(work, "#BURST --input **/*.dat\n")
    assert _rels(plan) == ["a.dat"]


def test_large_threshold_splits_plan(tmp_path: Path) -> None:
    _tree(tmp_path, {"small": b"s" * 10, "big": b"b" * 100})
    plan = plan_inputs(tmp_path, "", large_threshold=100)
    assert [str(f.rel) for f in plan.large_files] == ["big"]
    assert [str(f.rel) for f in plan.bundle_members] == ["small"]
