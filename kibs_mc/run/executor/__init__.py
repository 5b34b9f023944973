"""Executors: where chunks of replicates run. ``base.Executor`` is the contract,
``base.SerialExecutor`` the oracle, ``ray.RayExecutor`` the distributed one, and
``auto.AutoExecutor`` (the default) picks one of the two from the measured work; ``abc`` maps
pyabc's sampler over any of them. :data:`EXECUTORS` is their registry, by ``executor.kind``
(docs/architecture.md, "Adding an executor")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kibs_mc.run.executor.auto import AutoExecutor
from kibs_mc.run.executor.base import Executor, SerialExecutor
from kibs_mc.run.executor.ray import RayExecutor

#: Every executor, by the name ``executor.kind`` takes (importing them does not import Ray).
EXECUTORS: dict[str, type[Executor]] = {e.name: e for e in (SerialExecutor, RayExecutor, AutoExecutor)}


def make_executor(cfg: Any, announce: Callable[[str], None] | None = None) -> Executor:
    """The executor ``cfg.kind`` names, for its settings ``cfg`` (the ``executor`` group).
    ``announce`` receives the one line in which ``auto`` says what it chose and why."""
    return EXECUTORS[cfg.kind].create(cfg, announce or (lambda line: None))


def local_workers(cfg: Any) -> int:
    """Workers that will run on this machine with the executor settings ``cfg``: 0 when chunks
    go to another machine (an existing Ray cluster)."""
    return EXECUTORS[cfg.kind].local_workers(cfg)


__all__ = ["EXECUTORS", "Executor", "SerialExecutor", "local_workers", "make_executor"]
