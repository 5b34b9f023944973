"""pyabc's sampler on an executor: the particles of an ABC-SMC generation (``experiment=calibrate``)
run wherever the executor runs chunks (this process, a local or an attached Ray cluster).

pyabc's ``MappingSampler`` maps "sample until one particle is accepted" over the population with
a ``map`` function; here that map is the executor's :meth:`~kibs_mc.run.executor.base.Executor.map_unordered`,
and each particle is seeded from the run's root seed instead of the operating system's entropy,
so a calibration does not depend on the executor and a resumed run repeats an uninterrupted
one. A task is a batch of particles, so that the model, not the round trips, fills a worker.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from kibs_mc.run.executor.base import Executor

#: Executor items per worker and generation: particles go in batches, each item one batch.
#: A particle costs a few simulations (milliseconds each on the small cluster), and every item
#: costs a round trip and unpickling pyabc's sampling function, so one item per particle spent
#: much of a worker's time outside the model; enough items per worker keep the generation's
#: last items short (the generation waits for its slowest).
PARTICLE_ITEMS_PER_WORKER = 8


def seeded_sampler(executor: Executor, seed: int) -> Any:
    """pyabc's MappingSampler on ``executor``, with reproducible particles: particle ``i`` of
    generation ``t`` seeds NumPy's global generator from ``SeedSequence(seed, (t + 1, i))``
    (pyabc's own map function reseeds from the operating system's entropy), so a calibration's
    generations do not depend on the executor or on how particles are batched into items, and a
    resumed run repeats an uninterrupted one. An item is a batch of consecutive particles
    (about PARTICLE_ITEMS_PER_WORKER items per worker and generation)."""
    import pyabc

    class SeededMappingSampler(pyabc.sampler.MappingSampler):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(map_=self._map)
            self.seed = seed
            self.t = -1

        def _map(self, fn: Callable, items: Iterable) -> list:
            n = len(list(items))
            size = max(1, math.ceil(n / (PARTICLE_ITEMS_PER_WORKER * max(1, executor.workers))))
            todo = [(self.t, tuple(range(a, min(a + size, n)))) for a in range(0, n, size)]

            def task(item: tuple[int, tuple[int, ...]]) -> Any:  # a plain function, as Ray's tasks must be
                return fn(item)

            done = dict(executor.map_unordered(task, todo))
            return [result for item in todo for result in done[item]]

        def map_function(self, simulate_one: Any, item: tuple[int, tuple[int, ...]]) -> list[tuple[Any, int]]:
            # pyabc's MappingSampler.map_function for a batch of particles, each seeded from its
            # own number instead of the OS; the sampling function is unpickled once per batch
            simulate_one = self.unpickle(simulate_one)
            t, particles = item
            out = []
            for i in particles:
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
                out.append((sample, nr_simulations))
            return out

        def sample_until_n_accepted(self, n: int, simulate_one: Any, t: int, **kwargs: Any) -> Any:
            self.t = t
            return super().sample_until_n_accepted(n, simulate_one, t, **kwargs)

        def __getstate__(self) -> Any:
            return (super().__getstate__(), self.seed, self.t)

        def __setstate__(self, state: Any) -> None:
            super().__setstate__(state[0])
            self.seed, self.t = state[1], state[2]

    return SeededMappingSampler()
