"""The Ray executor: chunks as Ray tasks on a local or an attached cluster.

While a local cluster starts, a helper thread of the driver computes chunks
(:class:`_LocalRunner`); then results stream from remote tasks, a bounded number in flight
(:meth:`RayExecutor._stream_remote`). On a local cluster of a few CPUs the helper goes on
computing beside Ray's workers for the whole run, one worker fewer being started. The serial
executor (``base.py``) is its oracle: the same rows, whatever the workers or the order of
completion.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice
from typing import Any, TypeVar

from kibs_mc.config import RayConfig
from kibs_mc.errors import ExecutionError, UserError, first_line
from kibs_mc.run import interrupt
from kibs_mc.run.executor.base import Executor
from kibs_mc.run.limits import effective_cpus

T = TypeVar("T")
R = TypeVar("R")

#: One Numba thread per Ray worker, so workers do not oversubscribe the cores.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

#: Up to this many CPUs, a local cluster's driver computes chunks itself for the whole run (a
#: helper thread; the kernels release the GIL) and Ray starts one worker fewer. The driver's
#: core would otherwise idle between results, and each Ray worker costs seconds of CPU to
#: start (Ray's own imports, then the package and the Numba kernels), which on a laptop competes
#: with the work. With more CPUs the driver's time is better spent taking in their results.
DRIVER_COMPUTES_UP_TO = 8


class RayExecutor(Executor):
    """Ray tasks, a bounded number in flight, results yielded as they complete.

    Attaches to ``address`` (or ``$RAY_ADDRESS``) when given, else starts a local cluster with
    ``num_cpus`` CPUs (default: the cores this process may use), and shuts down only what it
    started.

    A local cluster takes seconds to start (Ray's daemons, then its workers, mostly waiting;
    docs/bench/journal.md), so it starts when the first chunks are asked for, and meanwhile
    a helper thread of the driver runs chunks (the kernels release the GIL). With 2 to
    DRIVER_COMPUTES_UP_TO CPUs the helper goes on for the whole run, as one of the ``num_cpus``
    workers, and Ray gets the others. Ray is started
    and used only from the thread that asked for the chunks (a cluster started from another
    thread hangs on its first task). After a successful run it is shut down in a background
    thread, while the driver aggregates; the next executor, and the interpreter's exit, wait
    for that shutdown. After a failure it is shut down before the error propagates (a Ray
    error freed during a shutdown in progress kills the process).
    """

    name = "ray"
    schema = RayConfig

    @classmethod
    def local_workers(cls, cfg: RayConfig) -> int:
        """0 when chunks go to an existing cluster (``address`` or ``$RAY_ADDRESS``), else the
        local cluster's CPUs + 1: the driver computes chunks while the cluster starts, and
        beside its workers."""
        if cfg.address or os.environ.get("RAY_ADDRESS"):
            return 0
        return int(cfg.num_cpus or effective_cpus()) + 1

    def __init__(self, cfg: RayConfig) -> None:
        import ray

        wait_for_shutdown()
        self._ray = ray
        self._cfg = cfg
        self._start_locally = False
        self._started_here = False
        #: the driver computes beside Ray's workers (a small local cluster)
        self._driver_computes = False
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if ray.is_initialized():
            pass
        elif address:
            _check_reachable(address)
            try:
                with interrupt.kept_sigterm():
                    ray.init(address=address, runtime_env={"env_vars": WORKER_ENV}, **RAY_INIT)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(
                    f"cannot attach to the Ray cluster at executor.address={address!r} "
                    f"({type(exc).__name__}: {first_line(exc)}); allowed: the address of a running "
                    "cluster (ray start --head prints it), 'auto' on one of its nodes, or null "
                    "for a new local cluster."
                ) from None
            self._started_here = True
        else:
            self.workers = int(cfg.num_cpus or effective_cpus())
            self._start_locally = True
            self._driver_computes = 2 <= self.workers <= DRIVER_COMPUTES_UP_TO
            return
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def _init_local(self) -> None:
        """Start the local cluster (blocking, in the calling thread), listening on 127.0.0.1
        only: a cluster of this one machine has nothing to say to the network."""
        self._started_here = True  # from here on, close() must stop whatever did start
        # Ray 2.60 turns token authentication on for a new local cluster (a token in
        # ~/.ray/auth_token, generated if missing) and warns about it on every run: keep the
        # behaviour, drop the warning (setting RAY_AUTH_MODE here is too late: Ray caches it).
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        with _loopback_only(self._ray), interrupt.kept_sigterm():
            try:
                self._ray.init(num_cpus=self._ray_workers(), include_dashboard=False, **RAY_INIT)
            except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception when its raylet does not come up
                raise ExecutionError(
                    f"the local Ray cluster did not start ({type(exc).__name__}: {first_line(exc)}); "
                    "run again, or use executor=serial."
                ) from None

    def _ray_workers(self) -> int:
        """How many of the ``workers`` are Ray's (the others: the driver)."""
        return self.workers - 1 if self._driver_computes else self.workers

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        iterator = iter(items)
        first = next(iterator, _END)
        if first is _END:  # e.g. a resumed run with nothing left: no cluster to start
            return
        todo = _Shared(chain([first], iterator))
        local: _LocalRunner | None = None
        if self._start_locally:
            self._start_locally = False
            local = _LocalRunner(fn, todo, self._computed, WORKER_ENV)
            try:
                self._init_local()
            except BaseException:
                yield from local.stop_and_drain()
                raise
            if not self._driver_computes:
                local.stop()
        elif self._driver_computes:  # a later call (e.g. the next round): the driver computes again
            local = _LocalRunner(fn, todo, self._computed)
        try:
            yield from self._stream_remote(fn, todo, local)
        except GeneratorExit:
            raise
        except BaseException:
            if local is not None:  # interrupted or failed: hand over what the helper finished
                yield from local.stop_and_drain()
            raise
        finally:
            if local is not None:
                local.stop()
                local.restore_env(force=True)

    def _stream_remote(
        self, fn: Callable[[T], R], todo: _Shared, local: _LocalRunner | None
    ) -> Iterator[tuple[T, R]]:
        """Submit items as Ray tasks (at most ``max_in_flight`` at once) and yield results as
        they complete, interleaved with the results of the helper thread's last chunks."""
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=self._cfg.max_retries)(fn)
        limit = self._cfg.max_in_flight or 2 * self._ray_workers()
        pending: dict[Any, T] = {}

        def submit(count: int) -> None:
            for item in todo.take(count):
                pending[remote.remote(item)] = item

        try:
            submit(limit)
            while pending or (local is not None and not local.finished()):
                if local is not None:
                    yield from local.drain()
                    if local.finished():
                        local.restore_env()
                if not pending:
                    assert local is not None
                    local.wait(0.05)  # only the helper's last chunk is left
                    continue
                # While the helper still runs a chunk, wake up now and then to hand it over.
                timeout = None if local is None or local.finished() else 0.05
                done, not_done = ray.wait(list(pending), num_returns=1, timeout=timeout)
                for ref in done:
                    item = pending.pop(ref)
                    failure = None
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failure = (
                            f"task {getattr(item, 'key', item)} failed for good after "
                            f"executor.max_retries={self._cfg.max_retries} retries "
                            f"({type(exc).__name__}: {first_line(exc)})."
                        )
                    if failure is not None:
                        # Neither the error (raised outside the except block, so without Ray's
                        # exception as its context) nor this frame, which its traceback keeps,
                        # may hold object references: freeing one while Ray shuts down kills
                        # the process.
                        done.clear()
                        del not_done, ref
                        raise ExecutionError(failure)
                    submit(1)
                    self._computed(item)
                    yield item, result
            if local is not None:
                yield from local.drain()
        except GeneratorExit:  # the caller abandoned the stream; the executor goes on
            _forget(ray, pending, settle=not interrupt.stop_requested())  # a stop does not wait
            raise
        finally:
            _forget(ray, pending, settle=False)  # in a function: no reference stays in this frame

    def __exit__(self, *exc: object) -> None:
        self.close(background=exc[0] is None)

    def close(self, background: bool = True) -> None:
        """Shut down what this executor started (see the class doc)."""
        global _closing
        if not self._started_here:
            return
        self._started_here = False
        if not background:
            self._ray.shutdown()
            return
        # Not a daemon: the interpreter waits for it at exit, so no Ray process outlives us.
        _closing = threading.Thread(target=self._ray.shutdown, name="kibs-mc-ray-shutdown")
        _closing.start()


