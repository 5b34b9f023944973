"""``experiment.kind=sweep``: scenarios sampled over factors (``experiment.sweep``), after the
listed ones, and global sensitivity indices of the scenario means (``lever_sweep``).

A Sobol sweep with ``experiment.sweep.max_samples`` runs in rounds: the first ``samples`` base
samples, then twice as many (keeping every point already run: the samples are nested), until
the indices of the watched outcome are precise (``experiment.sweep.tolerance``) or the cap.

The factors are ``experiment.sweep.factors``, the parameters of the uncertainty space
(``uncertainty=<name>``, ``conf/uncertainty``) with ``experiment.sweep.factors_from=uncertainty``,
or both (``factors_from=both``); each is sampled on its scale (linear, log, integer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from kibs_mc.analysis.plots import convergence_plot, sensitivity_plot, sweep_plot
from kibs_mc.analysis.sensitivity import (
    index_warnings,
    planned_samples,
    point_scenarios,
    points_frame,
    points_per_sample,
    precise,
    report_section,
    run_samples,
    sensitivity,
    sobol_convergence,
)
from kibs_mc.config import Config, SweepConfig, SweepFactor
from kibs_mc.errors import ConfigError
from kibs_mc.experiments.kind import ExperimentKind, Finished, KindOutput
from kibs_mc.experiments.robustness import check_parameter
from kibs_mc.experiments.rounds import Round, Rounds, Rows
from kibs_mc.models import get_model, headline
from kibs_mc.run.adaptive import reached_rows
from kibs_mc.run.plan import Scenario, ScenarioSpec
from kibs_mc.run.store import write_parquet


def watched_outcome(config: Config) -> str:
    """The outcome whose indices decide when a doubling sweep stops: the first numeric
    headline outcome of the model."""
    model = get_model(config.model.name)
    numeric = [o for o in headline(model) if model.outcomes[o] is not bool]
    return (numeric or list(model.outcomes))[0]


def sweep_of(config: Config) -> SweepConfig:
    """``experiment.sweep`` with its factors resolved: the listed ``factors``, the uncertainty
    space's parameters (``factors_from=uncertainty``), or the listed ones then the space's
    (``both``); each keeps its range, scale and integer flag."""
    sweep = config.experiment.sweep
    if sweep.factors_from == "factors":
        return sweep
    space = [
        SweepFactor(key=p.key, low=p.low, high=p.high, scale=p.scale, integer=p.integer, why=p.why)
        for p in config.uncertainty.parameters
    ]
    listed = list(sweep.factors) if sweep.factors_from == "both" else []
    return dataclasses.replace(sweep, factors=[*listed, *space])


def _factor_paths(config: Config) -> list[str]:
    """Where each factor of :func:`sweep_of` is declared, for error messages."""
    sweep = config.experiment.sweep
    listed = [f"experiment.sweep.factors[{i}]" for i in range(len(sweep.factors))]
    space = [f"uncertainty.parameters[{i}]" for i in range(len(config.uncertainty.parameters))]
    return {"factors": listed, "uncertainty": space, "both": [*listed, *space]}[sweep.factors_from]


def _figures(
    finished: Finished,
    points: pl.DataFrame,
    ran: set,
    indices: pl.DataFrame,
    convergence: pl.DataFrame,
    shown: list,
) -> list[Path | None]:
    """The sweep's figures: the points that ran, the Sobol indices and their convergence."""
    sweep, run_dir = sweep_of(finished.config), finished.run_dir
    figures = []
    if points.height:
        log_factors = [f.key for f in sweep.factors if f.scale == "log"]
        figures.append(
            sweep_plot(
                finished.rows,
                points.filter(pl.col("scenario").is_in(ran)),
                shown[:4],
                run_dir / "sweep.png",
                log_factors=log_factors,
            )
        )
    figures.append(sensitivity_plot(indices, run_dir / "sensitivity.png"))
    if convergence.height:
        figures.append(convergence_plot(convergence, run_dir / "sensitivity_convergence.png"))
    return figures


