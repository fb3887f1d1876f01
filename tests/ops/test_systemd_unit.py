"""systemd/burst-agent.service: systemd-analyze accepts it without a warning, and it keeps its contract."""

from __future__ import annotations

import re
import shutil

import pytest
from opstools import REPO

UNIT = REPO / "systemd" / "burst-agent.service"
BINARY = "/opt/burst-agent/venv/bin/burst-agent"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture
def testable_unit(tmp_path):
    """A copy whose ExecStart names an executable that exists here (verify checks that it does)."""
    true = shutil.which("true")
    assert true, "no `true` executable"
    unit = tmp_path / "burst-agent.service"
    unit.write_text(UNIT.read_text().replace(f"ExecStart={BINARY} ", f"ExecStart={true} "))
    return unit


def test_systemd_analyze_verify_is_clean(run_tool, testable_unit):
    result = run_tool(["systemd-analyze", "verify", str(testable_unit)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys and unparsable values are only warnings (exit 0): none may name our unit.
    assert [line for line in output.splitlines() if "burst-agent.service" in line] == []


def test_verify_would_catch_a_bad_directive(run_tool, testable_unit):
    testable_unit.write_text(testable_unit.read_text().replace("WatchdogSec=60", "WatchdogSec=sixty"))
    result = run_tool(["systemd-analyze", "verify", str(testable_unit)])
    assert "sixty" in result.stdout + result.stderr


def test_hardening_exposure_is_low(run_tool, testable_unit):
    result = run_tool(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(testable_unit)])
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.5


def test_unit_contract():
    d = directives()
    expected = {
        "Type": ["notify"], "NotifyAccess": ["main"], "WatchdogSec": ["60"], "Restart": ["on-failure"],
        "ExecStart": [f"{BINARY} run --config /etc/burst-agent/config.yaml"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"], "User": ["burst-agent"], "Group": ["burst-agent"],
        "LoadCredential": ["rescale-token:/etc/burst-agent/token"], "CapabilityBoundingSet": [""],
        "ProtectSystem": ["strict"], "ProtectHome": ["read-only"], "NoNewPrivileges": ["yes"],
        "LimitNOFILE": ["65536"],
        "ReadWritePaths": ["/var/spool/burst-agent /var/lib/burst-agent"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"], "TimeoutStopSec": ["60"],
    }
    assert {key: d.get(key) for key in expected} == expected


SIZER = REPO / "systemd" / "burst-agent-size-charges.service"


def test_the_sizer_unit_verifies_clean_runs_as_slurmuser_and_never_sees_the_token(run_tool, tmp_path):
    text = SIZER.read_text()
    assert "User=slurm\n" in text and "SupplementaryGroups=burst-agent\n" in text
    assert "LoadCredential" not in text and "/etc/burst-agent/token" not in text
    assert f"ExecStart={BINARY} size-charges --config /etc/burst-agent/config.yaml\n" in text
    unit = tmp_path / SIZER.name
    unit.write_text(text.replace(f"ExecStart={BINARY} ", f"ExecStart={shutil.which('true')} "))
    result = run_tool(["systemd-analyze", "verify", str(unit)])
    assert result.returncode == 0 and SIZER.name not in result.stdout + result.stderr, result.stderr
