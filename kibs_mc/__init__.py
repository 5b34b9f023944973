"""kibs-mc: Monte Carlo experiments on the governance of collaborative innovation between
high-tech industrial clusters and knowledge-intensive business services (KIBS).

The public API: :func:`load_config` (a validated configuration from Hydra overrides) and
:func:`run_experiment` (run it into a directory). Both are imported on first use, so that a
worker importing a submodule (``kibs_mc.run.chunk``) does not pay for the whole pipeline.
docs/architecture.md maps the packages.
"""

from __future__ import annotations

from typing import Any

from kibs_mc.kernel_cache import key_the_cache

# Before any kernel is imported: Numba then caches them under a directory named after their sources.
key_the_cache()

__version__ = "0.1.0"
__all__ = ["__version__", "load_config", "run_experiment"]


def __getattr__(name: str) -> Any:
    if name == "load_config":
        from kibs_mc.config import load_config

        return load_config
    if name == "run_experiment":
        from kibs_mc.experiments import run_experiment

        return run_experiment
    raise AttributeError(f"module 'kibs_mc' has no attribute {name!r}")