class Sweep(ExperimentKind):
    name = "sweep"
    requires = ("SALib",)

    def check(self, config: Config) -> None:
        sweep, space = config.experiment.sweep, config.uncertainty
        if sweep.method is None:
            raise ConfigError(
                "experiment.sweep.method",
                None,
                "allowed: one of 'sobol', 'lhs', 'grid' with experiment.kind=sweep",
            )
        if sweep.factors_from == "factors" and space.parameters:
            raise ConfigError(
                "experiment.sweep.factors_from",
                sweep.factors_from,
                f"allowed: 'uncertainty' or 'both' with uncertainty={space.name} (its "
                "parameters are swept only then), or no uncertainty space",
            )
        if sweep.factors_from != "factors":
            if space.posterior is not None:
                raise ConfigError(
                    "uncertainty.posterior",
                    space.posterior,
                    "allowed: null with experiment.kind=sweep (factors are sampled "
                    "independently over ranges; a posterior's worlds: experiment=robustness)",
                )
            if not space.parameters:
                raise ConfigError(
                    "uncertainty.parameters",
                    [],
                    f"allowed: at least one parameter with experiment.sweep.factors_from="
                    f"{sweep.factors_from} (choose a space, e.g. uncertainty=default; "
                    "conf/uncertainty/)",
                )
        if sweep.factors_from == "both":
            for p in space.parameters:
                if p.key in {f.key for f in sweep.factors}:
                    raise ConfigError(
                        "uncertainty.parameters",
                        p.key,
                        "allowed: keys not already in "
                        "experiment.sweep.factors with factors_from=both (each key once)",
                    )
        resolved = sweep_of(config)
        for path, factor in zip(_factor_paths(config), resolved.factors, strict=True):
            check_parameter(config, path, factor)

    def scenario_specs(self, config: Config, overrides: Sequence[str]) -> list[ScenarioSpec]:
        return super().scenario_specs(config, overrides) + point_scenarios(sweep_of(config), config.seed)

    def rounds(self, config: Config, scenarios: Sequence[Scenario]) -> Rounds:
        sweep = sweep_of(config)
        if sweep.method == "sobol" and planned_samples(sweep) > sweep.samples:
            return SobolRounds(config, sweep, tuple(scenarios))
        return super().rounds(config, scenarios)

    def analyse(self, finished: Finished) -> KindOutput:
        config, rows = finished.config, finished.rows
        sweep = sweep_of(config)
        ran = set(rows["scenario"].unique().to_list()) if rows.height else set()
        points = points_frame(sweep, config.seed)
        counts = (
            rows.group_by("scenario").len(name="replicates")
            if rows.height
            else pl.DataFrame(schema={"scenario": pl.String, "replicates": pl.UInt32})
        )
        points = points.join(counts, on="scenario", how="left").with_columns(
            pl.col("replicates").fill_null(0).cast(pl.Int64)
        )
        write_parquet(points, finished.run_dir / "points.parquet")
        numeric = [o for o in finished.outcomes if rows.height and rows.schema[o] != pl.Boolean]
        indices = sensitivity(rows, sweep, config.seed, numeric)
        write_parquet(indices, finished.run_dir / "sensitivity.parquet")
        shown = [o for o in finished.headline if o in numeric] or numeric
        convergence = sobol_convergence(rows, sweep, config.seed, shown[:4])
        if convergence.height:
            write_parquet(convergence, finished.run_dir / "sensitivity_convergence.parquet")
        figures = []
        if config.figures:
            figures = _figures(finished, points, ran, indices, convergence, shown)
        warnings = index_warnings(indices, shown[:4])
        section = (
            report_section(indices, finished.headline, warnings=warnings, factors=sweep.factors)
            if indices.height
            else ""
        )
        notes = [
            f"`{r['outcome']}` <- `{r['factor']}`: S1 {r['S1']:.2f} ± {r['S1_conf']:.2f}"
            + (f", ST {r['ST']:.2f} ± {r['ST_conf']:.2f}" if r["ST"] is not None else "")
            + f" (N = {r['samples']})"
            for r in indices.filter(pl.col("outcome").is_in(shown[:2])).iter_rows(named=True)
        ]
        notes += [f"warning: {w}" for w in warnings]
        unlisted = set(points["scenario"].to_list())
        return KindOutput(
            figures=[f for f in figures if f is not None],
            sections=[section] if section else [],
            unlisted=unlisted,
            notes=notes,
            lines=[
                f"{len(unlisted)} sampled sweep points: see sweep.png, sensitivity.png and "
                "sensitivity.parquet in the run directory"
            ]
            if unlisted
            else [],
        )


@dataclass(frozen=True)
class SobolRounds:
    """A Sobol sweep that doubles its base sample (``samples``, 2 ``samples``, ... up to
    ``max_samples``, keeping every point run: the samples are nested) until the indices of the
    watched outcome are precise (``experiment.sweep.tolerance``)."""

    config: Config
    sweep: SweepConfig
    scenarios: tuple[Scenario, ...]

    def _upto(self, samples: int) -> dict[int, int]:
        """``replicates`` for the listed scenarios and the points of ``samples`` base samples."""
        upto = len(self.config.experiment.scenarios) + samples * points_per_sample(self.sweep)
        return {
            sc.index: self.config.replicates if position < upto else 0
            for position, sc in enumerate(self.scenarios)
        }

    def first(self) -> dict[int, int]:
        return self._upto(self.sweep.samples)

    def after(self, rows: Rows, counts: Mapping[int, int]) -> Round:
        sweep, outcome = self.sweep, watched_outcome(self.config)
        reached = reached_rows(rows(), self.scenarios, dict(counts))
        n = run_samples(reached, sweep, self.config.seed)
        indices = sensitivity(reached, sweep, self.config.seed, [outcome], n)
        if precise(indices, outcome, sweep.tolerance):
            return Round(
                dict(counts),
                [
                    f"Sobol indices of `{outcome}` precise at N = {n} base samples "
                    f"({n * points_per_sample(sweep)} points): every S1 and ST 95% CI "
                    f"half-width <= {sweep.tolerance:g} and the factors ranked by ST."
                ],
            )
        if n >= planned_samples(sweep):
            confs = [*indices["S1_conf"].to_list(), *indices["ST_conf"].to_list()]
            widest = max(confs) if confs else float("nan")
            return Round(
                dict(counts),
                [
                    f"Sobol indices of `{outcome}` stopped at "
                    f"experiment.sweep.max_samples = {n} base samples, not yet precise "
                    f"(widest 95% CI half-width {widest:.2f} > {sweep.tolerance:g})."
                ],
            )
        wanted = self._upto(2 * n)
        return Round({i: max(counts[i], wanted[i]) for i in counts})
