"""The contract of an experiment kind: which scenarios it runs, and what it adds to the
analysis and the report of every experiment (summary, paired effects, figures, MLflow).

A kind is chosen with ``experiment.kind``; adding one is a module with a subclass of
:class:`ExperimentKind` and one line in :data:`kibs_mc.experiments.KINDS`
(docs/architecture.md, "Adding an experiment kind").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from kibs_mc.config import Config
from kibs_mc.run.plan import Scenario, ScenarioSpec, listed_scenarios


@dataclass(frozen=True)
class Finished:
    """A finished run as the kinds see it: every replicate row, and where to write."""

    config: Config
    run_dir: Path
    rows: pl.DataFrame
    outcomes: Sequence[str]  # every outcome column of the model
    headline: Sequence[str]  # the model's headline outcomes, in order
    effects: pl.DataFrame | None = None  # paired effects, each scenario against its baseline


@dataclass
class KindOutput:
    """What a kind adds: files and figures it wrote, report sections (Markdown), and the
    scenarios that are not listed one by one in tables and per-scenario figures."""

    figures: list[Path] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    unlisted: set[str] = field(default_factory=set)
    #: MLflow child runs that replace the one-per-scenario children (e.g. one per policy of a
    #: robustness experiment instead of one per world x policy): each a dict with ``name``,
    #: ``params`` and ``metrics``. None: one child per scenario.
    children: list[dict] | None = None
    #: Lines the terminal prints after the tables (e.g. where a robustness answer flips).
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed by the terminal and in the report


@dataclass(frozen=True)
class Round:
    """A kind's next round of replicates: each scenario's target count, and notes for the
    report once it decides to stop (targets no higher than the counts reached)."""

    targets: dict[int, int]
    notes: list[str] = field(default_factory=list)


class ExperimentKind:
    """Base kind: runs the scenarios ``experiment.scenarios`` lists and adds nothing.

    Call order (``kibs_mc.experiments.pipeline``): :meth:`check` before any work,
    :meth:`scenario_specs` and :meth:`first_replicates` to plan, :meth:`baselines` to pair
    scenarios for the effects, then after the replicates have run and the summary and paired
    effects are written, :meth:`analyse`.
    """

    name = "compare"

    def check(self, config: Config) -> None:
        """Refuse settings this kind cannot run (ConfigError, exit 2)."""
        if config.experiment.sweep.method is not None:
            from kibs_mc.errors import ConfigError

            raise ConfigError(
                "experiment.sweep.method",
                config.experiment.sweep.method,
                f"allowed: null with experiment.kind={self.name} (sampled scenarios "
                "need experiment.kind=sweep)",
            )

    def scenario_specs(self, config: Config) -> list[ScenarioSpec]:
        """The scenarios to run, before composition."""
        return listed_scenarios(config)

    def first_targets(self, config: Config, scenarios: Sequence[Scenario]) -> dict[int, int]:
        """Replicates each scenario runs in the first round (default: ``replicates`` each)."""
        return {sc.index: config.replicates for sc in scenarios}

    def next_round(
        self, config: Config, rows: pl.DataFrame, scenarios: Sequence[Scenario], counts: dict[int, int]
    ) -> Round | None:
        """After a round: the next one, or None when the kind runs a single round. ``rows``
        holds only the replicates each scenario had reached (``counts``), so a resumed run
        takes the same decisions."""
        return None

    def first_replicates(self, config: Config, specs: Sequence[ScenarioSpec]) -> list[int]:
        """Each scenario's first replicate number in the root seed's stream: 0 for all (every
        scenario reuses the same seeds: common random numbers)."""
        return [0] * len(specs)

    def baselines(self, config: Config, names: Sequence[str]) -> dict[str, str]:
        """The scenario each scenario's paired effects are measured against (scenarios that
        share seeds): ``experiment.baseline``, else ``baseline``, else the first, for all."""
        from kibs_mc.analysis.effects import choose_baseline

        baseline = choose_baseline(names, config.experiment.baseline)
        return {name: baseline for name in names}

    def analyse(self, finished: Finished) -> KindOutput:
        """Analysis beyond the summary and the paired effects."""
        return KindOutput()

    def run(self, config: Config, overrides: Sequence[str], run_dir: Path, console: Any) -> Any:
        """A kind that is no fixed plan of scenarios (``calibrate``: ABC-SMC generations) runs
        itself here and returns its ``ExperimentResult``; None (the default): the pipeline
        plans, executes and analyses the kind's scenarios."""
        return None
