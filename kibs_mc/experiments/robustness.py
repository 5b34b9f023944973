"""``experiment.kind=robustness``: which policy is best across uncertain worlds, how much one
regrets each, and where in the uncertainty space the answer flips (``docs/robustness.md``).

Worlds are points of the uncertainty space (``uncertainty``: ``conf/uncertainty/*.yaml``)
drawn with ``scipy.stats.qmc``, or particles of a calibration's weighted posterior
(``uncertainty=posterior uncertainty.posterior=<calibration run dir>``); each is crossed with
the experiment's scenarios (the policies, e.g. the six governance settings), and each (world,
policy) is one scenario of the ordinary plan, so chunks, executors, resume and the result files
are those of every experiment. The policies of a world share their seeds (common random
numbers: paired comparisons within a world); world w uses the replicates [w R, (w + 1) R) of
the root seed's stream, so worlds are independent, and world 0 of a one-world run uses exactly
the seeds of ``compare_governance``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kibs_mc.analysis import robustness as rb
from kibs_mc.analysis.effects import choose_baseline
from kibs_mc.analysis.report import Across, across_summary, markdown_table, most_often_best
from kibs_mc.analysis.voi import voi_table
from kibs_mc.config import SIMULATION, Config, UncertainParameter, UncertaintyConfig, keys_of, replace_number
from kibs_mc.errors import ConfigError
from kibs_mc.experiments.kind import ExperimentKind, Finished, KindOutput
from kibs_mc.experiments.posterior import point_values
from kibs_mc.fields import validate
from kibs_mc.models import get_model
from kibs_mc.run import calibrated, shipped
from kibs_mc.run.plan import ScenarioSpec, listed_scenarios
from kibs_mc.run.store import write_parquet


@dataclass(frozen=True)
class Posterior:
    """The calibration the worlds draw from (``uncertainty.posterior``)."""

    parameters: list[UncertainParameter]  # the calibrated parameters, with their priors
    particles: pl.DataFrame  # the last generation: one column per parameter and ``weight``
    identified: dict[str, bool]  # whether the targets identify each (else drawn over its prior)
    words: str  # where it comes from, in words

    @property
    def drawn(self) -> list[UncertainParameter]:
        """The identified parameters: drawn jointly from the particles."""
        return [p for p in self.parameters if self.identified.get(p.key, True)]

    @property
    def unidentified(self) -> list[UncertainParameter]:
        """The parameters the targets do not identify: drawn over their priors."""
        return [p for p in self.parameters if not self.identified.get(p.key, True)]


def _identified(run_dir: str, keys: Sequence[str]) -> dict[str, bool]:
    """A calibration's identification flags (``calibration.json`` ``identified``; a calibration
    that does not record them: every parameter identified)."""
    try:
        saved = json.loads((Path(run_dir).expanduser() / calibrated.POINT_FILE).read_text()).get("identified")
    except (OSError, ValueError, AttributeError):
        saved = None
    saved = saved if isinstance(saved, dict) else {}
    return {k: saved.get(k) is not False for k in keys}


def read_posterior(config: Config) -> Posterior:
    """The posterior ``uncertainty.posterior`` names: ``shipped`` (the shipped posterior of the
    run's cluster preset, :mod:`kibs_mc.run.shipped`) or a finished calibration's run directory
    (its calibrated parameters and priors, from its ``config.yaml``, and the last generation of
    ``posterior.parquet``); every value checked, a ConfigError naming ``uncertainty.posterior``
    or the file otherwise."""
    source = str(config.uncertainty.posterior)
    if source == shipped.SHIPPED:
        found, why = shipped.usable(config)
        if found is None:
            raise ConfigError(
                "uncertainty.posterior",
                source,
                f"allowed: a usable shipped posterior ({why}) or a calibration's run directory",
            )
        return Posterior(found.parameters, found.particles, found.identified, found.words())
    parameters, last = calibrated.read_posterior(source)
    identified = _identified(source, [p.key for p in parameters])
    return Posterior(parameters, last, identified, f"the calibration in `{source}`")


def space_of(config: Config) -> UncertaintyConfig:
    """Every parameter the worlds vary, in the order of ``worlds.parquet``: with
    ``uncertainty.posterior``, the calibrated parameters (with their priors) and then the
    ranges of ``uncertainty.parameters`` that the calibration does not cover; without, the
    ranges."""
    space = config.uncertainty
    if space.posterior is None:
        return space
    posterior = read_posterior(config)
    calibrated_keys = {p.key for p in posterior.parameters}
    ranged = [p for p in space.parameters if p.key not in calibrated_keys]
    return UncertaintyConfig(
        name=space.name, parameters=[*posterior.parameters, *ranged], posterior=space.posterior
    )


def _format(value: float, integer: bool) -> str:
    """A world's value as an override: exact (repr round-trips a float), whole for integers."""
    return str(int(value)) if integer else repr(float(value))


def check_parameter(config: Config, path: str, p: Any, set_by_policies: Collection[str] = ()) -> None:
    """The key names a number the simulation reads, no policy sets it, and both ends of its
    range are allowed (ConfigError naming ``path``; the sweep checks its factors with it too)."""
    top = p.key.partition(".")[0].partition("[")[0]
    inputs = list(keys_of(SIMULATION))
    if top not in inputs:
        raise ConfigError(
            f"{path}.key", p.key, "allowed: a numeric key of the simulation, under " + ", ".join(inputs)
        )
    if p.key in set_by_policies:
        raise ConfigError(
            f"{path}.key",
            p.key,
            "allowed: a key that no policy sets (a policy's own value would be overwritten in every world)",
        )
    for end in ("low", "high"):
        value = getattr(p, end)
        try:
            validate(replace_number(config, p.key, value))
        except KeyError as missing:
            raise ConfigError(
                f"{path}.key",
                p.key,
                f"'{missing.args[0]}' is not a known key (list elements are written key[i])",
            ) from None
        except TypeError:
            raise ConfigError(f"{path}.key", p.key, "allowed: a key whose value is a number") from None
        except ConfigError as error:
            raise ConfigError(
                f"{path}.{end}", value, f"allowed for {p.key}: " + error.allowed.removeprefix("allowed: ")
            ) from None


class Robustness(ExperimentKind):
    name = "robustness"
    requires = ("ema_workbench",)

    # -- before any work
    def check(self, config: Config) -> None:
        super().check(config)
        space = self._checked_space(config)
        policies = listed_scenarios(config)
        if len(policies) < 2:
            raise ConfigError(
                "experiment.scenarios",
                [n for n, _ in policies],
                "allowed: at least two policies to compare with experiment.kind=robustness",
            )
        self._check_objective(config)
        set_by_policies = {o.partition("=")[0] for _, own in policies for o in own}
        listed = [p.key for p in config.uncertainty.parameters]
        for p in space.parameters:
            where = (
                f"uncertainty.parameters[{listed.index(p.key)}]"
                if p.key in listed
                else "uncertainty.posterior"
            )
            check_parameter(config, where, p, set_by_policies)

    @staticmethod
    def _checked_space(config: Config) -> UncertaintyConfig:
        """The worlds' space (a calibration's with ``uncertainty.posterior``), refusing an
        adaptive replicate rule and a space without parameters."""
        space = config.uncertainty
        if space.posterior is not None:
            space = space_of(config)
        for rule in ("precision", "selection"):
            outcome = getattr(config.experiment, rule).outcome
            if outcome is not None:
                raise ConfigError(
                    f"experiment.{rule}.outcome",
                    outcome,
                    "allowed: null with experiment.kind=robustness (every world x policy "
                    "runs `replicates` replicates)",
                )
        if not space.parameters and space.name == "posterior":  # conf/uncertainty/posterior.yaml
            raise ConfigError(
                "uncertainty.posterior",
                None,
                "allowed: a finished experiment=calibrate run directory (uncertainty.posterior=<run dir>)",
            )
        if not space.parameters:
            raise ConfigError(
                "uncertainty.parameters",
                [],
                "allowed: at least one uncertain parameter "
                "(choose a space, e.g. uncertainty=default; conf/uncertainty/; or "
                "uncertainty=posterior uncertainty.posterior=<calibration run dir>)",
            )
        return space

    @staticmethod
    def _check_objective(config: Config) -> None:
        """The objective and its cost are outcomes of the model."""
        outcomes = get_model(config.model.name).outcomes
        objective = config.robustness.objective
        if objective.outcome not in outcomes:
            raise ConfigError(
                "robustness.objective.outcome", objective.outcome, "allowed: one of " + ", ".join(outcomes)
            )
        if objective.per_money and objective.cost not in outcomes:
            raise ConfigError(
                "robustness.objective.cost",
                objective.cost,
                "allowed: one of " + ", ".join(outcomes) + " (or robustness.objective.per_money=false)",
            )

    # -- the plan
    def worlds(self, config: Config) -> pl.DataFrame:
        """worlds.parquet: the sampled worlds (deterministic in the config and seed)."""
        rob = config.robustness
        if config.uncertainty.posterior is None:
            values = rb.sample_worlds(config.uncertainty, rob.worlds, rob.sampler, config.seed)
            return rb.worlds_frame(config.uncertainty, values)
        # the identified calibrated parameters from the particles (jointly); the unidentified
        # ones over their priors and the ranges over theirs, on one design
        posterior, space = read_posterior(config), space_of(config)
        drawn = [p.key for p in posterior.drawn]
        columns: dict[str, np.ndarray] = {}
        if drawn:
            values = rb.sample_posterior(posterior.particles, drawn, rob.worlds, config.seed)
            columns.update(zip(drawn, values.T, strict=True))
        ranged = [p for p in space.parameters if p.key not in columns]
        if ranged:
            values = rb.sample_worlds(
                UncertaintyConfig(parameters=ranged), rob.worlds, rob.sampler, config.seed
            )
            columns.update(zip([p.key for p in ranged], values.T, strict=True))
        return rb.worlds_frame(space, np.column_stack([columns[p.key] for p in space.parameters]))

    def scenario_specs(self, config: Config, overrides: Sequence[str]) -> list[ScenarioSpec]:
        worlds = self.worlds(config)
        params = space_of(config).parameters
        policies = listed_scenarios(config)
        specs: list[ScenarioSpec] = []
        for row in worlds.iter_rows(named=True):
            values = [f"{p.key}={_format(row[p.key], p.integer)}" for p in params]
            for name, own in policies:
                specs.append((self.scenario_name(config, row["world"], name), [*own, *values]))
        return specs

    @staticmethod
    def scenario_name(config: Config, world: int, policy: str) -> str:
        return f"w{world:0{len(str(config.robustness.worlds - 1))}d}/{policy}"

    def first_replicates(self, config: Config, specs: Sequence[ScenarioSpec]) -> list[int]:
        count = len(config.experiment.scenarios)
        return [(i // count) * config.replicates for i in range(len(specs))]

    def baselines(self, config: Config, names: Sequence[str]) -> dict[str, str]:
        policies = [s.name for s in config.experiment.scenarios]
        base = choose_baseline(policies, config.experiment.baseline)
        return {name: name.rpartition("/")[0] + "/" + base for name in names}

    # -- after the run
    def analyse(self, finished: Finished) -> KindOutput:
        config, run_dir = finished.config, finished.run_dir
        rob = config.robustness
        objective = rob.objective
        policies = [s.name for s in config.experiment.scenarios]
        baseline_name = choose_baseline(policies, config.experiment.baseline)
        baseline = policies.index(baseline_name)
        worlds = self.worlds(config)
        write_parquet(worlds, run_dir / "worlds.parquet")
        data = self._arrays(config, finished.rows, worlds, policies)
        scoring = rb.Scoring(baseline, objective.per_money, objective.direction == "max", rob.satisfice)
        table = rb.robustness_table(data, scoring, config.seed, samples=rob.bootstrap)
        write_parquet(table, run_dir / "robustness.parquet")
        per_world = rb.per_world_table(data, scoring, config.seed, samples=rob.bootstrap)
        assert finished.effects is not None  # the pipeline's per-world paired effects
        per_world = self._with_effects(per_world, finished.effects, objective.outcome)
        write_parquet(per_world, run_dir / "per_world.parquet")
        top = most_often_best(table)
        discovery, trajectory = self._discover(config, run_dir, worlds, per_world, policies, top)
        best = per_world.filter(pl.col("best")).unique("world", keep="first").sort("world")
        order = rb.importance_order(
            worlds.filter(pl.col("world").is_in(best["world"].implode())),
            best["best_policy"].to_list(),
            config.seed,
        )
        figures = (
            rb.robustness_figures(run_dir, table, per_world, trajectory, discovery, worlds, order)
            if config.figures
            else []
        )
        objective_j = rb.world_objective(data, baseline, scoring.per_money)[0]
        value = voi_table(worlds, objective_j, policies, scoring.maximize, config.seed)
        write_parquet(value, run_dir / "voi.parquet")
        words = self._satisfice_words(config, baseline_name)
        flips = rb.flip_sentences(table, discovery, worlds, words)
        across = Across(
            table,
            rob.worlds,
            self._units(config),
            words,
            self._conditional(config),
            stops=rb.where_words(discovery, rb.ranges_of(worlds), top, "not_best"),
            voi=value,
            source=self._source(config),
        )
        headline = across_summary(across)
        section = self._section(config, table, flips, order, baseline_name, value)
        children = self._children(config, table, baseline_name)
        names = set(finished.rows["scenario"].unique().to_list())
        return KindOutput(
            figures=figures, sections=[section], unlisted=names, children=children, lines=[*headline, *flips]
        )

    @staticmethod
    def _arrays(config: Config, rows: pl.DataFrame, worlds: pl.DataFrame, policies: list[str]) -> Any:
        """The objective (and its cost) by world, policy and replicate (``rb.to_arrays``)."""
        objective = config.robustness.objective
        split = pl.col("scenario").str.split_exact("/", 1)
        rows = rows.with_columns(
            split.struct.field("field_0").str.slice(1).cast(pl.Int64).alias("world"),
            split.struct.field("field_1").alias("policy"),
        )
        return rb.to_arrays(
            rows,
            worlds["world"].to_list(),
            policies,
            objective.outcome,
            objective.cost if objective.per_money else None,
            config.replicates,
        )

    @staticmethod
    def _discover(
        config: Config,
        run_dir: Path,
        worlds: pl.DataFrame,
        per_world: pl.DataFrame,
        policies: list[str],
        top: str,
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Scenario discovery: where each policy is best and where it fails, and where ``top``
        (the answer's policy) stops being best; discovery.parquet and its trajectories."""
        targets: dict[tuple[str, str], np.ndarray] = {}
        for p in policies:
            mine = per_world.filter(pl.col("policy") == p).sort("world")
            targets[(p, "best")] = mine["best"].to_numpy()
            targets[(p, "fails")] = ~mine["satisfices"].to_numpy()
            if p == top:  # where the answer's policy stops being best
                targets[(p, "not_best")] = ~mine["best"].to_numpy()
        rob = config.robustness
        discovery, trajectory = rb.discover(
            worlds, targets, density=rob.density, seed=config.seed, box_bootstrap=rob.box_bootstrap
        )
        write_parquet(discovery, run_dir / "discovery.parquet")
        write_parquet(trajectory, run_dir / "discovery_trajectory.parquet")
        return discovery, trajectory

    def _children(self, config: Config, table: pl.DataFrame, baseline: str) -> list[dict]:
        """One MLflow child run per policy (not per world x policy), with its metrics."""
        return [
            {
                "name": s.name,
                "params": {
                    "policy": s.name,
                    "overrides": " ".join(s.overrides) or "(none)",
                    "worlds": config.robustness.worlds,
                    "replicates": config.replicates,
                    "objective": self._objective_words(config, baseline),
                },
                "metrics": {
                    f"{r['metric']}{suffix}": r[col]
                    for r in table.filter(pl.col("policy") == s.name).iter_rows(named=True)
                    for suffix, col in (("", "value"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))
                },
            }
            for s in config.experiment.scenarios
        ]

    @staticmethod
    def _with_effects(per_world: pl.DataFrame, effects: pl.DataFrame, outcome: str) -> pl.DataFrame:
        """The objective outcome's paired effect against the world's baseline (effects.parquet)."""
        effects = effects.filter(pl.col("outcome") == outcome)
        split = pl.col("scenario").str.split_exact("/", 1)
        effects = effects.select(
            split.struct.field("field_0").str.slice(1).cast(pl.Int64).alias("world"),
            split.struct.field("field_1").alias("policy"),
            "effect",
            pl.col("ci_low").alias("effect_ci_low"),
            pl.col("ci_high").alias("effect_ci_high"),
            "effect_per_cost",
        )
        return per_world.join(effects, on=["world", "policy"], how="left", maintain_order="left")

    @staticmethod
    def _objective_words(config: Config, baseline: str) -> str:
        o = config.robustness.objective
        what = f"{o.direction} `{o.outcome}`"
        return what + (
            f", as its paired effect against `{baseline}` per unit of extra `{o.cost}`" if o.per_money else ""
        )

    @staticmethod
    def _units(config: Config) -> str:
        o = config.robustness.objective
        return f"`{o.outcome}` per unit of `{o.cost}`" if o.per_money else f"`{o.outcome}`"

    @staticmethod
    def _conditional(config: Config) -> str | None:
        """What the answer is conditional on (None: the worlds draw the calibrated parameters
        from a calibration's posterior)."""
        if config.uncertainty.posterior is not None:
            return None
        _, source = point_values(config)
        if source is not None:
            return (
                f"the posterior {config.calibration.point} of {source} for the calibrated parameters "
                "(their spread is not drawn: `uncertainty.posterior=shipped` draws it)"
            )
        return (
            "the hand-set values of the parameters the worlds do not vary (no calibration): it can "
            "change once they are calibrated"
        )

    @staticmethod
    def _source(config: Config) -> str:
        space = space_of(config)
        keys = ", ".join(f"`{p.key}`" for p in space.parameters)
        if config.uncertainty.posterior is not None:
            posterior = read_posterior(config)
            calibrated_keys = {p.key for p in posterior.parameters}
            ranged = [p for p in space.parameters if p.key not in calibrated_keys]

            def named(params: Sequence[UncertainParameter]) -> str:
                return ", ".join(f"`{p.key}`" for p in params) or "none"

            return (
                f"{config.robustness.worlds}, the calibrated parameters drawn from the posterior of "
                f"{posterior.words} ({named(posterior.drawn)}), those its targets do not identify "
                f"over their priors ({named(posterior.unidentified)}) and {len(ranged)} more over the "
                f"ranges of `{space.name}` ({named(ranged)}); the policies share seeds within each world"
            )
        return (
            f"{config.robustness.worlds} drawn over the ranges of the uncertainty space `{space.name}` "
            f"({keys}); the policies share seeds within each world"
        )

    @staticmethod
    def _satisfice_words(config: Config, baseline: str) -> str:
        rob = config.robustness
        if rob.satisfice is None:
            return f"to do at least as well as `{baseline}`"
        sign = ">=" if rob.objective.direction == "max" else "<="
        return f"to reach the threshold (objective {sign} {rob.satisfice:g})"

    def _section(
        self,
        config: Config,
        table: pl.DataFrame,
        flips: list[str],
        order: list[str],
        baseline: str,
        value: pl.DataFrame,
    ) -> str:
        lines = [
            *self._metrics_section(config, table, baseline),
            *self._flips_section(flips, order),
            *self._voi_section(config, value),
        ]
        return "\n".join(lines)

    def _metrics_section(self, config: Config, table: pl.DataFrame, baseline: str) -> list[str]:
        """The robustness metrics of each policy, with what they mean."""
        rob = config.robustness
        uncertain = space_of(config)
        space = ", ".join(f"`{p.key}` [{p.low:g}, {p.high:g}]" for p in uncertain.parameters)
        wide = table.with_columns(
            pl.format(
                "{} [{}, {}]", *[pl.col(c).round_sig_figs(3) for c in ("value", "ci_low", "ci_high")]
            ).alias("text")
        ).pivot(on="metric", index="policy", values="text")
        return [
            f"## Robustness across {rob.worlds} worlds",
            "",
            f"Uncertainty space `{uncertain.name}`: {space}. {rob.worlds} worlds "
            f"({'weighted posterior draws' if uncertain.posterior else rob.sampler}) x "
            f"{len(config.experiment.scenarios)} policies x {config.replicates} "
            "replicates; the policies of a world share their seeds. Objective: "
            f"{self._objective_words(config, baseline)}. `p_best`: probability of being the best "
            "policy (ties split); `regret_*`: the best policy's objective minus this one's, mean "
            "and 90th percentile over worlds; `satisficing`: share of worlds where the policy manages "
            f"{self._satisfice_words(config, baseline)}; `worst_case`: its worst objective over the "
            "worlds (maximin). 95% CIs: each world's replicates bound these (t bounds of the paired "
            "differences: surely / possibly best, regret low / high), and the worlds are resampled "
            f"({rob.bootstrap} draws; docs/robustness.md). Per world: `per_world.parquet`; "
            "the worlds: `worlds.parquet`.",
            "",
            markdown_table(wide),
            "",
        ]

    @staticmethod
    def _flips_section(flips: list[str], order: list[str]) -> list[str]:
        """Where the answer flips (scenario discovery) and which parameters predict the best."""
        return [
            "## Where the answer flips",
            "",
            "Scenario discovery on the worlds: PRIM boxes (Friedman & Fisher 1999; EMA Workbench) "
            'for "this policy is best here" and "this policy fails here"; a restriction is named '
            "when its quasi-p value is below 0.05, each edge with its 95% interval over "
            f"{rb.BOX_BOOTSTRAP} resampled sets of worlds (PRIM run again on each). All boxes, with "
            "CART's beside them: "
            "`discovery.parquet`; the peeling trajectories: `discovery_trajectory.parquet`.",
            "",
            *flips,
            "",
            "Parameters by how well they predict the best policy (extra-trees feature scores): "
            + ", ".join(f"`{k}`" for k in order)
            + ".",
            "",
        ]

    def _voi_section(self, config: Config, value: pl.DataFrame) -> list[str]:
        """What to measure next: the EVPPI of each parameter."""
        return [
            "## What to measure next",
            "",
            "Expected value of partial perfect information (EVPPI) of each parameter on the choice "
            f"among the policies, in the objective's units ({self._units(config)}): the expected "
            "regret that knowing the parameter exactly would remove. Estimated from the worlds "
            "already simulated by the regression method of Strong, Oakley & Brennan (2014): each "
            "policy's objective minus the chosen one's, regressed on the parameter alone (penalised "
            "spline, GCV); `evppi` is corrected for the estimator's upward bias and its 95% interval "
            "comes from draws of the regression's coefficients and of the worlds' weights "
            "(docs/robustness.md). `evpi`: the chosen policy's expected regret (everything known). "
            "`voi.parquet`.",
            "",
            markdown_table(value.select("parameter", "evppi", "ci_low", "ci_high", "plug_in", "upward_bias")),
            "",
        ]