#: How long an abandoned stream waits for its tasks in flight to finish.
SETTLE_SECONDS = 10.0


def _forget(ray: Any, pending: dict, settle: bool) -> None:
    """Drop the tasks still in flight; with ``settle`` (an abandoned stream of an executor that
    goes on), first wait up to SETTLE_SECONDS for them to finish, so that the next stream does
    not share workers with them.

    They are not cancelled: ``ray.cancel`` of a task Ray is about to start makes the task's
    result arrive for a task Ray no longer holds, and the driver dies of Ray's internal check
    ("Tried to complete task that was not pending", seen on an attached cluster with Ray 2.60),
    and a forced cancel kills a worker Ray may have just handed the next task. Work left in
    flight after an error or an interrupt stops when the executor closes: a local cluster is
    shut down, and an attached cluster stops the tasks of a driver that disconnects.
    """
    refs = list(pending)
    pending.clear()
    if refs and settle:
        ray.wait(refs, num_returns=len(refs), timeout=SETTLE_SECONDS)


def _set_env(values: dict[str, str]) -> dict[str, str | None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    return saved


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class _Shared:
    """An iterator that two threads may take items from."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._lock = threading.Lock()

    def take(self, count: int) -> list:
        with self._lock:
            return list(islice(self._items, count))


class _LocalRunner:
    """Runs items in a helper thread of the driver until stopped; results wait in a queue.

    ``computed``: called with each item as soon as its result exists (in the helper thread:
    while the local cluster starts, nothing is yielded, yet the progress display moves).
    ``env``: variables set in this process while the helper runs (see ``__init__``)."""

    #: How long an interrupted or failed run waits for the helper's current chunk.
    FINISH_SECONDS = 2.0

    def __init__(
        self,
        fn: Callable[[T], R],
        todo: _Shared,
        computed: Callable[[Any], None],
        env: dict[str, str] | None = None,
    ) -> None:
        # Workers inherit the raylet's environment, which is this process's when it starts:
        # set through os.environ rather than a runtime_env, Ray's pre-started workers match
        # the tasks and serve them at once (with a runtime_env Ray starts other workers on
        # the first task, about a second later). Set before the helper thread starts and
        # restored once it has finished (restore_env), so no thread sees the environment change.
        self._saved_env: dict[str, str | None] | None = _set_env(env) if env else None
        self._fn = fn
        self._computed = computed
        self._todo = todo
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._error: ExecutionError | None = None
        self._thread = threading.Thread(target=self._run, name="kibs-mc-local-chunks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            taken = self._todo.take(1)
            if not taken:
                return
            try:
                result = self._fn(taken[0])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the driver's thread
                # The same error a chunk failing on a Ray worker gives (exit 1, resume hint).
                self._error = ExecutionError(
                    f"task {getattr(taken[0], 'key', taken[0])} failed in the driver, which computes "
                    f"beside the local Ray cluster ({type(exc).__name__}: {first_line(exc)})."
                )
                return
            self._computed(taken[0])  # before the result can be yielded (the contract's order)
            self._results.put((taken[0], result))

    def restore_env(self, force: bool = False) -> None:
        """Give the driver its environment back once the helper thread has finished (or now,
        when ``force``d: the run is over, whatever the helper still does)."""
        if self._saved_env is not None and (force or self.finished()):
            _restore_env(self._saved_env)
            self._saved_env = None

    def stop(self) -> None:
        """Take no new item (the current one finishes)."""
        self._stop.set()

    def finished(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, seconds: float) -> None:
        self._thread.join(seconds)

    def drain(self, raise_error: bool = True) -> Iterator[tuple]:
        """Results finished so far; then the helper's error, if it stopped on one."""
        while True:
            try:
                yield self._results.get_nowait()
            except queue.Empty:
                break
        if raise_error and self._error is not None and self.finished():
            error, self._error = self._error, None
            raise error

    def stop_and_drain(self) -> Iterator[tuple]:
        """On a failed or interrupted run: stop, give the current chunk a moment to finish,
        and hand over everything finished (nothing computed is lost)."""
        self.stop()
        self._thread.join(self.FINISH_SECONDS)
        yield from self.drain(raise_error=False)
        self.restore_env(force=True)


#: ray.init arguments common to attaching and starting.
RAY_INIT: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}

_END = object()

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


@contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """Make ``ray.init`` start a cluster bound to 127.0.0.1 (GCS, raylet, workers, agents).

    On Linux ``ray.init`` gives a new cluster the machine's network address, and its servers
    listen on every interface; ``_node_ip_address="127.0.0.1"`` is turned back into that
    address. Ray's loopback mode (its default on macOS and Windows, switched by
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read once when Ray is imported) gives the node the
    address 127.0.0.1, and every server binds to it. tests/test_executor.py reads the listening
    sockets of a run, so a Ray upgrade that changes this is caught.
    """
    constants = ray._private.ray_constants
    saved = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved
