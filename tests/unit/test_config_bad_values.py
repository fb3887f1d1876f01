"""Values int(), float() or repr() trip over are ConfigErrors naming the file and key, or the variable."""

import sys
from pathlib import Path

import pytest

from burst_agent.config import ConfigError, config_from_mapping, load_config

HUGE = "1" * 4400  # past int()'s 4300-digit limit
HEX = "0x" + "f" * 4000  # any length parses, but the int is too large for float() and str()
# Past the recursion limit (YAML's composer recurses at least once a level); deeper only costs time.
DEEP = "[" * sys.getrecursionlimit()


@pytest.mark.parametrize(("key", "value"), [
    ("api.max_retries", HUGE), ("api.max_retries", "-" + HUGE), ("api.connect_timeout_s", HEX),
    ("staging.max_input_bytes", "1" + "0" * 30), ("agent.cluster_name", HEX),
    ("metrics.partitions", f"[{HEX}]"),
])
def test_huge_integer_in_the_file_names_file_and_key(tmp_path: Path, key: str, value: str) -> None:
    section, name = key.split(".")
    path = tmp_path / "site.yaml"
    path.write_text(f"{section}:\n  {name}: {value}\n")
    with pytest.raises(ConfigError, match=rf"^{path}: {key}") as caught:
        load_config(path, environ={})
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("value", [HUGE, HEX, f"[{HUGE}]", DEEP, ".nan", "2001-13-45", "!!int abc",
                                   '"\\UFFFFFFFF"', f"%YAML 1.{HUGE}\n---\n"])
def test_bad_environment_value_names_the_variable(value: str) -> None:
    name = "BURST_AGENT__API__CONNECT_TIMEOUT_S"
    with pytest.raises(ConfigError, match=f"^environment {name}: ") as caught:
        load_config(None, environ={name: value})
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(("text", "message"), [
    ("translate:\n  default_walltime_hours: .inf\n", "translate.default_walltime_hours: expected a number"),
    ("agent:\n  cluster_name: 2001-13-45\n", "line 2, column 17 invalid YAML: cannot read '2001-13-45'"),
    ("api:\n  token_env: !!int abc\n", "line 2, column 14 invalid YAML: cannot read 'abc' as int"),
    ('api:\n  token_env: "\\U0011FFFF"\n', "line 2, column 17 invalid YAML: cannot read: chr() arg"),
    (f"%YAML 1.{HUGE}\n---\n", "line 1, column 9 invalid YAML: cannot read: Exceeds the limit"),
    (f"agent:\n  projects:\n    ? {HEX}\n    : x\n", "agent.projects: integer out of range"),
])
def test_values_yaml_cannot_build_or_that_are_not_finite_are_config_errors(tmp_path, text, message) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"{path}: {message}"), caught.value


def test_huge_integers_from_code_are_config_errors() -> None:
    huge = 10**5000
    for data in ({"api": {"max_retries": huge}}, {"agent": {huge: 1}}, {"api": {"platform": [huge]}}):
        with pytest.raises(ConfigError, match=r"^site\.yaml: "):
            config_from_mapping(data, "site.yaml")
