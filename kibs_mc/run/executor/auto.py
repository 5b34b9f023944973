"""``executor=auto`` (the default): serial for small runs, Ray when a local cluster pays off.

A local Ray cluster costs seconds before it computes anything (its daemons, then its workers
importing the package and loading the kernels) and a few percent in the steady state; on two
cores that is about 5 s more fixed cost than a serial run (docs/bench/journal.md, pipeline
efficiency of 2026-11-27). So Ray is worth starting only when the time its extra
cores save on the work left exceeds that cost.

The work is measured, not guessed: the first item (chunk) runs in this process and is timed.
It includes loading the kernels (or compiling them, on a fresh install: tens of seconds), so it
over-estimates the work: a serial verdict from it is final, a Ray verdict is checked on a
second item with the kernels warm. Both items are real results, yielded like any other, so the
probe costs no work, only the other cores' idle time while it runs (one chunk, about a second
with the default cluster).
"""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TypeVar

from kibs_mc.config import AutoConfig, RayConfig
from kibs_mc.run.executor.base import Executor, SerialExecutor
from kibs_mc.run.limits import effective_cpus

T = TypeVar("T")
R = TypeVar("R")

#: Seconds a local Ray cluster adds to a run, over the serial run's fixed costs (see above).
LOCAL_RAY_COST_S = 5.0
#: Share of a core a Ray worker's replicates get in the steady state (the driver, Ray's
#: daemons and per-task round trips take the rest; docs/bench/journal.md, 2026-11-27).
RAY_STEADY_EFFICIENCY = 0.95


@dataclass(frozen=True)
class Choice:
    kind: str  # "serial" or "ray"
    reason: str
    final: bool = True

    def line(self, cores: int) -> str:
        """The one line the run prints."""
        where = f"ray, {cores} CPUs" if self.kind == "ray" else "serial"
        return f"executor=auto: {where}: {self.reason}"


def choose(
    item_seconds: float,
    items_left: int,
    cores: int,
    cold: bool = False,
    ray_cost: float = LOCAL_RAY_COST_S,
    lost: float = 0.0,
) -> Choice:
    """Serial or Ray for ``items_left`` more items of ``item_seconds`` each on ``cores`` cores.

    Ray's time for work W is about ``ray_cost + W / (cores x RAY_STEADY_EFFICIENCY)``, the serial
    run's W, so Ray is chosen when ``W - W / (cores x efficiency) > ray_cost``. With ``cold``
    (a first item, the kernels loaded or compiled during it) only a serial verdict is final.

    ``lost``: what Ray would have saved on the earlier calls of the same run that ran serially
    (e.g. the generations of a calibration so far). It counts towards Ray's start-up cost: once
    the time lost by staying serial reaches what a cluster costs, Ray is started, so a run of
    many short calls never takes more than about twice its best time (the rent-or-buy rule).
    """
    work = item_seconds * max(items_left, 0)
    saved = max(work - work / (cores * RAY_STEADY_EFFICIENCY), 0.0)
    what = f"~{_seconds(work)} s of work in {items_left} chunks left"
    if lost > 0:
        what += f" (Ray would have saved ~{_seconds(lost)} s on the earlier calls, run here)"
    saved += lost
    if saved > ray_cost:
        return Choice(
            "ray",
            f"{what}; Ray saves ~{_seconds(saved)} s on {cores} CPUs, costs ~{_seconds(ray_cost)} s to start",
            final=not cold,
        )
    return Choice(
        "serial",
        f"{what}; Ray would save ~{_seconds(saved)} s on {cores} CPUs, "
        f"but costs ~{_seconds(ray_cost)} s to start",
    )


def _seconds(value: float) -> str:
    return f"{value:.2g}" if value < 100 else f"{value:.0f}"


