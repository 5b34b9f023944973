"""Where Numba keeps the compiled kernels: a directory named after a hash of every kernel source.

Numba's on-disk cache (``@njit(cache=True)``) checks a compiled function against the file that
defines it only, not against the kernels it calls from other files: after an edit of
``kernels/kibs/instruments.py`` alone, ``run_replicate`` (``kernels/kibs/step.py``) would load its
compiled copy and run the old instruments. Naming the cache directory after the sources of the
whole ``kernels/`` package makes an edit of any kernel file start from an empty cache (one
compilation, docs/bench/journal.md), so no run mixes two versions of the model.

``NUMBA_CACHE_DIR``, if set, is the base under which the keyed directory is made; otherwise the
kernels' own ``__pycache__`` (or ``~/.cache/kibs-mc`` where that cannot be written). There, a
new keyed directory removes all but the :data:`KEEP` newest others (each holds ~9 MB of
compiled code for sources this checkout no longer has); a base the user names is left as it is,
since checkouts of other versions may share it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

PREFIX = "numba-kernels-"
#: Keyed directories of earlier sources kept in the default base (switching between a few
#: versions of the kernels, e.g. with ``git checkout``, compiles nothing twice).
KEEP = 3


def source_key(sources: Path) -> str:
    """A hash of every ``.py`` file under ``sources``, by relative path and content."""
    digest = hashlib.sha256()
    for path in sorted(sources.rglob("*.py")):
        digest.update(path.relative_to(sources).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def cache_dir(sources: Path, base: Path | None = None) -> Path:
    """The directory Numba caches the kernels under ``sources`` in (under ``base`` if given)."""
    own = base is None
    if base is None:
        base = sources / "__pycache__"
        if not _writable(base):
            base = Path.home() / ".cache" / "kibs-mc"
    directory = base / f"{PREFIX}{source_key(sources)}"
    if own and not directory.exists():
        prune(base, KEEP)
    return directory


def prune(base: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently modified keyed directories under ``base``."""
    keyed = sorted(base.glob(f"{PREFIX}*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in keyed[keep:]:
        shutil.rmtree(old, ignore_errors=True)  # another process may be removing it too


def key_the_cache() -> None:
    """Point Numba's cache (``NUMBA_CACHE_DIR``, which child processes and Ray workers inherit)
    at the directory of today's kernel sources."""
    spec = find_spec("kibs_mc.kernels")
    if spec is None or not spec.submodule_search_locations:
        return
    sources = Path(next(iter(spec.submodule_search_locations)))
    given = os.environ.get("NUMBA_CACHE_DIR", "")
    base = Path(given) if given else None
    if base is not None and base.name.startswith(PREFIX):  # keyed already, by a parent process
        base = base.parent
    directory = str(cache_dir(sources, base))
    os.environ["NUMBA_CACHE_DIR"] = directory
    config = sys.modules.get("numba.core.config")
    if config is not None:  # Numba was imported first: it read the variable already
        config.CACHE_DIR = directory  # type: ignore[attr-defined]
