"""``experiment.kind=sweep``: scenarios sampled over factors (``experiment.sweep``), after the
listed ones, and global sensitivity indices of the scenario means (``lever_sweep``)."""

from __future__ import annotations

import polars as pl

from kibs_mc.analysis.plots import sensitivity_plot, sweep_plot
from kibs_mc.analysis.sensitivity import point_scenarios, points_frame, report_section, sensitivity
from kibs_mc.config import Config
from kibs_mc.errors import ConfigError
from kibs_mc.experiments.kind import ExperimentKind, Finished, KindOutput
from kibs_mc.run.plan import ScenarioSpec, listed_scenarios
from kibs_mc.run.store import write_parquet


class Sweep(ExperimentKind):
    name = "sweep"

    def check(self, config: Config) -> None:
        if config.experiment.sweep.method is None:
            raise ConfigError("experiment.sweep.method", None,
                              "allowed: one of 'sobol', 'lhs', 'grid' with experiment.kind=sweep")

    def scenario_specs(self, config: Config) -> list[ScenarioSpec]:
        return listed_scenarios(config) + point_scenarios(config.experiment.sweep, config.seed)

    def analyse(self, finished: Finished) -> KindOutput:
        config, rows = finished.config, finished.rows
        sweep = config.experiment.sweep
        points = points_frame(sweep, config.seed)
        numeric = [o for o in finished.outcomes if rows.height and rows.schema[o] != pl.Boolean]
        indices = sensitivity(rows, sweep, config.seed, numeric)
        write_parquet(indices, finished.run_dir / "sensitivity.parquet")
        figures = []
        if points.height:
            shown = [o for o in finished.headline if o in numeric] or numeric
            figures.append(sweep_plot(rows, points, shown[:4], finished.run_dir / "sweep.png"))
        figures.append(sensitivity_plot(indices, finished.run_dir / "sensitivity.png"))
        section = report_section(indices, finished.headline) if indices.height else ""
        return KindOutput(figures=[f for f in figures if f is not None],
                          sections=[section] if section else [],
                          unlisted=set(points["scenario"].to_list()))
