"""Fuzz the config loader: any mapping, YAML text or environment override gives a Config or a ConfigError.

Default: BURST_FUZZ_EXAMPLES examples per test (2,000). Long run (docs/bad-input.md):
    BURST_FUZZ_EXAMPLES=100000 .venv/bin/pytest -q tests/badinput/test_fuzz_config.py
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burst_agent.config import ENV_PREFIX, Config, ConfigError, config_from_mapping, load_config

EXAMPLES = int(os.environ.get("BURST_FUZZ_EXAMPLES", "2000"))
# A long campaign outlasts the suite's 300 s per-test timeout.
pytestmark = pytest.mark.timeout(0 if EXAMPLES > 10_000 else 300)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _key_paths(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every real key path of the config schema (so the fuzzer reaches past the unknown-key check)."""
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = (*prefix, f.name)
        paths.append(path)
        if dataclasses.is_dataclass(hints[f.name]):
            paths.extend(_key_paths(hints[f.name], path))
    return paths


KEY_PATHS = _key_paths(Config)
# Integers int(), float() or str() refuse: past 4300 digits, or hex too large for a float.
HUGE_INT_TEXT = st.one_of(
    st.integers(4290, 4400).map(lambda n: "9" * n), st.integers(300, 4000).map(lambda n: "0x" + "f" * n),
    st.integers(19, 40).map(lambda n: "-" + "1" * n),
)
HUGE_INTS = st.one_of(st.integers(2**63 - 2, 2**64), st.integers(4301, 5000).map(lambda n: 10**n),
                      st.integers(4301, 5000).map(lambda n: -(16**n)))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 3), st.floats(), st.text(max_size=12), HUGE_INTS,
    st.sampled_from(["auto", "slurm", "us", "eu", "http://127.0.0.1:1", "/tmp/x", "", "0", "-1", "1e309"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), inner,
                                                                max_size=4),
    max_leaves=12,
)


def _nest(assignments: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for path, value in assignments:
        node = data
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
    return data


SCHEMA_SHAPED = st.lists(st.tuples(st.sampled_from(KEY_PATHS), VALUES), max_size=8).map(_nest)
YAML_WORDS = st.sampled_from([
    "api:", "agent:", "translate:", "staging:", "metrics:", "rules:", "  ", "- ", ": ", "{", "}", "[", "]",
    "&a", "*a", "!!python/object:os.system", "!!binary", "'", '"', "#", "\n", "\t", "---", "...", "? ",
    "base_url: x", "poll_interval_s: 1e400", "workers: .nan", "~", "null", "yes", "0x1F", "%YAML 1.1",
    "2001-13-45", "!!int abc", "!!float x", "!!timestamp x", "!!bool x", "!!int", ".inf", "-.inf",
    "max_retries: ", '"\\U0011FFFF"', '"\\UFFFFFFFF"', '"\\x', "%YAML 1.",
])
YAML_TEXT = st.lists(st.one_of(YAML_WORDS, st.text(max_size=8), HUGE_INT_TEXT), max_size=30).map("".join)
ENV_NAMES = st.one_of(
    st.sampled_from(["__".join(p).upper() for p in KEY_PATHS]).map(ENV_PREFIX.__add__),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", max_size=12).map(ENV_PREFIX.__add__),
)
# Integer keys: every HUGE_INT_TEXT value is out of their range (or no integer at all).
INTEGER_KEYS = [ENV_PREFIX + k for k in ("AGENT__WORKERS", "STAGING__DOWNLOAD_CONCURRENCY",
                                         "AGENT__RELAY_MAX_CONNECTIONS")]
ENVIRON = st.dictionaries(ENV_NAMES, st.one_of(YAML_TEXT, st.text(max_size=10), HUGE_INT_TEXT), max_size=3)


def _accepts_or_config_error(build: Any) -> None:
    try:
        config = build()
    except ConfigError as exc:
        assert str(exc)
        return
    assert isinstance(config, Config)


@FUZZ
@given(st.one_of(SCHEMA_SHAPED, VALUES))
def test_config_from_mapping_never_crashes(data: Any) -> None:
    _accepts_or_config_error(lambda: config_from_mapping(data, "fuzz"))


@FUZZ
@given(st.one_of(YAML_TEXT, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))), ENVIRON)
def test_load_config_never_crashes(tmp_path_factory: Any, text: str, environ: dict[str, str]) -> None:
    path: Path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    _accepts_or_config_error(lambda: load_config(path, environ))


@FUZZ
@given(st.binary(max_size=300))
def test_load_config_of_arbitrary_bytes_never_crashes(tmp_path_factory: Any, raw: bytes) -> None:
    path: Path = tmp_path_factory.getbasetemp() / "fuzz-bytes.yaml"
    path.write_bytes(raw)
    _accepts_or_config_error(lambda: load_config(path, {}))


@FUZZ
@given(ENV_NAMES, st.one_of(YAML_TEXT, HUGE_INT_TEXT, st.text(max_size=10)))
def test_env_override_errors_name_the_variable(name: str, value: str) -> None:
    try:
        config = load_config(None, {name: value})
    except ConfigError as exc:
        assert str(exc).startswith(f"environment {name}: "), exc
    else:
        assert isinstance(config, Config)


@FUZZ
@given(st.sampled_from(INTEGER_KEYS), HUGE_INT_TEXT)
def test_a_huge_integer_override_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^environment {name}: "):
        load_config(None, {name: value})


def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("rules: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError):  # not accepted, and not a RecursionError
        load_config(path, {})


def test_env_override_that_is_not_yaml_is_a_config_error() -> None:
    try:
        load_config(None, {f"{ENV_PREFIX}AGENT__CLUSTER_NAME": "{oops"})
    except ConfigError:
        return
    except Exception as exc:
        raise AssertionError(f"BUG: a bad env override escapes load_config as {type(exc).__name__}") from exc


def test_env_override_with_no_key_is_a_config_error() -> None:
    try:
        load_config(None, {ENV_PREFIX: "1"})
    except ConfigError:
        return
    except Exception as exc:
        kind = type(exc).__name__
        raise AssertionError(f"BUG: env override {ENV_PREFIX!r} escapes load_config as {kind}") from exc
