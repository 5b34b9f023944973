"""Executors: where chunks of replicates run. ``base.Executor`` is the contract,
``base.SerialExecutor`` the oracle, ``ray.RayExecutor`` the distributed one."""

from __future__ import annotations

from kibs_mc.config import ExecutorConfig
from kibs_mc.run.executor.base import Executor, SerialExecutor


def make_executor(cfg: ExecutorConfig) -> Executor:
    """The executor ``executor.kind`` names (Ray is imported only when chosen)."""
    if cfg.kind == "serial":
        return SerialExecutor()
    from kibs_mc.run.executor.ray import RayExecutor

    return RayExecutor(cfg)


__all__ = ["Executor", "SerialExecutor", "make_executor"]