class AutoExecutor(Executor):
    """Runs the first items in this process, then goes on serially or on Ray (see the module doc).

    Attaching to a given cluster (``executor.address`` or ``$RAY_ADDRESS``) is always Ray, and
    one core is always serial; neither needs a measurement. Otherwise the first
    :meth:`map_unordered` call chooses, and a serial choice is revisited on every later call
    (its first item timed here), counting what Ray would have saved on the calls run serially
    so far (:func:`choose`'s ``lost``); once Ray, always Ray. Each choice is announced in one
    line through ``announce``. The Ray settings (``num_cpus``, ``chunk_size``,
    ``max_in_flight``, ``max_retries``) apply when Ray is chosen.
    """

    name = "auto"
    schema = AutoConfig

    @classmethod
    def create(cls, cfg: AutoConfig, announce: Callable[[str], None]) -> Executor:
        return cls(cfg, announce)

    @classmethod
    def local_workers(cls, cfg: AutoConfig) -> int:
        from kibs_mc.run.executor.ray import RayExecutor

        return RayExecutor.local_workers(cfg)  # it may choose Ray

    def __init__(
        self,
        cfg: RayConfig,
        announce: Callable[[str], None] | None = None,
        ray_cost: float = LOCAL_RAY_COST_S,
    ) -> None:
        self._cfg = RayConfig(**{**asdict(cfg), "kind": "ray"})
        self._announce = announce or (lambda line: None)
        self._ray_cost = ray_cost
        self._chosen: Executor | None = None
        self.cores = int(cfg.num_cpus or effective_cpus())
        self.workers = self.cores  # chunks are sized as for Ray: small enough either way
        self.choice: Choice | None = None
        #: a serial choice from a measurement, revisited on later calls
        self._revisable = False
        #: seconds Ray would have saved on the calls run serially so far
        self._lost = 0.0
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if address:
            where = "executor.address" if cfg.address else "RAY_ADDRESS"
            self._decide(Choice("ray", f"a Ray cluster is given: {where}={address}"))
            self.workers = self._chosen.workers if self._chosen is not None else 1
        elif self.cores < 2:
            self._decide(Choice("serial", "one core: a local Ray cluster would not run more at once"))

    def _decide(self, choice: Choice) -> None:
        if self.choice is not None and choice.kind == self.choice.kind:
            return  # the same choice again: said once
        self.choice = choice
        if choice.kind == "ray":
            # Imported only here: importing Ray takes a noticeable share of a short serial
            # run, which would pay for it for nothing (docs/bench/journal.md).
            from kibs_mc.run.executor.ray import RayExecutor

            self._chosen = RayExecutor(self._cfg)
        else:
            self._chosen = SerialExecutor()
        self._announce(choice.line(self._chosen.workers))

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        if self._chosen is not None and not self._revisable:
            self._chosen.on_computed = self.on_computed
            yield from self._chosen.map_unordered(fn, items)
            return
        left = operator.length_hint(items, -1)  # a list's length; -1 when unknown
        iterator = iter(items)
        cold = self._chosen is None  # the first call loads (or compiles) the kernels
        busy = 0.0  # seconds of this call's items run here
        decided = False
        for item in iterator:
            started = time.perf_counter()
            result = fn(item)
            seconds = time.perf_counter() - started
            self._computed(item)
            busy += 0.0 if cold else seconds  # a cold item's loading is no work Ray would share
            left -= 1
            if not decided:
                if left < 0:  # the amount of work is unknown: Ray, as before there was a choice
                    choice = Choice("ray", "the amount of work is not known in advance")
                else:
                    choice = choose(
                        seconds, left, self.cores, cold=cold, ray_cost=self._ray_cost, lost=self._lost
                    )
                if choice.final or left <= 0:
                    self._decide(choice)
                    self._revisable = choice.kind == "serial"
                    decided = True
                cold = False
            yield item, result
            if decided and not self._revisable:  # Ray: the rest goes there
                assert self._chosen is not None
                self._chosen.on_computed = self.on_computed
                yield from self._chosen.map_unordered(fn, iterator)
                return
        # Everything ran here: what Ray would have saved on it counts when the next call chooses.
        self._lost += busy - busy / (self.cores * RAY_STEADY_EFFICIENCY)

    def close(self) -> None:
        if self._chosen is not None:
            self._chosen.close()

    def __exit__(self, *exc: object) -> None:
        if self._chosen is not None:
            self._chosen.__exit__(*exc)
