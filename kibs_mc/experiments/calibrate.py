"""``experiment.kind=calibrate``: ABC-SMC of model parameters against targets (docs/calibration.md).

The parameters and their priors come from ``calibration.parameters`` or the ``uncertainty``
space (uniform, or log-uniform with ``scale: log``); the targets from ``calibration.targets``
(:mod:`kibs_mc.analysis.targets`; ``synthetic`` simulates them at ``calibration.truth``).
ABC-SMC is pyabc's (Toni et al. 2009; adaptive quantile thresholds, Del Moral et al. 2012):
its ``MappingSampler`` maps "sample until one particle is accepted" over the population with
the project's executor (:mod:`kibs_mc.run.executor.abc`), so particles run on Ray like chunks
do. The distance is the Euclidean norm of (simulated - observed) / scale over the targets.
Generations are run one at a time, each written to pyabc's database ``abc.db`` in the run
directory, so a killed run continues with ``resume=true`` from its last finished generation.

Unlike the other kinds this one is not a fixed plan of scenarios: it runs itself
(:meth:`Calibrate.run`, on the pipeline's executor) in place of the pipeline's plan -> execute
-> analyse, and the pipeline writes its configuration, report and MLflow record as for any
experiment.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console

from kibs_mc.analysis.targets import (
    Target,
    aggregate,
    check_targets,
    load_targets,
    paired_effect,
    replicate_value,
)
from kibs_mc.config import CONF_DIR, SIMULATION, Config, UncertainParameter, group_options, keys_of
from kibs_mc.errors import ConfigError, UserError
from kibs_mc.experiments.kind import ExperimentKind, KindOutput
from kibs_mc.experiments.posterior import POINT_FILE, posterior_point, set_values
from kibs_mc.models import get_model
from kibs_mc.run import shipped
from kibs_mc.run.code import changed_code, code_inputs
from kibs_mc.run.executor import Executor
from kibs_mc.run.executor.abc import seeded_sampler
from kibs_mc.run.plan import build_scenarios
from kibs_mc.run.store import refused_resume, write_parquet

#: ``posterior_point`` (``calibration.use``) reads the POINT_FILE this kind writes.
__all__ = ["DB_FILE", "POINT_FILE", "Calibrate", "posterior_point", "resolve_targets"]

DB_FILE = "abc.db"


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def truth_of(config: Config) -> dict[str, float]:
    """``calibration.truth`` as dotted keys (``model.imitation_rate`` -> 0.02)."""
    return _flatten(dict(config.calibration.truth))


def parameters_of(config: Config) -> list[UncertainParameter]:
    """The calibrated parameters: ``calibration.parameters``, else the ``uncertainty`` space's."""
    return list(config.calibration.parameters) or list(config.uncertainty.parameters)


def _value(p: UncertainParameter, x: float) -> float:
    return float(round(x)) if p.integer else float(x)


def _from_particle(p: UncertainParameter, x: float) -> float:
    """A particle's coordinate as the parameter's value: ABC-SMC runs a log-uniform parameter
    on the log scale, where its prior is uniform and pyabc's Gaussian perturbation kernels fit
    a range of orders of magnitude (on the natural scale, a kernel wide enough for the large
    values throws the small ones out of the prior, and the importance weights degenerate)."""
    return _value(p, math.exp(x) if p.scale == "log" else x)


def particle_bounds(parameters: Sequence[UncertainParameter]) -> dict[str, tuple[float, float]]:
    """Each parameter's range as a particle's coordinate ``p<i>`` (:func:`_from_particle`):
    on the log scale for a log-uniform parameter, where its prior is uniform."""
    return {
        f"p{i}": (math.log(p.low), math.log(p.high)) if p.scale == "log" else (p.low, p.high)
        for i, p in enumerate(parameters)
    }


#: A simulated arm: the overrides it is composed with (empty: the calibration's own
#: configuration) and its configuration.
Arm = tuple[tuple[str, ...], Config]


