"""burst_agent's module graph: no import cycle, and no module imports one of a higher layer.

Every import statement counts: at the top, inside a function (a lazy import that dodges a cycle at
runtime is still a cycle) and under `if TYPE_CHECKING:`.
"""

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import burst_agent

ROOT = "burst_agent"
PACKAGE = Path(burst_agent.__file__).parent

# Module prefixes (relative to burst_agent; "" is the package's own __init__) by layer. A module may
# import its own layer and the layers below; the longest matching prefix gives a module's layer.
LAYERS: dict[str, int] = {
    prefix: layer
    for layer, prefixes in enumerate((
        # 0 foundations: pure rules, records and leaf helpers every layer uses
        ("", "arith", "command_wrapper", "config", "conncaps", "failpoints", "fsync", "inotify", "lifecycle",
         "logsetup", "model", "mungeauth", "pgurl", "record", "rejection", "relayaddr", "relaynet",
         "relayproto", "request", "sdnotify", "secret", "textable", "tiers"),
        # 1 libraries: the job language and its plan, staging, the Rescale client, the store's contract
        ("dialects", "outpaths", "translate", "planning", "jobview", "schedrecord", "report", "sacctsync",
         "staging", "rescale", "ledger", "billing", "chargesize"),
        # 2 I/O shells: the agent's store, spool and metrics, the user-side relay, doctor's checks
        ("store", "pgstore", "stores", "spool", "metrics", "requeue", "relay", "doctor",
         "doctorkit", "doctor_ha", "doctor_sizing", "cataloguecopy", "leadership"),
        # 3 the pipeline: one job's steps; the billing reconciliation beside it
        ("pipeline", "billing_sync"),
        # 4 the daemon: the agent, its socket server, the demo that runs one
        ("agent", "relayserver", "relaytcp", "demo"),
        # 5 the command line
        ("commands", "cli"),
    ))
    for prefix in prefixes
}


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file; a package's __init__ is the package."""
    found = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from ... import` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    here = module.split(".") if is_package else module.split(".")[:-1]
    anchor = here[: len(here) - node.level + 1]
    return ".".join(anchor + ([node.module] if node.module else []))


def imports_of(source: str, module: str, known: Iterable[str], is_package: bool = False) -> set[str]:
    """The burst_agent modules `module` imports; `from a import b` is a.b when that is a module."""
    modules, found = set(known), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _base(node, module, is_package)
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {name for name in found if name.split(".")[0] == ROOT and name != module}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = module_files(package)
    return {name: imports_of(path.read_text(), name, files, path.name == "__init__.py")
            for name, path in files.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first walk: every group of modules in a cycle shows up."""
    found: list[list[str]] = []
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> None:
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if target in path:
                found.append([*path[path.index(target):], target])
            elif target not in done:
                visit(target)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return found


def layer_of(module: str, layers: Mapping[str, int] = LAYERS) -> int | None:
    name = module.removeprefix(ROOT).removeprefix(".")
    matches = [p for p in layers if name == p or (p and name.startswith(p + "."))]
    return layers[max(matches, key=len)] if matches else None


def upward(graph: Mapping[str, Iterable[str]], layers: Mapping[str, int] = LAYERS) -> list[str]:
    """Each import of a higher layer, as `a (its layer) -> b (its layer)`."""
    edges = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            low, high = layer_of(module, layers), layer_of(target, layers)
            if low is not None and high is not None and high > low:
                edges.append(f"{module} ({low}) -> {target} ({high})")
    return edges


# -- the checker itself ----------------------------------------------------------------------------------


def test_from_import_resolves_to_the_submodule_else_the_module():
    source = "from burst_agent.x import y, z\nfrom burst_agent import __version__\n"
    known = {"burst_agent", "burst_agent.x", "burst_agent.x.y"}
    assert imports_of(source, "burst_agent.a", known) == {"burst_agent.x.y", "burst_agent.x", "burst_agent"}


def test_lazy_type_checking_and_relative_imports_count():
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from burst_agent.p.b import B\n"
              "def f():\n    import burst_agent.c\n    from . import d\n    from .e import E\n")
    known = {"burst_agent.p.b", "burst_agent.c", "burst_agent.p.d", "burst_agent.p.e"}
    assert imports_of(source, "burst_agent.p.a", known) == known


def test_a_package_init_resolves_relative_imports_inside_itself():
    found = imports_of("from .script import parse\n", "burst_agent.p", {"burst_agent.p.script"}, True)
    assert found == {"burst_agent.p.script"}


def test_the_cycle_finder_names_the_modules_of_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_layer_check_flags_only_imports_of_a_higher_layer():
    layers = {"": 0, "low": 0, "high": 1, "high.pure": 0}
    graph = {"burst_agent.low": {"burst_agent.high.x", "burst_agent.high.pure", "burst_agent"},
             "burst_agent.high.x": {"burst_agent.low"}}
    assert upward(graph, layers) == ["burst_agent.low (0) -> burst_agent.high.x (1)"]
    assert layer_of("burst_agent.lowly", layers) is None  # a prefix ends at a dot


@pytest.fixture(scope="module")
def real_graph() -> dict[str, set[str]]:
    """burst_agent's graph, read once for the tests below (reading it parses every module)."""
    return import_graph()


def test_the_real_graph_is_read(real_graph):
    graph = real_graph
    assert "burst_agent.doctor" in graph["burst_agent.commands.doctor"]  # from burst_agent import doctor
    assert "burst_agent" in graph["burst_agent.rescale.client"]  # from burst_agent import __version__
    assert len(graph) > 50


# -- the code base -------------------------------------------------------------------------------------


def test_every_module_has_a_layer():
    missing = sorted(m for m in module_files() if layer_of(m) is None)
    assert not missing, f"add these modules to LAYERS: {missing}"


def test_no_import_cycle(real_graph):
    found = cycles(real_graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_module_imports_a_higher_layer(real_graph):
    found = upward(real_graph)
    assert not found, "upward imports:\n" + "\n".join(found)
