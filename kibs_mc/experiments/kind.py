"""The contract of an experiment kind: which scenarios it runs, and what it adds to the
analysis and the report of every experiment (summary, paired effects, figures, MLflow).

A kind is chosen with ``experiment.kind``; adding one is a module with a subclass of
:class:`ExperimentKind` and one line in :data:`kibs_mc.experiments.KINDS`
(docs/architecture.md, "Adding an experiment kind").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import polars as pl
from rich.console import Console

from kibs_mc.config import SIMULATION, Config, keys_of
from kibs_mc.experiments.posterior import point_overrides, point_values, posterior_point
from kibs_mc.experiments.rounds import OneRound, Round, Rounds
from kibs_mc.run.executor import Executor
from kibs_mc.run.plan import Scenario, ScenarioSpec, listed_scenarios

__all__ = [
    "ExperimentKind",
    "ExperimentResult",
    "Finished",
    "KindOutput",
    "Round",
    "Rounds",
    "name_unnamed",
    "overrides_name",
]

#: The name of a scenario that ``conf/experiment/single.yaml`` leaves to the command line.
UNNAMED = "default"


def overrides_name(overrides: Sequence[str]) -> str:
    """A scenario's name from the command line's overrides of what it simulates (the
    simulation keys), e.g. ``governance=information governance.information=0.5``; ``default``
    without any."""
    simulated = keys_of(SIMULATION)
    kept = [o for o in overrides if re.split(r"[.@/\[]", o.lstrip("+~").partition("=")[0])[0] in simulated]
    return " ".join(kept) or UNNAMED


def name_unnamed(specs: Sequence[ScenarioSpec], overrides: Sequence[str]) -> list[ScenarioSpec]:
    """The scenarios with the unnamed one (``default`` without overrides of its own, as in
    ``single``) named after the invocation's overrides: the three jobs of ``kibs-mc -m
    governance.information=0,0.5,1`` are then told apart in every table and in MLflow."""
    return [(overrides_name(overrides) if name == UNNAMED and not own else name, own) for name, own in specs]


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
    scenarios that are not listed one by one in tables and per-scenario figures. A kind that
    runs itself (:attr:`ExperimentKind.runs_itself`) also gives what the pipeline reports for
    it: the result's ``rows``, the report's ``title`` and executive ``summary``, and the
    MLflow ``metrics`` and ``steps``."""

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
    #: The executive summary's bullets (Markdown) of a kind that decides without the
    #: pipeline's findings; None: the findings', else the kind's ``lines``.
    summary: list[str] | None = None
    rows: pl.DataFrame | None = None  # the result's rows (a kind that runs itself)
    title: str = ""  # what the report's title says the experiment is (a kind that runs itself)
    metrics: dict[str, float] = field(default_factory=dict)  # MLflow metrics of the parent run
    steps: dict[str, list[float]] = field(default_factory=dict)  # MLflow metrics by step


#: An empty table, for what an experiment does not have.
NO_TABLE = pl.DataFrame()


@dataclass(kw_only=True)
class ExperimentResult:
    """What an experiment leaves, for the terminal and the caller (files are in ``run_dir``).

    ``tables`` holds the tables the experiment has, by name: ``summary`` (per scenario and
    outcome), ``effects`` (paired, against the baseline), ``contrasts`` (every pair of listed
    scenarios), ``ranks`` (each listed scenario's rank with its confidence set), ``selection``
    (KN's candidates) and ``failed`` (replicates that raised); each is also an attribute (None
    where absent; ``summary`` empty)."""

    run_dir: Path
    rows: pl.DataFrame
    scenarios: list[Scenario] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # the model's headline outcomes, in order
    tables: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    computed_chunks: int = 0
    reused_chunks: int = 0
    baseline: str | None = None
    report: Path | None = None
    notes: list[str] = field(default_factory=list)  # e.g. adaptive stopping per scenario
    sampled: list[str] = field(default_factory=list)  # scenarios not listed one by one (sweep points)
    lines: list[str] = field(default_factory=list)  # the kind's own lines for the terminal
    mlflow_run_id: str | None = None

    @property
    def summary(self) -> pl.DataFrame:
        return self.tables.get("summary", NO_TABLE)

    @property
    def effects(self) -> pl.DataFrame | None:
        return self.tables.get("effects")

    @property
    def contrasts(self) -> pl.DataFrame | None:
        return self.tables.get("contrasts")

    @property
    def ranks(self) -> pl.DataFrame | None:
        return self.tables.get("ranks")

    @property
    def selection(self) -> pl.DataFrame | None:
        return self.tables.get("selection")

    @property
    def failed(self) -> pl.DataFrame | None:
        return self.tables.get("failed")


class ExperimentKind:
    """Base kind: runs the scenarios ``experiment.scenarios`` lists and adds nothing.

    Call order (``kibs_mc.experiments.pipeline``): :meth:`check` before any work,
    :meth:`prepare` (the configuration the scenarios start from), :meth:`scenario_specs` and
    :meth:`first_replicates` to plan, :meth:`rounds` for what to run next, :meth:`baselines`
    to pair scenarios for the effects, then after the replicates have run and the summary and
    paired effects are written, :meth:`analyse` and :meth:`parameters` (for the report).
    """

    name = "compare"
    #: True for a kind that is no plan of scenarios and runs itself (:meth:`run`).
    runs_itself: ClassVar[bool] = False
    #: The modules this kind needs beyond the default install (the extra named after the kind).
    requires: ClassVar[tuple[str, ...]] = ()

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

    def prepare(self, config: Config, overrides: Sequence[str]) -> tuple[Config, list[str]]:
        """The configuration and overrides the scenarios are composed from: with
        ``calibration.use``, a finished calibration's posterior point set on them."""
        return posterior_point(config, overrides)

    def scenario_specs(self, config: Config, overrides: Sequence[str]) -> list[ScenarioSpec]:
        """The scenarios to run, before composition: ``experiment.scenarios``, the unnamed one
        named after the invocation's ``overrides`` (:func:`name_unnamed`; not after the
        calibrated values :meth:`prepare` set)."""
        calibrated = set(point_overrides(config))
        return name_unnamed(listed_scenarios(config), [o for o in overrides if o not in calibrated])

    def rounds(self, config: Config, scenarios: Sequence[Scenario]) -> Rounds:
        """What to run next (:mod:`kibs_mc.experiments.rounds`) when no adaptive rule of the
        experiment decides: one round of ``replicates`` each by default."""
        return OneRound({sc.index: config.replicates for sc in scenarios})

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

    def parameters(self, config: Config) -> str | None:
        """Where the parameter values of the experiment come from, in words for the report's
        executive summary; None where the kind varies or fits them itself."""
        _, source = point_values(config)
        if source is None:
            return None
        return f"the posterior {config.calibration.point} of {source} (`calibration.use`)"

    def calibrated(self, config: Config) -> bool:
        """Whether the run starts from a calibration's posterior (else from hand-set values,
        and its answer is conditional on them)."""
        return point_values(config)[1] is not None

    def run(
        self, config: Config, overrides: Sequence[str], run_dir: Path, executor: Executor, console: Console
    ) -> KindOutput:
        """A kind that runs itself (:attr:`runs_itself`: no fixed plan of scenarios, e.g.
        ``calibrate``'s ABC-SMC generations) runs here on the pipeline's ``executor``, writes its
        own files into ``run_dir`` and says what it found; the pipeline writes the resolved
        configuration, the report, the MLflow record and the result."""
        raise NotImplementedError(f"experiment.kind={self.name} is a plan of scenarios, not run by itself")
