"""The experiment plan: scenarios x replicate seeds, cut into chunks.

Replicate r of an experiment with root seed s uses the seed drawn from
``numpy.random.SeedSequence(s, spawn_key=(r,))`` (the r-th child of ``SeedSequence(s)``), so
it depends on (s, r) alone. Every scenario reuses the same seeds: common random numbers make
scenario differences paired (docs/ODD.md §4, stochasticity).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kibs_mc.config import (
    EXPERIMENT,
    RUN,
    SIMULATION,
    Config,
    apply_values,
    compose_config,
    keys_of,
    load_config,
    to_config,
    with_numbers,
)
from kibs_mc.errors import ConfigError
from kibs_mc.run.chunk import Chunk
from kibs_mc.run.code import code_inputs

#: Upper bound on replicates per task when chosen automatically: keeps the work lost to a
#: dead worker small and the progress bar moving, while tasks stay far above Ray's overhead.
MAX_AUTO_CHUNK = 50


def replicate_seeds(root_seed: int, count: int, start: int = 0) -> np.ndarray:
    """64-bit seeds of replicates ``start .. start+count-1``."""
    return np.array(
        [
            np.random.SeedSequence(root_seed, spawn_key=(r,)).generate_state(1, np.uint64)[0]
            for r in range(start, start + count)
        ],
        dtype=np.uint64,
    )


@dataclass(frozen=True)
class Scenario:
    index: int
    name: str
    overrides: tuple[str, ...]
    config: Config
    #: Replicate r of this scenario is replicate ``first_replicate + r`` of the root seed's
    #: stream. 0 for every scenario of an experiment (common random numbers); a robustness
    #: experiment gives each world its own block, shared by the policies within it.
    first_replicate: int = 0


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


#: A scenario before composition: its name and its overrides (command-line syntax).
ScenarioSpec = tuple[str, Sequence[str]]


def listed_scenarios(config: Config) -> list[ScenarioSpec]:
    """The scenarios ``experiment.scenarios`` lists."""
    return [(s.name, list(s.overrides)) for s in config.experiment.scenarios]


#: Top-level keys common to every scenario of an experiment: the seeds, the counts, the executor
#: and the experiment-wide settings (``calibration.use``, the ``uncertainty`` space, the
#: ``robustness`` worlds) are the plan's; a scenario that set one would be run without it.
COMMON_KEYS = (*keys_of(EXPERIMENT), *keys_of(RUN))


def scenario_groups() -> list[str]:
    """The top-level keys a scenario may set: the groups that decide what its replicates
    compute (``model``, ``cluster``, ``governance``: the simulation keys)."""
    return list(keys_of(SIMULATION))


def _check_scenario_overrides(name: str, own_overrides: Sequence[str]) -> None:
    groups = scenario_groups()
    for text in own_overrides:
        top = _key(text).split(".")[0].split("@")[0].split("[")[0]
        if top not in groups:
            raise ConfigError(
                f"experiment.scenarios[{name}].overrides",
                text,
                f"allowed: {', '.join(groups)} settings; "
                + (
                    f"{top} is common to every scenario"
                    if top in COMMON_KEYS
                    else f"{top} is not one of them"
                )
                + " (set it on the command line or at the top of the experiment file)",
            )


def build_scenarios(
    config: Config, overrides: Sequence[str], specs: Sequence[ScenarioSpec] | None = None
) -> list[Scenario]:
    """Compose and validate every scenario: the invocation's overrides, then the scenario's.

    Args:
        specs: the scenarios (an experiment kind's :meth:`scenario_specs`); default: those
            ``experiment.scenarios`` lists.

    Raises ConfigError (naming the scenario's key) before any work starts, also for a scenario
    that sets a key common to every scenario (COMMON_KEYS).
    """
    base = [o for o in overrides if not _key(o).startswith("hydra.")]
    specs = listed_scenarios(config) if specs is None else specs
    for name, own_overrides in specs:
        _check_scenario_overrides(name, own_overrides)
    scenarios = []
    composed: dict[tuple[str, ...], Any] = {}  # group choices -> their composition (once each)
    for index, (name, own_overrides) in enumerate(specs):
        groups = tuple(o for o in own_overrides if "." not in _key(o))
        values = [o for o in own_overrides if "." in _key(o)]
        if not own_overrides:
            scenario_config = config
        elif values:
            # Values (e.g. sampled levers) merge into the composition of the group choices,
            # composed once per distinct set of choices, not once per scenario.
            if groups not in composed:
                own = {_key(o) for o in groups}
                cfg = compose_config([o for o in base if _key(o) not in own] + list(groups))
                composed[groups] = (cfg, to_config(cfg))
            cfg, typed = composed[groups]
            scenario_config = with_numbers(typed, values) or apply_values(cfg, values)
        else:
            own = {_key(o) for o in own_overrides}
            scenario_config = load_config([o for o in base if _key(o) not in own] + list(own_overrides))
        scenarios.append(Scenario(index, name, tuple(own_overrides), scenario_config))
    models = sorted({sc.config.model.name for sc in scenarios})
    if len(models) > 1:
        raise ConfigError(
            "experiment.scenarios",
            ", ".join(models),
            "allowed: scenarios of one model (their outcomes are compared column by "
            "column); run one experiment per model",
        )
    return scenarios


#: Driver seconds per task (Ray submit, wait and get, plus ingesting the rows): an upper bound
#: of what ``scripts/bench.py pipeline`` measures (docs/performance.md).
TASK_OVERHEAD_S = 0.001
#: Share of the driver's time that per-task work may take when every worker is busy.
DRIVER_SHARE = 0.05


def auto_chunk_size(
    replicates: int, scenarios: int, workers: int, replicate_seconds: float | None = None
) -> int:
    """At least four tasks per worker for load balance, at most MAX_AUTO_CHUNK replicates.

    With ``replicate_seconds`` (a measured replicate's duration) the cap rises as far as
    needed for the driver to keep up: W workers finishing a task of T seconds each send the
    driver W / T tasks per second, so its busy share is W * TASK_OVERHEAD_S / T, which must stay
    under DRIVER_SHARE. That matters for short replicates on large clusters (3 200 workers
    need tasks of at least 64 s); on a laptop the cap stays MAX_AUTO_CHUNK.
    """
    per_task = math.ceil(replicates * scenarios / (4 * max(1, workers)))
    cap = MAX_AUTO_CHUNK
    if replicate_seconds is not None and replicate_seconds > 0:
        min_task_seconds = max(1, workers) * TASK_OVERHEAD_S / DRIVER_SHARE
        cap = max(MAX_AUTO_CHUNK, math.ceil(min_task_seconds / replicate_seconds))
    return max(1, min(cap, per_task, replicates))


def simulation_inputs(config: Config) -> dict:
    """The part of a scenario's config that determines its replicates' results."""
    return {k: v for k, v in asdict(config).items() if k in keys_of(SIMULATION)}


def adaptive_settings(config: Config) -> dict | None:
    """The settings of the adaptive rule (precision or selection), which decide how many
    replicates each scenario runs (None: fixed counts)."""
    exp = config.experiment
    rules: dict = {}
    if exp.precision.outcome is not None:
        rules["precision"] = asdict(exp.precision)
    if exp.selection.outcome is not None:
        rules["selection"] = asdict(exp.selection)
    if not rules:
        return None
    rules["max_replicates"] = exp.max_replicates
    rules["baseline"] = exp.baseline  # effects and contrasts are taken against it
    return rules


def plan_inputs(config: Config, chunk_size: int) -> dict:
    """What the plan's fingerprint depends on, as flat ``dotted.key: value`` pairs (JSON
    values), recorded in plan.json so that a refused resume names what differs; the code that
    computes the results among them (``code:<module>``, :func:`kibs_mc.run.code.code_inputs`)."""
    flat: dict = {"replicates": config.replicates, "seed": config.seed, "executor.chunk_size": chunk_size}
    flat.update(code_inputs(config.model.name))

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            flat[prefix] = value

    data = asdict(config)
    for group, value in data.items():
        if group in keys_of(SIMULATION):
            walk(group, value)
    flat["experiment.kind"] = data["experiment"].get("kind")
    flat["experiment.scenarios"] = data["experiment"]["scenarios"]
    walk("experiment.sweep", data["experiment"].get("sweep", {}))
    rules = adaptive_settings(config) or {}
    for rule in ("precision", "selection"):
        if rule in rules:
            walk(f"experiment.{rule}", rules[rule])
        else:
            flat[f"experiment.{rule}.outcome"] = None
    if rules:
        flat["experiment.max_replicates"] = rules["max_replicates"]
        flat["experiment.baseline"] = rules["baseline"]
    return json.loads(json.dumps(flat, default=str))


@dataclass(frozen=True)
class Plan:
    scenarios: list[Scenario]
    replicates: int
    seed: int
    chunk_size: int
    #: adaptive_settings(config): they decide how many replicates run, so they are inputs.
    adaptive: dict | None = None

    def chunks(self, ranges: dict[int, tuple[int, int]] | None = None) -> Iterator[Chunk]:
        """Chunks interleaved across scenarios, so partial results cover every scenario.

        Args:
            ranges: scenario index -> replicates [start, stop) to run; default: every
                scenario's ``[0, replicates)``. Chunks are cut from ``start``, so a range that
                continues an earlier one (adaptive replicate counts) gives new chunk keys.
        """
        if ranges is None:
            ranges = {sc.index: (0, self.replicates) for sc in self.scenarios}
        if not ranges:
            return
        # Replicate numbers of the root seed's stream: a scenario's range moved by its block.
        first = {sc.index: sc.first_replicate for sc in self.scenarios}
        ranges = {i: (a + first[i], b + first[i]) for i, (a, b) in ranges.items()}
        seeds = {}
        for block in sorted({first[i] for i in ranges}):
            low = min(a for i, (a, _) in ranges.items() if first[i] == block)
            high = max(b for i, (_, b) in ranges.items() if first[i] == block)
            seeds[block] = (low, replicate_seeds(self.seed, high - low, start=low))
        cuts = {i: range(a, b, self.chunk_size) for i, (a, b) in ranges.items()}
        for position in range(max(len(c) for c in cuts.values())):
            for sc in self.scenarios:
                if sc.index not in cuts or position >= len(cuts[sc.index]):
                    continue
                start = cuts[sc.index][position]
                stop = min(start + self.chunk_size, ranges[sc.index][1])
                reps = np.arange(start, stop, dtype=np.int64)
                low, block_seeds = seeds[sc.first_replicate]
                yield Chunk(sc.index, sc.name, sc.config, reps, block_seeds[start - low : stop - low])

    def fingerprint(self) -> str:
        """Hash of everything that determines the results and the chunk boundaries: the
        settings and the code that computes the replicates (:mod:`kibs_mc.run.code`)."""
        payload = {
            "code": code_inputs(self.scenarios[0].config.model.name),
            "replicates": self.replicates,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "scenarios": [
                (s.name, simulation_inputs(s.config)) + ((s.first_replicate,) if s.first_replicate else ())
                for s in self.scenarios
            ],
        }
        if self.adaptive is not None:  # absent otherwise: fixed-count plans keep their hash
            payload["adaptive"] = self.adaptive
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
