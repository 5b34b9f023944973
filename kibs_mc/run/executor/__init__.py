"""Executors: where chunks of replicates run. ``base.Executor`` is the contract,
``base.SerialExecutor`` the oracle, ``ray.RayExecutor`` the distributed one, and
``auto.AutoExecutor`` (the default) picks one of the two from the measured work."""

from __future__ import annotations

from collections.abc import Callable

from kibs_mc.config import ExecutorConfig
from kibs_mc.run.executor.base import Executor, SerialExecutor


def make_executor(cfg: ExecutorConfig, announce: Callable[[str], None] | None = None) -> Executor:
    """The executor ``executor.kind`` names (Ray is imported only when chosen). ``announce``
    receives the one line in which ``auto`` says what it chose and why."""
    if cfg.kind == "serial":
        return SerialExecutor()
    if cfg.kind == "auto":
        from kibs_mc.run.executor.auto import AutoExecutor

        return AutoExecutor(cfg, announce)
    from kibs_mc.run.executor.ray import RayExecutor

    return RayExecutor(cfg)


__all__ = ["Executor", "SerialExecutor", "make_executor"]
