"""pyabc's sampler on an executor: the particles of an ABC-SMC generation (``experiment=calibrate``)
run wherever the executor runs chunks (this process, a local or an attached Ray cluster).

pyabc's ``MappingSampler`` maps "sample until one particle is accepted" over the population with
a ``map`` function; here that map is the executor's :meth:`~kibs_mc.run.executor.base.Executor.map_unordered`,
and each task is seeded from the run's root seed instead of the operating system's entropy, so a
calibration does not depend on the executor and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from kibs_mc.run.executor.base import Executor


def seeded_sampler(executor: Executor, seed: int) -> Any:
    """pyabc's MappingSampler on ``executor``, with reproducible tasks: task ``i`` of
    generation ``t`` seeds NumPy's global generator from ``SeedSequence(seed, (t + 1, i))``
    (pyabc's own map function reseeds from the operating system's entropy), so a calibration's
    generations do not depend on the executor, and a resumed run repeats an uninterrupted one."""
    import pyabc

    class SeededMappingSampler(pyabc.sampler.MappingSampler):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(map_=self._map)
            self.seed = seed
            self.t = -1

        def _map(self, fn: Callable, items: Iterable) -> list:
            todo = [(self.t, i) for i, _ in enumerate(items)]

            def task(item: tuple[int, int]) -> Any:  # a plain function, as Ray's tasks must be
                return fn(item)

            done = dict(executor.map_unordered(task, todo))
            return [done[item] for item in todo]

        def map_function(self, simulate_one: Any, item: tuple[int, int]) -> tuple[Any, int]:
            # pyabc's MappingSampler.map_function, seeded from the task instead of the OS
            simulate_one = self.unpickle(simulate_one)
            t, i = item
            state = np.random.SeedSequence(self.seed, spawn_key=(t + 1, i)).generate_state(2)
            np.random.seed(int(state[0]))  # noqa: NPY002 - pyabc draws from the global generator
            random.seed(int(state[1]))
            nr_simulations = 0
            sample = self._create_empty_sample()
            while True:
                new_sim = simulate_one()
                nr_simulations += 1
                sample.append(new_sim)
                if new_sim.accepted:
                    break
            return sample, nr_simulations

        def sample_until_n_accepted(self, n: int, simulate_one: Any, t: int, **kwargs: Any) -> Any:
            self.t = t
            return super().sample_until_n_accepted(n, simulate_one, t, **kwargs)

        def __getstate__(self) -> Any:
            return (super().__getstate__(), self.seed, self.t)

        def __setstate__(self, state: Any) -> None:
            super().__setstate__(state[0])
            self.seed, self.t = state[1], state[2]

    return SeededMappingSampler()
