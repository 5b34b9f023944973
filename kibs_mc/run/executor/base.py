"""The executor contract, and the serial executor that is its oracle.

An executor maps a function over work items (chunks of replicates) and hands back each result
as it completes. It knows nothing of models or of the run directory; the experiment pipeline
above it writes each result to disk as it arrives.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, TypeVar

from kibs_mc.config import SerialConfig

T = TypeVar("T")
R = TypeVar("R")


class Executor(abc.ABC):
    """Runs ``fn`` over items somewhere (this process, a local or an attached Ray cluster).

    Call order: construct (may attach to a cluster, raising ``UserError`` when it cannot), use
    as a context manager, call :meth:`map_unordered` any number of times, then :meth:`close`
    (``__exit__`` calls it).

    Contract, checked over every executor by ``tests/test_executor_contract.py``:

    - **Results**: each item is run exactly once and yielded once as ``(item, fn(item))``;
      the order is unspecified. Results do not depend on the executor, the number of
      workers or the order of completion (``fn`` must be a pure function of its item).
    - **Laziness**: items are taken from the iterable as capacity frees up; an empty iterable
      starts nothing (no cluster).
    - **Errors**: an exception raised by ``fn`` in this process propagates as is (the serial
      executor); a task that fails for good on a remote worker (its retries spent) raises
      :class:`~kibs_mc.errors.ExecutionError` naming the item. Results already yielded stay the
      caller's; results finished but not yet yielded are yielded before the error where the
      executor holds them (nothing computed is lost).
    - **Interruption**: a ``KeyboardInterrupt`` propagates out of the iteration after the
      results finished locally have been yielded; work in flight elsewhere stops when the
      executor closes. A stream the caller abandons (closes) leaves the executor usable: the
      next stream's items are each run once, as before.
    - **Close**: releases what this executor started (a local Ray cluster), never what it
      attached to; idempotent.
    - **Progress**: where the caller sets :attr:`on_computed`, it is called once per item as
      soon as the item's result exists, from whichever thread computed it, and never after the
      item is yielded. A progress display follows the work with it even while results wait to
      be yielded (a local Ray cluster's start holds them back for seconds while the driver
      computes).

    Registered in :data:`kibs_mc.run.executor.EXECUTORS` under :attr:`name`, with its settings'
    dataclass :attr:`schema` (``kibs_mc.config.EXECUTOR_SCHEMAS``, the option ``executor=<name>``).

    Attributes:
        name: the value of ``executor.kind`` and of the Hydra choice ``executor=<name>``.
        schema: the dataclass of its settings.
        workers: how many items run at once (for chunk sizing and resource checks).
    """

    name: ClassVar[str]
    schema: ClassVar[type]
    workers: int = 1
    #: called with each item once its result exists (see Progress above); thread-safe
    on_computed: Callable[[Any], None] | None = None

    def _computed(self, item: Any) -> None:
        if self.on_computed is not None:
            self.on_computed(item)

    @classmethod
    def create(cls, cfg: Any, announce: Callable[[str], None]) -> Executor:
        """The executor for its settings ``cfg``; ``announce`` takes a line it may print once
        (e.g. what it chose and why)."""
        return cls(cfg)  # type: ignore[call-arg]

    @classmethod
    def local_workers(cls, cfg: Any) -> int:
        """Workers that will run on this machine with settings ``cfg`` (for the memory check,
        before anything starts): 0 where the work goes to another machine."""
        return 1

    @abc.abstractmethod
    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        """Yield ``(item, fn(item))`` for every item, as each completes (see the class doc)."""

    def close(self) -> None:  # noqa: B027 - optional: most executors hold nothing to release
        """Release the executor's resources (see the class doc)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Runs every item in this process, in order: the oracle the others must match."""

    name = "serial"
    schema = SerialConfig

    @classmethod
    def create(cls, cfg: Any, announce: Callable[[str], None]) -> Executor:
        return cls()

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        for item in items:
            result = fn(item)
            self._computed(item)
            yield item, result
