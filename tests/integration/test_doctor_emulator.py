"""doctor against the real emulator on 127.0.0.1: API and catalogue checks pass; a wrong token is rejected."""

from __future__ import annotations

import json
from pathlib import Path

import burst_agent
from burst_agent import cli, doctor
from burst_agent.metrics import Metrics, serve
from burst_agent.spool import Spool


def site(tmp_path: Path, url: str, token: str, metrics_port: int = 0) -> Path:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    Spool(tmp_path / "spool").ensure()
    config = {
        "api": {"base_url": url, "token_file": str(token_file)},
        "agent": {"spool_dir": str(tmp_path / "spool"), "state_db": str(tmp_path / "state.db")},
        "metrics": {"listen_port": metrics_port},
        "translate": {"gpu_coretypes": {"gpu-ampere": 0.125}},  # empty is a warning
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def results(path: Path) -> dict[str, doctor.Result]:
    host = doctor.Host(environ={}, which=lambda name: None)
    return dict(doctor.run_checks(doctor.Context(path, host)))


def test_doctor_passes_against_the_emulator(emulator, tmp_path: Path):
    rows = results(site(tmp_path, emulator.url, emulator.token))
    assert rows["api"] == doctor.ok(f"{emulator.url}: authenticated (GET /api/v2/coretypes/)")
    embedded = json.loads((Path(burst_agent.__file__).parent / "data" / "coretypes.json").read_text())
    deprecated = sum(bool(c.get("isDeprecated")) for c in embedded)
    assert rows["catalogue"] == doctor.ok(f"{len(embedded)} coretypes, {deprecated} deprecated")
    assert rows.pop("slurm cluster").status == "warning"  # no squeue here: the orphan check is blind
    assert {r.status for r in rows.values()} == {"ok"}


def test_a_wrong_token_is_rejected(emulator, tmp_path: Path):
    rows = results(site(tmp_path, emulator.url, "not-the-emulator-token"))
    assert rows["token"].status == "ok"
    assert rows["api"].status == "failed"
    assert "token rejected" in rows["api"].detail
    assert rows["catalogue"].detail.startswith("skipped")


def test_cli_table_never_shows_the_token(emulator, tmp_path: Path, capsys):
    cli.main(["doctor", "--config", str(site(tmp_path, emulator.url, emulator.token))])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line[:1].strip()}
    assert rows["api"] == rows["catalogue"] == rows["token"] == "ok"
    assert emulator.token not in out


def test_metrics_port_held_by_a_running_agent_is_ok(emulator, tmp_path: Path):
    server = serve(Metrics(), "127.0.0.1", 0)
    try:
        rows = results(site(tmp_path, emulator.url, emulator.token, metrics_port=server.port))
    finally:
        server.stop()
    assert rows["metrics"].status == "ok"
    assert f"127.0.0.1:{server.port} is served by a running burst-agent" in rows["metrics"].detail
