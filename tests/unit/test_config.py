"""Config loading: defaults, key-path errors, ranges, environment overrides."""

from pathlib import Path

import pytest

from burst_agent.config import ConfigError, config_from_mapping, load_config


def test_defaults_load_without_a_file():
    cfg = load_config(None, environ={})
    assert cfg.api.url == "https://platform.rescale.com"
    assert cfg.translate.coretype == "auto"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"translate": {"gpu_coretype": 1}}, "translate.gpu_coretype: unknown key"),
        ({"api": {"read_timeout_s": "x"}}, "api.read_timeout_s: expected a number"),
        ({"api": {"max_retries": 50}}, "api.max_retries: 50 is above the maximum 20"),
        ({"translate": {"rules": [{"gpus": True}]}}, "translate.rules[0].coretype: required key is missing"),
        ({"api": {"platform": "mars"}}, "api.platform: expected one of 'us', 'eu', 'jp'"),
        ({"agent": {"poll_interval_s": 1}}, "agent.poll_interval_s: 1 is below the minimum 5"),
        ({"api": []}, "api: expected a mapping"),
    ],
)
def test_errors_name_the_key_path(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_mapping(data, "site.yaml")


def test_platform_and_base_url():
    assert config_from_mapping({"api": {"platform": "eu"}}).api.url == "https://eu.rescale.com"
    assert config_from_mapping({"api": {"base_url": "http://127.0.0.1:9/"}}).api.url == "http://127.0.0.1:9"


def test_environment_overrides_file(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  read_timeout_s: 5\n")
    cfg = load_config(path, environ={"BURST_AGENT__API__READ_TIMEOUT_S": "7.5"})
    assert cfg.api.read_timeout_s == 7.5


def test_invalid_yaml_names_file_and_line(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  base_url: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line \d+, column \d+ invalid YAML"):
        load_config(path, environ={})


# -- the example config and the docs cannot drift from config.py -------------------------------------

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "burst-agent.example.yaml"
# Keys whose values in the example are illustrations (marked "# example"), not the defaults.
EXAMPLE_ONLY = ("gpu_coretypes", "rules", "analyses")


def key_paths(cls: type, prefix: str = "", into_lists: bool = False) -> list[str]:
    """Every key path of a config dataclass; with into_lists, list items' keys as `a.b[].c`."""
    import dataclasses
    import typing

    paths = []
    for f in dataclasses.fields(cls):
        path, tp = f"{prefix}{f.name}", typing.get_type_hints(cls)[f.name]
        paths.append(path)
        if dataclasses.is_dataclass(tp):
            paths += key_paths(tp, f"{path}.", into_lists)
        elif into_lists and typing.get_origin(tp) is tuple:
            item = typing.get_args(tp)[0]
            paths += key_paths(item, f"{path}[].", into_lists) if dataclasses.is_dataclass(item) else []
    return paths


def test_example_config_loads_and_names_every_key():
    import re

    import yaml

    from burst_agent.config import Config

    load_config(EXAMPLE, environ={})
    text, data = EXAMPLE.read_text(), yaml.safe_load(EXAMPLE.read_text())
    for path in key_paths(Config):
        node = data
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        leaf = path.rsplit(".", 1)[-1]
        assert node is not None or re.search(rf"^\s*#\s*{leaf}:", text, re.M), f"{path} missing from example"


def test_example_values_are_the_defaults():
    from burst_agent.config import Config, effective_dict

    example, defaults = effective_dict(load_config(EXAMPLE, environ={})), effective_dict(Config())
    for key in EXAMPLE_ONLY:
        example["translate"].pop(key), defaults["translate"].pop(key)
    assert example == defaults


def test_docs_describe_every_key():
    from burst_agent.config import Config

    docs = (ROOT / "docs" / "configuration.md").read_text()
    missing = [p for p in key_paths(Config, into_lists=True) if f"`{p}`" not in docs]
    assert missing == []


def test_effective_dict_loads_back_to_the_same_config():
    from burst_agent.config import effective_dict

    cfg = config_from_mapping({"translate": {"rules": [{"coretype": "onyx"}]}, "agent": {"spool_dir": "/s"}})
    assert config_from_mapping(effective_dict(cfg)) == cfg
