"""`burst-agent translate` as an ordinary user: no token, GPU jobs with the shipped defaults."""

from pathlib import Path

from burst_agent.cli import main

GOLDEN = Path(__file__).parents[1] / "golden"


def _script(tmp_path: Path, directive: str) -> Path:
    path = tmp_path / "job.sh"
    path.write_text(f"#!/bin/bash\n#SBATCH {directive}\n./x\n")
    return path


def test_without_a_token_says_to_pass_coretypes_and_how_to_make_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("RESCALE_API_TOKEN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert main(["translate", str(_script(tmp_path, "-n 1"))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("burst-agent translate: cannot fetch the coretype catalogue: no API token")
    assert "pass --coretypes FILE" in err and "`burst-agent coretypes --json > FILE`" in err
    assert err.count("\n") == 1


def test_gpu_job_with_the_default_empty_gpu_map_names_translate_gpu_coretypes(tmp_path, capsys):
    script = _script(tmp_path, "--gres=gpu:2")
    assert main(["translate", str(script), "--coretypes", str(GOLDEN / "coretypes.json")]) == 2
    err = capsys.readouterr().err
    assert "2 GPU(s) per node; translate.gpu_coretypes is empty: the coretype list has no GPU count" in err
    assert "translate: {gpu_coretypes: {gpu-ampere: 0.125}}" in err and err.count("\n") == 1


def test_gpu_job_with_a_map_naming_no_catalogue_coretype_says_so(tmp_path, capsys):
    config = tmp_path / "agent.yaml"
    config.write_text("translate:\n  gpu_coretypes: {gpu-nonexistent: 0.125}\n")
    script = _script(tmp_path, "--gres=gpu:1")
    args = ["translate", str(script), "--config", str(config), "--coretypes", str(GOLDEN / "coretypes.json")]
    assert main(args) == 2
    assert "translate.gpu_coretypes names none of the candidate coretypes" in capsys.readouterr().err

