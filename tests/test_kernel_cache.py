"""Numba's cache of the compiled kernels follows their sources: an edit of one kernel file
recompiles the kernels that call it from another file (kibs_mc/kernel_cache.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kibs_mc.kernel_cache import KEEP, PREFIX, cache_dir, source_key

# Two kernel files: `outer` (a.py) calls `inner` (b.py), both cached on disk.
CALLER = """
from numba import njit
from b import inner

@njit(cache=True)
def outer():
    return inner() + 1
"""
CALLEE = """
from numba import njit

@njit(cache=True)
def inner():
    return {value}
"""
RUN = """
import sys
import numba
numba.config.CACHE_DIR = sys.argv[1]
sys.path.insert(0, sys.argv[2])
from a import outer
print(outer())
"""


def _outer(sources: Path, cache: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(cache), str(sources)],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"},
    )
    return int(done.stdout.split()[-1])


def test_an_edit_of_a_called_kernel_file_is_compiled_again(tmp_path):
    sources = tmp_path / "kernels"
    sources.mkdir()
    (sources / "a.py").write_text(CALLER)
    (sources / "b.py").write_text(CALLEE.format(value=1))
    base = tmp_path / "cache"
    assert _outer(sources, cache_dir(sources, base)) == 2
    (sources / "b.py").write_text(CALLEE.format(value=10))  # only the callee's file changes
    assert _outer(sources, cache_dir(sources, base)) == 11
    assert len(list(base.glob(f"{PREFIX}*"))) == 2


def test_the_key_follows_content_not_place(tmp_path):
    import kibs_mc.kernels as package

    kernels = Path(package.__file__).parent
    copy = tmp_path / "copy"
    for path in kernels.rglob("*.py"):
        target = copy / path.relative_to(kernels)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    assert source_key(copy) == source_key(kernels)
    edited = copy / "kibs" / "instruments.py"
    edited.write_text(edited.read_text() + "\n# a comment\n")
    assert source_key(copy) != source_key(kernels)


def test_the_package_points_numba_at_the_keyed_directory():
    import kibs_mc.kernels as package
    import numba

    expected = str(cache_dir(Path(package.__file__).parent))
    assert os.environ["NUMBA_CACHE_DIR"] == expected
    assert numba.config.CACHE_DIR == expected


def test_a_child_process_keeps_the_parents_directory(tmp_path):
    """Ray workers and subprocesses inherit NUMBA_CACHE_DIR: keying it again must not nest it."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = "import os, kibs_mc; print(os.environ['NUMBA_CACHE_DIR'])"
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    keyed = first.stdout.strip()
    assert Path(keyed).parent == tmp_path and Path(keyed).name.startswith(PREFIX)
    second = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, NUMBA_CACHE_DIR=keyed),
        capture_output=True,
        text=True,
        check=True,
    )
    assert second.stdout.strip() == keyed


def test_the_default_cache_keeps_a_few_earlier_versions_and_a_named_base_all(tmp_path):
    sources = tmp_path / "kernels"
    sources.mkdir()
    own, named = sources / "__pycache__", tmp_path / "named"
    for i in range(KEEP + 3):  # directories of earlier sources, oldest first
        for base in (own, named):
            (base / f"{PREFIX}old{i}").mkdir(parents=True)
            os.utime(base / f"{PREFIX}old{i}", (1_000_000 + i, 1_000_000 + i))
    (sources / "b.py").write_text(CALLEE.format(value=1))
    cache_dir(sources, named)
    assert len(list(named.glob(f"{PREFIX}*"))) == KEEP + 3
    new = cache_dir(sources)
    assert new.parent == own
    assert sorted(p.name for p in own.glob(f"{PREFIX}*")) == [f"{PREFIX}old{i}" for i in range(3, KEEP + 3)]
