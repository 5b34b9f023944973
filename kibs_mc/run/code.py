"""The code that computes a model's results, as fingerprint inputs.

A resumed run must not mix replicates computed by two versions of the model: the plan's
fingerprint therefore covers, besides the configuration, the source of every kibs-mc module a
replicate runs (the model's module and, transitively, whatever of kibs-mc it imports: its
other modules and the Numba kernels), the chunk runner, and the versions of Python and of the
third-party packages those modules import (NumPy, Numba, SciPy). Each module is hashed from its
syntax tree without docstrings, so a comment, a docstring or a reformatting does not count as
a change; any change of the code itself does, whether it alters results or not (which cannot be
decided short of running it).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

from kibs_mc.models import get_model

#: Key prefix of the code's entries among a plan's inputs (``plan.json``).
CODE = "code:"
#: Modules hashed besides the model's own: how a chunk of replicates is run and recorded.
RUNNER = ("kibs_mc.run.chunk",)


def _source_tree(path: Path) -> ast.Module:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Absolute names of the modules (or of the modules' attributes) that ``tree`` imports."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _spec_file(name: str) -> tuple[Path, bool] | None:
    """The source file of module ``name`` and whether it is a package; None for a name that
    is no module (an attribute of one) or has no Python source."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin), spec.submodule_search_locations is not None


def _version(top: str) -> str | None:
    """The installed version of the package imported as ``top`` (None if it has none)."""
    try:
        return metadata.version(top)
    except metadata.PackageNotFoundError:
        version = getattr(sys.modules.get(top), "__version__", None)
        return str(version) if version is not None else None


@cache
def code_inputs(model: str) -> dict[str, str]:
    """``code:<module>`` -> a hash of its source (without docstrings), for every kibs-mc module
    that model ``model``'s replicates run, and ``code:<package>`` -> its version for the
    third-party packages they import, and ``code:python``; sorted by key."""
    root = type(get_model(model)).__module__
    top_package = __name__.partition(".")[0]
    todo, seen = [root, *RUNNER], set()
    out: dict[str, str] = {f"{CODE}python": "{}.{}".format(*sys.version_info[:2])}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found = _spec_file(name)
        if found is None:
            continue
        path, is_package = found
        tree = _source_tree(path)
        out[f"{CODE}{name}"] = hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]
        if name in RUNNER:
            continue  # the runner's own imports (configuration, executors) compute nothing
        for imported in _imports(tree, name, is_package):
            top = imported.partition(".")[0]
            if top == top_package:
                todo.append(imported)
            elif top and top not in sys.stdlib_module_names and (version := _version(top)):
                out[f"{CODE}{top}"] = version
    return dict(sorted(out.items()))


def changed_code(recorded: dict, current: dict) -> list[str]:
    """What of the code differs between two plans' inputs, in words (``module
    kibs_mc.models.kibs.replicate``, ``numba 0.60.0 (now 0.61.0)``); empty when nothing does."""
    keys = sorted(k for k in set(recorded) | set(current) if k.startswith(CODE))
    out = []
    for key in keys:
        old, new = recorded.get(key), current.get(key)
        if old == new:
            continue
        name = key[len(CODE) :]
        if name.startswith(f"{__name__.partition('.')[0]}."):
            out.append(f"module {name}" + ("" if old and new else " (added)" if new else " (removed)"))
        else:
            out.append(f"{name} {old or 'not recorded'} (now {new or 'not used'})")
    return out
