"""Executors run chunks and hand back results as they complete.

The serial executor is tiny and is the oracle: the Ray executor must give the same rows.
Neither knows anything of models: they map a function over work items.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
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

    A local cluster takes seconds to start (Ray's daemons, then its workers: about 3 s on a
    laptop, mostly waiting), so it starts when the first chunks are asked for, and meanwhile
    a helper thread of the driver runs chunks (the kernels release the GIL). It is shut down
    in the background, while the driver aggregates; the next executor, and the interpreter's
    exit, wait for that shutdown. Ray itself is only ever called from the thread that
    started it (a cluster started from another thread hangs on first use).
    """

    def __init__(self, cfg: ExecutorConfig) -> None:
        import ray

        wait_for_shutdown()
        self._ray = ray
        self._cfg = cfg
        self._start_locally = False
        self._started_here = False
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if ray.is_initialized():
            pass
        elif address:
            _check_reachable(address)
            try:
                ray.init(address=address, runtime_env={"env_vars": WORKER_ENV}, **RAY_INIT)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(
                    f"cannot attach to the Ray cluster at executor.address={address!r} "
                    f"({type(exc).__name__}: {_first_line(exc)}); allowed: the address of a running "
                    "cluster (ray start --head prints it), 'auto' on one of its nodes, or null "
                    "for a new local cluster."
                ) from None
            self._started_here = True
        else:
            self.workers = int(cfg.num_cpus or effective_cpus())
            self._start_locally = True
            return
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _init_local(self) -> None:
        """Start the local cluster (blocking, in the calling thread)."""
        # Workers inherit the raylet's environment, which is this process's at start: set
        # through os.environ rather than a runtime_env, Ray's pre-started workers match the
        # tasks' environment and serve them at once (with a runtime_env Ray starts other
        # workers on the first task, about a second later).
        saved = {k: os.environ.get(k) for k in WORKER_ENV}
        os.environ.update(WORKER_ENV)
        try:
            self._ray.init(num_cpus=self.workers, include_dashboard=False, **RAY_INIT)
            self._started_here = True
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        ray = self._ray
        todo = _Shared(iter(items))
        local: _LocalRunner | None = None
        if self._start_locally:
            self._start_locally = False
            local = _LocalRunner(fn, todo)
            try:
                self._init_local()
            except BaseException:
                yield from local.stop_and_drain()
                raise
            local.stop()
        remote = ray.remote(num_cpus=1, max_retries=self._cfg.max_retries)(fn)
        limit = self._cfg.max_in_flight or 2 * self.workers
        pending: dict[Any, T] = {}

        def submit(count: int) -> None:
            for item in todo.take(count):
                pending[remote.remote(item)] = item

        submit(limit)
        try:
            while pending or (local is not None and not local.finished()):
                if local is not None:
                    yield from local.drain()
                if not pending:
                    assert local is not None
                    local.wait(0.05)  # only the helper's last chunk is left
                    continue
                # While the helper still runs a chunk, wake up now and then to hand it over.
                timeout = None if local is None or local.finished() else 0.05
                done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
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
            if local is not None:
                yield from local.drain()
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Shut down what this executor started, in the background (see the class doc)."""
        global _closing
        if not self._started_here:
            return
        self._started_here = False
        # Not a daemon: the interpreter waits for it at exit, so no Ray process outlives us.
        _closing = threading.Thread(target=self._ray.shutdown, name="kibs-mc-ray-shutdown")
        _closing.start()


class _Shared:
    """An iterator that two threads may take items from."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._lock = threading.Lock()

    def take(self, count: int) -> list:
        with self._lock:
            return list(islice(self._items, count))


class _LocalRunner:
    """Runs items in a helper thread of the driver until stopped; results wait in a queue."""

    def __init__(self, fn: Callable[[T], R], todo: _Shared) -> None:
        self._fn = fn
        self._todo = todo
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kibs-mc-local-chunks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                taken = self._todo.take(1)
                if not taken:
                    return
                self._results.put((taken[0], self._fn(taken[0])))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the driver's thread
            self._error = exc

    def stop(self) -> None:
        """Take no new item (the current one finishes)."""
        self._stop.set()

    def finished(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, seconds: float) -> None:
        self._thread.join(seconds)

    def drain(self) -> Iterator[tuple]:
        """Results finished so far; the helper's error, once its results are handed over."""
        while True:
            try:
                yield self._results.get_nowait()
            except queue.Empty:
                break
        if self._error is not None and self.finished():
            error, self._error = self._error, None
            raise error

    def stop_and_drain(self) -> Iterator[tuple]:
        """Stop, wait for the current item, and hand over everything finished (on failure or
        interrupt of the driver: nothing computed is lost)."""
        self.stop()
        self._thread.join()
        yield from self.drain()


#: ray.init arguments common to attaching and starting.
RAY_INIT: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}

#: The background shutdown of the last local cluster, if one is in progress.
_closing: threading.Thread | None = None


def wait_for_shutdown() -> None:
    """Wait until a local cluster this process started is fully shut down."""
    if _closing is not None:
        _closing.join()


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