@dataclass(frozen=True)
class Simulator:
    """The statistics of ``targets`` for one set of parameter values: ``replicates`` replicates
    from seeds drawn from NumPy's global generator (which pyabc seeds in each task), each
    statistic aggregated over them. A policy-response target runs its two arms (``arms``: the
    composed configurations, by their overrides) on the same seeds, the parameter values set in
    each. Picklable, so it travels to Ray workers."""

    config: Config
    parameters: tuple[UncertainParameter, ...]
    targets: tuple[Target, ...]
    replicates: int
    arms: tuple[Arm, ...] = ()

    def values(self, particle: dict) -> dict[str, float]:
        return {p.key: _from_particle(p, float(particle[f"p{i}"])) for i, p in enumerate(self.parameters)}

    @property
    def seeds_needed(self) -> int:
        """Replicate seeds one set of values uses: the most any target averages."""
        return max([self.replicates, *(t.replicates or self.replicates for t in self.targets)])

    def statistics(self, values: dict[str, float], seeds: Sequence[int]) -> dict[str, float]:
        arms = {key: set_values(c, values, "calibration.parameters") for key, c in self.arms}
        arms[()] = set_values(self.config, values, "calibration.parameters")
        model = get_model(self.config.model.name)
        runs: dict[tuple[tuple[str, ...], int], tuple[dict, Any]] = {}

        def arm(key: tuple[str, ...], n: int, target: Target) -> tuple[float, float]:
            """``target``'s statistic aggregated over the first ``n`` seeds of the arm ``key``,
            and the arm's mean spending (the model's cost outcome)."""
            per, cost = [], []
            for seed in seeds[:n]:
                if (key, seed) not in runs:
                    runs[key, seed] = model.simulate(arms[key], int(seed))
                row, ts = runs[key, seed]
                per.append(replicate_value(target, row, ts, arms[key]))
                cost.append(float(row[model.cost]) if model.cost else 0.0)
            return aggregate(per, target.aggregate), float(np.mean(cost))

        out = {}
        for t in self.targets:
            n = t.replicates or self.replicates
            sides = t.arms()
            if sides is None:
                out[t.name] = arm((), n, t)[0]
                continue
            scen, scen_cost = arm(sides[1], n, t)
            base, base_cost = arm(sides[0], n, t) if sides[0] is not None else (math.nan, 0.0)
            out[t.name] = paired_effect(t, scen, base, scen_cost - base_cost)
        return out

    def __call__(self, particle: dict) -> dict[str, float]:
        # pyabc seeds NumPy's global generator in each task (MappingSampler.map_function)
        seeds = np.random.randint(0, 2**63 - 1, size=self.seeds_needed, dtype=np.int64)  # noqa: NPY002
        return self.statistics(self.values(particle), [int(s) for s in seeds])


def _ppc_task(item: tuple[int, Simulator, dict[str, float], list[int]]) -> dict[str, float]:
    _, simulator, values, seeds = item
    return simulator.statistics(values, seeds)


def _seeds(seed: int, stream: int, count: int) -> list[int]:
    ss = np.random.SeedSequence(seed, spawn_key=(0xCA1, stream))
    return [int(s) for s in ss.generate_state(count, dtype=np.uint64) >> np.uint64(1)]


def synthetic_targets(
    config: Config, template: list[Target], arms: Sequence[Arm], executor: Executor
) -> list[Target]:
    """Targets simulated at ``calibration.truth`` (``synthetic_replicates`` replicates): the
    template's statistics, observed = their value at the truth, scale = their standard
    deviation over those replicates (a replicate's noise; a tiny floor keeps it positive)."""
    truth = truth_of(config)
    if not truth:
        raise ConfigError(
            "calibration.truth",
            {},
            "allowed: at least one key=value with calibration.targets="
            "synthetic (e.g. calibration.truth.model.imitation_rate=0.02)",
        )
    one = tuple(replace(t, replicates=1) for t in template)
    simulator = Simulator(config, (), one, 1, tuple(arms))
    seeds = _seeds(config.seed, 1, config.calibration.synthetic_replicates)
    items: list[tuple[int, Simulator, dict[str, float], list[int]]] = [
        (i, simulator, dict(truth), [s]) for i, s in enumerate(seeds)
    ]
    rows = [r for _, r in sorted(executor.map_unordered(_ppc_task, items), key=lambda x: x[0][0])]
    out = []
    for t in template:
        x = np.array([r[t.name] for r in rows], dtype=float)
        mean = aggregate(list(x), t.aggregate)
        sd = float(np.std(x, ddof=1))
        floor = 1e-6 * max(abs(mean), 1e-6)
        out.append(
            replace(
                t,
                observed=mean,
                scale=max(sd, floor),
                source=f"synthetic: simulated at {truth}",
                assumed=False,
            )
        )
    return out


