"""A chunk of replicates of one scenario: the unit of work an executor ships to a worker.

``run_chunk`` reaches the model through the registry (:func:`kibs_mc.models.get_model`); the
executor above it knows only "run this function on this item". A chunk sent to another process
carries only the parts of the configuration its model reads (the ``model`` group and the groups
the model declares), so a Ray worker imports the models and their kernels, not the
configuration package (Hydra, OmegaConf).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from kibs_mc.models import get_model
from kibs_mc.run import interrupt

if TYPE_CHECKING:
    from kibs_mc.config import Config


@dataclass(frozen=True)
class Chunk:
    """Replicates ``replicates`` (with their ``seeds``) of one scenario."""

    scenario_index: int
    scenario: str
    #: the scenario's validated configuration (in another process: what its model reads of it)
    config: Config | Any
    replicates: np.ndarray  # int64 replicate numbers
    seeds: np.ndarray  # uint64 seeds, one per replicate

    @property
    def key(self) -> str:
        """Stable name of the chunk, for its part file and for resume."""
        return f"s{self.scenario_index:08d}-r{int(self.replicates[0]):09d}-n{len(self.replicates)}"

    def __reduce__(self) -> tuple:
        """Pickled (for a worker) with :func:`model_inputs` in place of the whole configuration."""
        config = model_inputs(self.config)
        return (Chunk, (self.scenario_index, self.scenario, config, self.replicates, self.seeds))


def model_inputs(config: Config | Any) -> SimpleNamespace:
    """What a model reads of a scenario's configuration: its ``model`` group and the groups it
    declares (``Model.groups``), as attributes of the same names."""
    groups = getattr(get_model(config.model.name), "groups", {})
    return SimpleNamespace(model=config.model, **{name: getattr(config, name) for name in groups})


@dataclass
class ChunkResult:
    """Columns of per-replicate rows and of time-series rows (None when the model has none)."""

    key: str
    rows: dict[str, np.ndarray]
    timeseries: dict[str, np.ndarray] | None
    seconds: float
    #: Replicates that raised instead of finishing (they have no row): one dict each with
    #: scenario, replicate, seed and error, so the other replicates' results are kept.
    errors: list[dict] = field(default_factory=list)


def run_chunk(chunk: Chunk) -> ChunkResult:
    """Simulate every replicate of ``chunk``; rows in replicate order."""
    model = get_model(chunk.config.model.name)
    outcomes = {**model.outcomes, **model.accounts}  # every column of a row: outcomes, then records
    started = time.perf_counter()
    columns: dict[str, list] = {name: [] for name in outcomes}
    series: dict[str, list] = {}
    errors: list[dict] = []
    for replicate, seed in zip(chunk.replicates, chunk.seeds, strict=True):
        try:
            with interrupt.replicate():  # a first Ctrl-C waits for the replicate's end
                row, ts = model.simulate(chunk.config, int(seed))
        except Exception as exc:  # noqa: BLE001 - one replicate's failure must not cost the others
            if interrupt.caused_by_interrupt(exc):  # Ctrl-C, not a failure: stop the chunk
                raise KeyboardInterrupt from None
            errors.append(
                {
                    "scenario": chunk.scenario,
                    "replicate": int(replicate),
                    "seed": int(seed),
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
            continue
        interrupt.check()
        for name in outcomes:
            columns[name].append(row[name])
        if ts is not None:
            n = len(next(iter(ts.values())))
            series.setdefault("replicate", []).append(np.full(n, replicate, dtype=np.int64))
            for name, values in ts.items():
                series.setdefault(name, []).append(np.asarray(values))
    ok = np.isin(chunk.replicates, [e["replicate"] for e in errors], invert=True)
    rows: dict[str, np.ndarray] = {
        "scenario": np.full(int(ok.sum()), chunk.scenario, dtype=object),
        "replicate": np.asarray(chunk.replicates, dtype=np.int64)[ok],
        "seed": np.asarray(chunk.seeds, dtype=np.uint64)[ok],
    }
    for name, dtype in outcomes.items():
        rows[name] = np.asarray(columns[name], dtype=dtype)
    timeseries = None
    if series:
        timeseries = {name: np.concatenate(parts) for name, parts in series.items()}
        timeseries["scenario"] = np.full(len(timeseries["replicate"]), chunk.scenario, dtype=object)
    return ChunkResult(chunk.key, rows, timeseries, time.perf_counter() - started, errors)
