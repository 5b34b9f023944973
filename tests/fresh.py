"""Run an importable function in a fresh interpreter and return what it returns.

For checks that need a process of their own: Ray can be started once per process (a local
cluster only where none runs), and reproducibility across processes is only shown by another
process. The function is named by its module and name (it must be importable: a module-level
function of a test module or of ``tests.contracts``), its arguments and its result travel as
JSON. ``python -m tests.fresh MODULE:FUNCTION ARGS_JSON`` prints the result as the last line.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: The environment of a fresh interpreter: nothing of this one's (no RAY_ADDRESS, no cluster).
BASE_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": str(Path.home()),
    "PYTHONPATH": str(REPO),
    "RAY_USAGE_STATS_ENABLED": "0",
}


def call_fresh(
    fn: Callable[..., Any], *args: Any, env: Mapping[str, str] | None = None, timeout: float = 240
) -> Any:
    """``fn(*args)`` in a fresh interpreter (environment :data:`BASE_ENV` plus ``env``)."""
    target = f"{fn.__module__}:{fn.__qualname__}"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fresh", target, json.dumps(list(args))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**BASE_ENV, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(target: str, args: str) -> None:
    module, _, name = target.partition(":")
    fn = getattr(importlib.import_module(module), name)
    result = fn(*json.loads(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