def compose_arms(config: Config, overrides: Sequence[str], targets: Sequence[Target]) -> list[Arm]:
    """The configurations the policy-response targets' arms run (each distinct set of
    overrides composed once, on top of the invocation's); ConfigError naming the target whose
    scenario or intensity is not allowed, or sets a calibrated parameter."""
    calibrated = {p.key for p in parameters_of(config)}
    scenarios = group_options("governance", overrides)
    specs: dict[tuple[str, ...], str] = {}
    for i, t in enumerate(targets):
        sides = t.arms()
        if sides is None:
            continue
        if t.scenario not in scenarios:
            raise ConfigError(
                f"targets[{i}].scenario", t.scenario, "allowed: a governance option: " + ", ".join(scenarios)
            )
        for key, _ in t.intensity:
            if key in calibrated:
                raise ConfigError(
                    f"targets[{i}].intensity.{key}",
                    dict(t.intensity)[key],
                    "allowed: a key that is not calibrated (the particle sets it)",
                )
        for side in sides:
            if side is not None:
                specs.setdefault(side, f"{t.name}:{side[0]}")
    keys = list(specs)
    built = build_scenarios(config, overrides, [(specs[k], list(k)) for k in keys]) if keys else []
    return [(k, sc.config) for k, sc in zip(keys, built, strict=True)]


def resolve_targets(
    config: Config, overrides: Sequence[str] = (), executor: Executor | None = None
) -> tuple[list[Target], list[Arm]]:
    """The targets ``calibration.targets`` names and the composed arms of its policy-response
    targets, every statistic checked against a probe replicate of each arm."""
    spec = config.calibration.targets
    synthetic = spec == "synthetic"
    targets = load_targets(config.calibration.template if synthetic else spec, CONF_DIR)
    where = "calibration.template" if synthetic else str(spec)
    arms = compose_arms(config, overrides, targets)
    probe = {(): config, **dict(arms)}
    truth = truth_of(config) if synthetic else {}
    model = get_model(config.model.name)
    for key, arm_config in probe.items():
        at = set_values(arm_config, truth, "calibration.truth") if truth else arm_config
        row, ts = model.simulate(at, 1)
        own = [t for t in targets if (key == () and not t.paired) or (t.paired and key in (t.arms() or ()))]
        check_targets(own, row, ts, at, where, indices=[targets.index(t) for t in own])
        if any(t.effect == "per_money" for t in own) and model.cost not in row:
            raise ConfigError(
                f"{where}: effect", "per_money", "allowed: difference or relative (no cost outcome)"
            )
    if synthetic:
        assert executor is not None
        targets = synthetic_targets(config, targets, arms, executor)
    return targets, arms


def same_spec(recorded: Path, spec: dict, holds: str) -> None:
    """Refuse to continue work whose spec (a JSON file written when it started; missing counts
    as other code) is not ``spec``: by the model's code, module by module (the store's refusal),
    else as "<folder> holds ``holds``"."""
    text = json.dumps(spec, sort_keys=True, default=str)
    if recorded.exists() and recorded.read_text() == text:
        return
    before = json.loads(recorded.read_text()) if recorded.exists() else {}
    if changed_code(before.get("code") or {}, spec["code"]):
        raise refused_resume(recorded.parent, before.get("code"), spec["code"])
    raise UserError(f"{recorded.parent} holds {holds}")


def _ess(w: np.ndarray) -> float:
    w = w / w.sum()
    return float(1.0 / np.sum(w**2))


@dataclass(frozen=True)
class Found:
    """What a calibration found: its parameters and targets, every generation's weighted
    particles, the predictive check's draws and each generation's statistics."""

    parameters: Sequence[UncertainParameter]
    targets: Sequence[Target]
    posterior: pl.DataFrame
    draws: pl.DataFrame
    generations: pl.DataFrame


