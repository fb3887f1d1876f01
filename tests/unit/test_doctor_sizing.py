"""doctor's charge-sizing check (burst_agent/doctor_sizing.py) with a fake squeue and scontrol."""

import time

from burst_agent.config import config_from_mapping
from burst_agent.doctor_sizing import check_charge_sizing
from burst_agent.doctorkit import Completed, Context, Host


def submitted(seconds_ago: float) -> str:
    """squeue's %V (local time), taken when the test runs: not at import, minutes before."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - seconds_ago))


def ctx(tmp_path, squeue: str, marks: dict[str, str], size_charge: str = "true") -> Context:
    def run(argv, _timeout):
        if argv[0] == "squeue":
            return Completed(0, squeue)
        return Completed(0, f"JobId={argv[-1]} AdminComment={marks[argv[-1]]}")
    c = Context(None, Host(environ={}, run=run))
    c.config = config_from_mapping({"agent": {"spool_dir": str(tmp_path)}})
    c.lua_settings = {"SIZE_CHARGE": size_charge}
    (tmp_path / "catalogue").mkdir(parents=True)
    (tmp_path / "catalogue" / "coretypes.json").write_text("[]")
    return c


def test_a_job_held_for_sizing_for_minutes_warns_and_names_the_unit(tmp_path):
    old, new = submitted(300), submitted(0)
    listing = f"41|JobHeldUser|{old}\n42|JobHeldUser|{old}\n43|JobHeldUser|{new}\n44|Resources|{old}\n"
    marks = {"41": "burst-agent:sizing", "42": "burst-agent"}  # 42: sized, held by its owner
    result = check_charge_sizing(ctx(tmp_path, listing, marks))
    assert result.status == "warning" and "1 burst job(s) held for sizing for over 60 s (41)" in result.detail
    assert "burst-agent-size-charges" in result.fix


def test_sizing_off_or_nothing_late_is_ok_and_a_missing_copy_warns(tmp_path):
    assert check_charge_sizing(ctx(tmp_path / "a", "", {}, "false")).detail.startswith("off (SIZE_CHARGE")
    c = ctx(tmp_path / "b", f"43|JobHeldUser|{submitted(0)}\n", {})
    assert check_charge_sizing(c).status == "ok"
    (tmp_path / "b" / "catalogue" / "coretypes.json").unlink()
    assert check_charge_sizing(c).status == "warning"
