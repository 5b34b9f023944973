"""The layers of docs/architecture.md hold: every import of the package goes to its own layer or
one below it (never upwards), and no two packages import each other. The recipe for adding an
experiment kind holds too: every experiment file is in ``kibs-mc --help``, and a kind that
needs a library beyond the default install has its extra."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from tests.conftest import REPO

#: Layers from the bottom: a module may import its own layer and those below it.
LAYERS = ["kernels", "leaves", "models", "config", "analysis", "run", "tracking", "experiments", "cli"]
LEAVES = {"errors", "fields", "terminal", "kernel_cache"}


def layer_of(module: str) -> str:
    """``kibs_mc.run.store`` -> ``run``; ``kibs_mc.errors`` -> ``leaves``; ``kibs_mc.cli`` -> ``cli``."""
    parts = module.split(".")
    if len(parts) == 1:  # kibs_mc itself (its lazy public API)
        return "cli"
    name = parts[1]
    if name in LEAVES:
        return "leaves"
    return "cli" if name in ("cli", "__main__") else name


def package_modules() -> dict[str, Path]:
    modules = {}
    for path in (REPO / "kibs_mc").rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    for path in (REPO / "kernels").rglob("*.py"):  # shipped as kibs_mc.kernels
        parts = ["kibs_mc", "kernels", *path.relative_to(REPO / "kernels").with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kibs_mc"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kibs_mc"))
    return found


def test_every_layer_is_known():
    assert {layer_of(m) for m in package_modules()} <= set(LAYERS)


def test_no_import_runs_up_a_layer():
    upward = []
    for module, path in package_modules().items():
        own = LAYERS.index(layer_of(module))
        for target in imports(path):
            if module == "kibs_mc" and target.startswith("kibs_mc."):
                continue  # the package's lazy public API re-exports from every layer
            if LAYERS.index(layer_of(target)) > own:
                upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_two_packages_import_each_other():
    edges = set()
    for module, path in package_modules().items():
        for target in imports(path):
            a, b = layer_of(module), layer_of(target)
            if a != b and module != "kibs_mc":
                edges.add((a, b))
    assert not [(a, b) for a, b in edges if (b, a) in edges]


def module_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """The circles of the module import graph (each a strongly connected component of more than
    one module, or a module importing itself), imports inside functions included."""
    graph = {m: sorted(t for t in imports(p) if t in modules and t != m) for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in graph[m]:
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return found


def test_no_module_of_the_package_imports_itself_back():
    # A package's __init__ re-exports its modules, so modules import each other by their own
    # names (kibs_mc.experiments.kind), never through a package that imports them back.
    modules = {m: p for m, p in package_modules().items() if m != "kibs_mc"}
    assert module_cycles(modules) == []


def test_kibs_mc_help_lists_every_experiment():
    from kibs_mc.cli import HELP

    listed = {
        line.split()[0]
        for line in HELP.split("experiments (experiment=...):")[1].split("\n\n")[0].splitlines()[1:]
    }
    files = {path.stem for path in (REPO / "conf" / "experiment").glob("*.yaml")}
    assert files <= listed, f"experiments missing from cli.HELP: {sorted(files - listed)}"


def _included(extras: dict[str, list[str]], name: str) -> set[str]:
    """``name`` and the extras its requirements name as ``kibs-mc[a,b]``, recursively."""
    found = {name}
    for requirement in extras[name]:
        if requirement.startswith("kibs-mc["):
            for other in requirement.split("[")[1].split("]")[0].split(","):
                found |= _included(extras, other.strip())
    return found


def test_a_kind_that_needs_more_than_the_default_install_has_its_extra():
    from kibs_mc.experiments import KINDS

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    needing = {name for name, kind in KINDS.items() if kind.requires}
    assert {"calibrate", "robustness", "sweep"} <= needing
    assert needing <= set(extras), (
        f"kinds without an extra in pyproject.toml: {sorted(needing - set(extras))}"
    )
    assert needing <= _included(extras, "test"), "the test extra installs every kind's"
