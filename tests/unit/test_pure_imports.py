"""The pure core imports no I/O: checked in its source (transitively) and in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import burst_agent

PURE = [
    "burst_agent.request",
    "burst_agent.translate",
    "burst_agent.command_wrapper",
    "burst_agent.model",
    "burst_agent.dialects",
    "burst_agent.dialects.script",
    "burst_agent.dialects.common",
    "burst_agent.dialects.prologue",
    "burst_agent.dialects.slurm",
    "burst_agent.dialects.pbs",
    "burst_agent.dialects.units",
    "burst_agent.tiers",
    "burst_agent.billing",
    "burst_agent.chargesize",
]
FORBIDDEN = {
    "os",
    "io",
    "socket",
    "subprocess",
    "requests",
    "urllib",
    "urllib3",
    "http",
    "pathlib",
    "shutil",
    "tempfile",
    "sqlite3",
    "yaml",
    "burst_agent.config",
}
ROOT = Path(burst_agent.__file__).parent.parent


def _source(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _runtime_imports(module: str) -> set[str]:
    """Imported names, leaving out `if TYPE_CHECKING:` blocks (annotations only)."""
    tree = ast.parse(_source(module).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if _source(f"{node.module}.{a.name}").exists() and node.module.startswith("burst_agent")
            )
    return names


def _closure(modules: list[str]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen[module] = _runtime_imports(module)
        todo += [n for n in seen[module] if n.startswith("burst_agent") and n != "burst_agent"]
    return seen


def test_pure_modules_import_no_io_in_their_source():
    for module, names in _closure(PURE).items():
        bad = {n for n in names if n in FORBIDDEN or n.split(".")[0] in FORBIDDEN}
        assert not bad, f"{module} imports {bad}"


def test_importing_the_pure_core_loads_no_network_or_process_modules():
    # The package's __init__ (version lookup via importlib.metadata) is not part of the pure core.
    code = (
        "import sys, burst_agent\nbefore = set(sys.modules)\nimport " + ", ".join(PURE) + "\n"
        "print(','.join(sorted(m for m in ('requests','socket','subprocess','urllib3','yaml','sqlite3')"
        " if m in set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