class Calibrate(ExperimentKind):
    name = "calibrate"
    runs_itself = True
    requires = ("pyabc",)

    def check(self, config: Config) -> None:
        super().check(config)
        if not parameters_of(config):
            raise ConfigError(
                "calibration.parameters",
                [],
                "allowed: at least one parameter, here or in the "
                "uncertainty space (uncertainty=<name>, conf/uncertainty)",
            )
        if config.calibration.use not in (
            None,
            shipped.SHIPPED,
            shipped.HAND_SET,
        ):  # the defaults: unused here
            raise ConfigError(
                "calibration.use",
                config.calibration.use,
                "allowed: null with experiment.kind=calibrate (use feeds other experiments)",
            )
        for i, p in enumerate(parameters_of(config)):
            set_values(config, {p.key: _value(p, p.low)}, f"calibration.parameters[{i}]")

    def run(
        self, config: Config, overrides: Sequence[str], run_dir: Path, executor: Executor, console: Console
    ) -> KindOutput:
        started = time.monotonic()
        run_dir.mkdir(parents=True, exist_ok=True)
        parameters = parameters_of(config)
        cal = config.calibration
        targets, arms = resolve_targets(config, overrides, executor)
        spec = {
            "parameters": [asdict(p) for p in parameters],
            "targets": [asdict(t) for t in targets],
            "population": cal.population,
            "replicates": cal.replicates,
            "seed": config.seed,
            **{key: asdict(getattr(config, key)) for key in keys_of(SIMULATION)},
            "code": code_inputs(config.model.name),  # generations of one code only
        }
        self._open(run_dir, spec, config.resume)
        # the ABC fits the `fit: true` targets; the predictive check judges every target
        fitted = tuple(t for t in targets if t.fit)
        simulator = Simulator(config, tuple(parameters), fitted, cal.replicates, tuple(arms))
        generations = self._smc(config, simulator, run_dir, executor, console)
        posterior = self._posterior(run_dir, parameters)
        checked = Simulator(config, tuple(parameters), tuple(targets), cal.replicates, tuple(arms))
        draws = self._ppc(config, checked, posterior, executor)
        found = Found(parameters, targets, posterior, draws, generations)
        return self._output(config, run_dir, found, time.monotonic() - started)

    # --- stages -------------------------------------------------------------------------------

    @staticmethod
    def _open(run_dir: Path, spec: dict, resume: bool) -> None:
        recorded = run_dir / "calibration_spec.json"
        text = json.dumps(spec, sort_keys=True, default=str)
        if (run_dir / DB_FILE).exists():
            if not resume:
                raise UserError(
                    f"{run_dir} already holds a calibration ({DB_FILE}); rerun with resume=true to "
                    "continue it, or pick another hydra.run.dir."
                )
            same_spec(
                recorded,
                spec,
                "a calibration of other targets, parameters or settings; "
                "resume it with its own overrides, or pick another hydra.run.dir.",
            )
        recorded.write_text(text)

    def _smc(
        self, config: Config, simulator: Simulator, run_dir: Path, executor: Executor, console: Console
    ) -> pl.DataFrame:
        import logging

        import pyabc

        logging.getLogger("ABC").setLevel(logging.WARNING)
        logging.getLogger("pyabc").setLevel(logging.WARNING)
        from kibs_mc.experiments.proposal import DefensiveTransition

        cal = config.calibration
        bounds = particle_bounds(simulator.parameters)
        prior = pyabc.Distribution(
            **{k: pyabc.RV("uniform", low, high - low) for k, (low, high) in bounds.items()}
        )
        distance = pyabc.PNormDistance(p=2, fixed_weights={t.name: 1.0 / t.scale for t in simulator.targets})
        db = f"sqlite:///{(run_dir / DB_FILE).resolve()}"

        def smc() -> Any:
            # A fresh ABCSMC per generation, loaded from the database: every generation starts
            # the way a resumed run does (its threshold from the previous generation's distances).
            return pyabc.ABCSMC(
                simulator,
                prior,
                distance,
                population_size=cal.population,
                transitions=DefensiveTransition(bounds),
                sampler=seeded_sampler(executor, config.seed),
                eps=pyabc.QuantileEpsilon(alpha=cal.quantile),
            )

        if (run_dir / DB_FILE).exists():
            history = smc().load(db, 1)
            console.print(f"calibrate: resuming {run_dir / DB_FILE} after generation {history.max_t}")
        else:
            history = smc().new(db, {t.name: t.observed for t in simulator.targets})
        while history.n_populations < cal.generations:
            t0 = time.monotonic()
            abc = smc()
            history = abc.load(db, 1)
            # the driver's draws (proposals, thresholds) of generation t: the same after a resume
            state = np.random.SeedSequence(config.seed, spawn_key=(0, history.max_t + 1)).generate_state(2)
            np.random.seed(int(state[0]))  # noqa: NPY002 - pyabc draws from the global generator
            random.seed(int(state[1]))
            abc.run(minimum_epsilon=cal.min_epsilon, max_nr_populations=1)
            row = self._generations(history).row(-1, named=True)
            console.print(
                f"calibrate: generation {row['generation']}: epsilon {row['epsilon']:.4g}, acceptance "
                f"{row['acceptance']:.3f} ({row['particles']}/{row['samples']}), ESS {row['ess']:.1f}, "
                f"{time.monotonic() - t0:.1f} s"
            )
            if row["epsilon"] <= cal.min_epsilon or row["acceptance"] < cal.min_acceptance:
                break
        return self._generations(history)

    @staticmethod
    def _generations(history: Any) -> pl.DataFrame:
        pops = history.get_all_populations()
        rows = []
        for rec in pops.to_dict("records"):
            t = int(rec["t"])
            if t < 0:
                continue
            _, w = history.get_distribution(m=0, t=t)
            rows.append(
                {
                    "generation": t,
                    "epsilon": float(rec["epsilon"]),
                    "samples": int(rec["samples"]),
                    "particles": int(rec["particles"]),
                    "acceptance": int(rec["particles"]) / max(int(rec["samples"]), 1),
                    "ess": _ess(np.asarray(w, dtype=float)),
                }
            )
        return pl.DataFrame(
            rows,
            schema={
                "generation": pl.Int64,
                "epsilon": pl.Float64,
                "samples": pl.Int64,
                "particles": pl.Int64,
                "acceptance": pl.Float64,
                "ess": pl.Float64,
            },
        )

    @staticmethod
    def _posterior(run_dir: Path, parameters: Sequence[UncertainParameter]) -> pl.DataFrame:
        import pyabc

        history = pyabc.History(f"sqlite:///{(run_dir / DB_FILE).resolve()}", _id=1)
        frames = []
        for t in range(history.max_t + 1):
            df, w = history.get_distribution(m=0, t=t)
            columns: dict[str, Any] = {
                p.key: [_from_particle(p, x) for x in df[f"p{i}"].to_numpy(dtype=float)]
                for i, p in enumerate(parameters)
            }
            columns["weight"] = np.asarray(w, dtype=float)
            columns["generation"] = np.full(len(w), t, dtype=np.int64)
            frames.append(pl.DataFrame(columns))
        return pl.concat(frames)

    @staticmethod
    def _ppc(
        config: Config, simulator: Simulator, posterior: pl.DataFrame, executor: Executor
    ) -> pl.DataFrame:
        """The targets simulated at ``ppc_draws`` particles drawn by weight from the last
        generation, ``calibration.replicates`` replicates each (as in the ABC)."""
        last = posterior.filter(pl.col("generation") == posterior["generation"].max())
        w = last["weight"].to_numpy()
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0xCA1, 2)))
        picks = rng.choice(last.height, size=config.calibration.ppc_draws, p=w / w.sum())
        keys = [p.key for p in simulator.parameters]
        items = []
        for d, i in enumerate(picks):
            values = {k: float(last[k][int(i)]) for k in keys}
            items.append((d, simulator, values, _seeds(config.seed, 100 + d, simulator.seeds_needed)))
        results = sorted(executor.map_unordered(_ppc_task, items), key=lambda x: x[0][0])
        rows = [
            {"draw": item[0], **{f"param:{k}": v for k, v in item[2].items()}, "target": name, "value": value}
            for item, stats in results
            for name, value in stats.items()
        ]
        return pl.DataFrame(rows)

    def _output(self, config: Config, run_dir: Path, found: Found, seconds: float) -> KindOutput:
        """Write the calibration's tables, point and figures; what the pipeline reports."""
        from kibs_mc.analysis.calibration import calibration_summary, posterior_plot, ppc_plot, report_section

        cal = config.calibration
        truth = truth_of(config) if cal.targets == "synthetic" else {}
        params, ppc, passed = self._write_tables(config, run_dir, found, truth)
        figures = (
            [
                posterior_plot(found.posterior, found.parameters, truth, run_dir / "posterior.png"),
                ppc_plot(found.draws, ppc, run_dir / "ppc.png"),
            ]
            if config.figures
            else []
        )
        generations = found.generations
        section, lines = report_section(params, ppc, generations, cal.interval, cal.max_width, cal.min_ess)
        samples = int(generations["samples"].sum()) if generations.height else 0
        rate = samples / seconds if seconds > 0 else 0.0
        lines.append(
            f"simulations: {samples} in {seconds:.1f} s ({rate:.1f}/s); "
            f"posterior point for other experiments: calibration.use={run_dir}"
        )
        metrics = {
            "simulations_total": float(samples),
            "simulations_per_second": rate,
            "generations": float(generations.height),
            "targets_reproduced": float(ppc["reproduced"].sum()),
            "check_passes": float(passed),
            "parameters_not_identified": float((~params["identified"]).sum()),
            "targets_total": float(ppc.height),
            **{f"posterior_mean.{r['parameter']}": float(r["mean"]) for r in params.iter_rows(named=True)},
        }
        steps = {
            "epsilon": generations["epsilon"].to_list(),
            "acceptance": generations["acceptance"].to_list(),
            "ess": generations["ess"].to_list(),
            "samples": [float(x) for x in generations["samples"]],
        }
        return KindOutput(
            figures=figures,
            sections=[section],
            lines=lines,
            summary=calibration_summary(
                params,
                ppc,
                cal.interval,
                run_dir,
                cal.max_width,
                generations=generations,
                min_ess=cal.min_ess,
            ),
            rows=found.draws,
            title="ABC-SMC calibration",
            metrics=metrics,
            steps=steps,
        )

    @staticmethod
    def _write_tables(
        config: Config, run_dir: Path, found: Found, truth: dict[str, float]
    ) -> tuple[pl.DataFrame, pl.DataFrame, bool]:
        """posterior, generations, ppc_draws, parameters and ppc (Parquet) and the posterior
        point for ``calibration.use``; returns the parameter and predictive-check tables and
        whether the check passes."""
        from kibs_mc.analysis.calibration import check_verdict, parameter_table, ppc_table

        cal = config.calibration
        write_parquet(found.posterior, run_dir / "posterior.parquet")
        write_parquet(found.generations, run_dir / "generations.parquet")
        write_parquet(found.draws, run_dir / "ppc_draws.parquet")
        params = parameter_table(found.posterior, found.parameters, cal.interval, truth)
        write_parquet(params, run_dir / "parameters.parquet")
        ppc = ppc_table(found.draws, found.targets, cal.interval, cal.max_width)
        write_parquet(ppc, run_dir / "ppc.parquet")
        passed, reasons = check_verdict(params, ppc, found.generations, cal.min_ess)
        point = {
            "mean": {r["parameter"]: r["mean"] for r in params.iter_rows(named=True)},
            "map": {r["parameter"]: r["map"] for r in params.iter_rows(named=True)},
            # what a decision should keep uncertain over its prior (docs/calibration.md)
            "identified": {r["parameter"]: r["identified"] for r in params.iter_rows(named=True)},
            "check": {
                "passes": passed,
                "failures": reasons,
                "max_width": cal.max_width,
                "min_ess": cal.min_ess,
                "ess": float(found.generations["ess"][-1]) if found.generations.height else None,
            },
            "targets": cal.targets,
            "generations": found.generations.height,
        }
        (run_dir / POINT_FILE).write_text(json.dumps(point, indent=2))
        return params, ppc, passed
