"""Executors run chunks and hand back results as they complete.

The serial executor is tiny and is the oracle: the Ray executor must give the same rows.
Neither knows anything of models: they map a function over work items.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from kibs_mc.config import ExecutorConfig, effective_cpus
from kibs_mc.errors import ExecutionError, UserError

T = TypeVar("T")
R = TypeVar("R")

#: One Numba thread per Ray worker, so workers do not oversubscribe the cores.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class Executor:
    """Base: a context manager with ``map_unordered``; ``workers`` is the parallelism."""

    workers: int = 1

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the executor's resources."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Runs every item in this process, in order."""

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        for item in items:
            yield item, fn(item)


class RayExecutor(Executor):
    """Ray tasks, a bounded number in flight, results yielded as they complete.

    Attaches to ``address`` (or ``$RAY_ADDRESS``) when given, else starts a local cluster with
    ``num_cpus`` CPUs (default: the cores this process may use), and shuts down only what it
    started.
    """

    def __init__(self, cfg: ExecutorConfig) -> None:
        import ray

        self._ray = ray
        self._cfg = cfg
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        self._started_here = False
        if not ray.is_initialized():
            common: dict[str, Any] = dict(
                runtime_env={"env_vars": WORKER_ENV},
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
            if address:
                _check_reachable(address)
                try:
                    ray.init(address=address, **common)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise UserError(
                        f"cannot attach to the Ray cluster at executor.address={address!r} "
                        f"({type(exc).__name__}: {_first_line(exc)}); allowed: the address of a running "
                        "cluster (ray start --head prints it), 'auto' on one of its nodes, or null "
                        "for a new local cluster."
                    ) from None
            else:
                ray.init(num_cpus=cfg.num_cpus or effective_cpus(), include_dashboard=False, **common)
            self._started_here = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=self._cfg.max_retries)(fn)
        limit = self._cfg.max_in_flight or 2 * self.workers
        todo = iter(items)
        pending: dict[Any, T] = {}

        def submit(count: int) -> None:
            for item in islice(todo, count):
                pending[remote.remote(item)] = item

        submit(limit)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        raise ExecutionError(
                            f"task {getattr(item, 'key', item)} failed for good after "
                            f"executor.max_retries={self._cfg.max_retries} retries "
                            f"({type(exc).__name__}: {_first_line(exc)})."
                        ) from None
                    submit(1)
                    yield item, result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse an address where nothing listens at once (Ray itself would retry for minutes)."""
    import socket

    host, _, port = address.split("://")[-1].rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(
            f"bad configuration: executor.address={address!r} is not allowed; nothing answers there "
            f"({exc.strerror or exc}). Allowed: the address of a running Ray cluster "
            "(`ray start --head` prints it), 'auto' on one of its nodes, or null for a new local cluster."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def make_executor(cfg: ExecutorConfig) -> Executor:
    if cfg.kind == "serial":
        return SerialExecutor()
    return RayExecutor(cfg)
