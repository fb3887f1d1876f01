"""The agent's readable copy of its catalogue for the charge sizer (burst_agent/cataloguecopy.py)."""

import json
import os
import stat

from burst_agent.cataloguecopy import catalogue_dir, published


def test_each_fetch_leaves_a_world_readable_copy_and_returns_the_items(tmp_path):
    old = os.umask(0o027)  # the agent's unit's UMask
    try:
        path = catalogue_dir(tmp_path) / "coretypes.json"
        fetch = published(lambda: [{"code": "nickel"}], path)
        assert fetch() == [{"code": "nickel"}]
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == [{"code": "nickel"}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert [p.name for p in path.parent.iterdir()] == ["coretypes.json"]  # no temporary left


def test_a_copy_that_cannot_be_written_never_fails_the_fetch(tmp_path):
    blocker = tmp_path / "catalogue"
    blocker.write_text("a file where the directory should be")
    assert published(lambda: [{"code": "onyx"}], blocker / "coretypes.json")() == [{"code": "onyx"}]
