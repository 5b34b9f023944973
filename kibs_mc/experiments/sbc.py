"""Simulation-based calibration of ``experiment=calibrate`` (Talts, Betancourt, Simpson, Vehtari
& Gelman 2018, "Validating Bayesian inference algorithms with simulation-based calibration",
arXiv:1804.06788): does the calibration's 90% posterior interval cover the truth 90% of the
time when the truth is drawn from the prior?

For each of ``truths`` parameter vectors drawn independently from the prior, the calibration's
own targets (same statistics, scales, held-out flags and policy-response arms) are simulated
once at the truth, exactly as a particle simulates them (``calibration.replicates`` replicates),
and these values become the observed ones of a full calibration with the invocation's settings.
Each truth's calibration is an item on the executor (it runs serially inside its worker), so
truths run side by side; a truth whose run directory already holds its result is not run again.
Per parameter, the share of truths inside the posterior interval is the coverage, with its
Clopper-Pearson 95% interval (:func:`kibs_mc.analysis.calibration.coverage_table`).

    python scripts/sbc.py --truths 30 [kibs-mc overrides of the calibration]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kibs_mc.analysis.robustness import scale_unit
from kibs_mc.analysis.targets import Target
from kibs_mc.config import SIMULATION, Config, keys_of, load_config
from kibs_mc.errors import ConfigError, UserError
from kibs_mc.experiments.calibrate import Simulator, parameters_of, resolve_targets, same_spec
from kibs_mc.run.executor import make_executor
from kibs_mc.run.store import write_parquet

#: The file beside the truths' run directories: one row per (truth, parameter).
RESULTS = "sbc.parquet"
#: Draws of a truth whose observed statistics are undefined (NaN) before it is given up.
REDRAWS = 20


def draw_truths(config: Config, count: int) -> list[dict[str, float]]:
    """``count`` parameter vectors drawn independently from the calibration's prior (uniform,
    log-uniform or integer, as the ABC's prior), seeded from the root seed."""
    params = parameters_of(config)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0x5BC,)))
    values = scale_unit(params, rng.random((count, len(params))))
    return [{p.key: float(v[j]) for j, p in enumerate(params)} for v in values]


def observed_at(
    config: Config, simulator: Simulator, truth: dict[str, float], index: int
) -> tuple[dict[str, float], dict[str, float]] | None:
    """The targets' values at ``truth`` (one particle's simulation, seeded per truth), redrawn
    from the prior up to REDRAWS times while a fitted target is undefined; None if it stays so.
    Returns the truth used and the values."""
    params = parameters_of(config)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0x5BC, index)))
    for _ in range(REDRAWS):
        seeds = [int(s) for s in rng.integers(0, 2**63 - 1, size=simulator.seeds_needed)]
        values = simulator.statistics(truth, seeds)
        if all(np.isfinite(values[t.name]) for t in simulator.targets if t.fit):
            return truth, values
        unit = rng.random((1, len(params)))
        truth = {p.key: float(v) for p, v in zip(params, scale_unit(params, unit)[0], strict=True)}
    return None


def _target_file(targets: Sequence[Target], values: dict[str, float], path: Path) -> Path:
    """A target file with the observed values replaced (everything else as the calibration's)."""
    import yaml

    items = []
    for t in targets:
        if not (t.fit or np.isfinite(values[t.name])):
            continue  # a check undefined at this truth (no entrant observed long enough, say)
        item: dict[str, Any] = {k: v for k, v in asdict(t).items() if v not in (None, (), "")}
        item["observed"] = float(values[t.name])
        if t.intensity:
            item["intensity"] = dict(t.intensity)
        if t.per:
            item["per"] = list(t.per)
        items.append(item)
    path.write_text(yaml.safe_dump({"name": "sbc", "targets": items}, sort_keys=False))
    return path


def _calibrate_one(item: tuple[int, list[str], str]) -> tuple[int, str]:
    """One truth's calibration, serially in this process (an executor's item)."""
    from kibs_mc.experiments.pipeline import run_experiment

    index, overrides, run_dir = item
    config = load_config(overrides)
    run_experiment(config, overrides, Path(run_dir))
    return index, run_dir


def truth_rows(index: int, truth: dict[str, float], run_dir: Path) -> list[dict[str, Any]]:
    """:func:`posterior_rows` of the calibration in ``run_dir`` (its parameters.parquet and the
    last generation of its posterior.parquet)."""
    params = pl.read_parquet(run_dir / "parameters.parquet")
    posterior = pl.read_parquet(run_dir / "posterior.parquet")
    return posterior_rows(index, truth, params, posterior)


def posterior_rows(
    index: int, truth: dict[str, float], params: pl.DataFrame, posterior: pl.DataFrame
) -> list[dict[str, Any]]:
    """Per parameter: the truth, the posterior interval and narrowing (``params``, a
    parameter table), and the posterior CDF at the truth over the last generation of
    ``posterior`` (Talts et al.'s rank statistic, normalised: uniform on [0, 1] when
    calibrated)."""
    from kibs_mc.analysis.calibration import weighted_cdf

    last = posterior.filter(pl.col("generation") == posterior["generation"].max())
    w = last["weight"].to_numpy().astype(float)
    rows = []
    for r in params.iter_rows(named=True):
        x = truth[r["parameter"]]
        rows.append(
            {
                "truth_index": index,
                "parameter": r["parameter"],
                "truth": x,
                "interval_low": r["interval_low"],
                "interval_high": r["interval_high"],
                "covered": bool(r["interval_low"] <= x <= r["interval_high"]),
                "narrowing": r["narrowing"],
                "identified": r["identified"],
                "posterior_cdf": weighted_cdf(last[r["parameter"]].to_numpy().astype(float), w, x),
            }
        )
    return rows


def simulation_based_calibration(overrides: Sequence[str], truths: int, out_dir: Path) -> pl.DataFrame:
    """Run the SBC of the calibration ``overrides`` compose (``experiment=calibrate`` first)
    over ``truths`` prior draws into ``out_dir`` (``truth_<i>/`` each, ``sbc.parquet``);
    returns one row per (truth, parameter) (:func:`truth_rows`)."""
    overrides = ["experiment=calibrate", *overrides]
    config = load_config(overrides)
    if config.calibration.targets == "synthetic":
        raise ConfigError(
            "calibration.targets",
            "synthetic",
            "allowed: a target file (simulation-based calibration simulates its own observed values)",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    targets, arms = resolve_targets(config, overrides)
    simulator = Simulator(
        config, tuple(parameters_of(config)), tuple(targets), config.calibration.replicates, tuple(arms)
    )
    todo, done = [], {}
    for i, drawn in enumerate(draw_truths(config, truths)):
        run_dir = out_dir / f"truth_{i:03d}"
        truth_file = run_dir / "truth.json"
        if (run_dir / "parameters.parquet").exists() and truth_file.exists():
            done[i] = json.loads(truth_file.read_text())
            continue
        found = observed_at(config, simulator, drawn, i)
        if found is None:
            continue
        truth, values = found
        run_dir.mkdir(parents=True, exist_ok=True)
        truth_file.write_text(json.dumps(truth))
        target_file = _target_file(targets, values, run_dir.parent / f"targets_{i:03d}.yaml")
        own = [
            *overrides,
            f"calibration.targets={target_file}",
            f"seed={config.seed + 1 + i}",
            "executor=serial",
            "tracking=none",
        ]
        todo.append((i, own, str(run_dir)))
        done[i] = truth
    with make_executor(config.executor) as executor:
        for _ in executor.map_unordered(_calibrate_one, todo):
            pass
    rows = [r for i in sorted(done) for r in truth_rows(i, done[i], out_dir / f"truth_{i:03d}")]
    frame = pl.DataFrame(rows)
    write_parquet(frame, out_dir / RESULTS)
    return frame


# --- amortised: one reference table, a posterior per truth by rejection ---------------------

#: The reference table's folder under the output directory: spec.json and part_<k>.parquet.
TABLE = "table"
#: Rows simulated per executor item (and per part file): what an interruption can lose.
CHUNK = 25
#: The file of an amortised run's rows (one per truth and parameter).
AMORTISED = "sbc_amortised.parquet"


@dataclass(frozen=True)
class Rejection:
    """How a truth's posterior is taken from the reference table
    (:func:`kibs_mc.analysis.calibration.abc_rejection`): the rows within ``epsilon`` of the
    truth's statistics by the calibration's distance (None: no tolerance), at least the
    ``accept`` nearest, with Beaumont et al.'s regression adjustment if ``adjust``."""

    epsilon: float | None = None
    accept: int = 50
    adjust: bool = False


def _row_draw(
    seed: int, index: int, params: Sequence[Any], seeds_needed: int
) -> tuple[dict[str, float], list[int]]:
    """Row ``index`` of the reference table: its parameter values, drawn from the prior, and its
    replicate seeds; a function of the root seed and the index alone (a table grows or resumes
    to the same rows)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xAB5, index)))
    values = scale_unit(params, rng.random((1, len(params))))[0]
    seeds = [int(s) for s in rng.integers(0, 2**63 - 1, size=seeds_needed)]
    return {p.key: float(v) for p, v in zip(params, values, strict=True)}, seeds


#: A target's fields that describe it without changing what is simulated or how it is scored.
DESCRIPTIVE = ("source", "assumed", "note", "mapping")


def _simulated(target: dict[str, Any]) -> dict[str, Any]:
    """A target as a table's spec records it (JSON types), without its descriptive fields and
    its ``fit`` flag: what the table simulates for it and how it is scored."""
    plain = json.loads(json.dumps(target, sort_keys=True, default=str))
    return {k: v for k, v in plain.items() if k not in (*DESCRIPTIVE, "fit")}


def _superset(
    recorded: dict[str, Any], spec: dict[str, Any], targets: Sequence[Target], fitted: tuple[Target, ...]
) -> tuple[dict[str, Any], tuple[Target, ...]]:
    """The spec and targets of a reference table to reuse: a table recorded with every target
    fitted now and more (a calibration that holds out targets it once fitted), of the same
    parameters, settings and code, is the same prior draws and seeds with more statistics, so it
    is reused and grown as recorded (its targets, taken from today's file, simulated as before;
    their descriptive fields may have changed); anything else is returned unchanged, for
    :func:`same_spec` to judge."""
    rest = {k: v for k, v in spec.items() if k != "targets"}
    before_rest = {k: v for k, v in recorded.items() if k != "targets"}
    if json.loads(json.dumps(rest, sort_keys=True, default=str)) != before_rest:
        return spec, fitted
    now = {t.name: _simulated(asdict(t)) for t in targets}
    kept = [d for d in recorded.get("targets", []) if now.get(d.get("name")) == _simulated(d)]
    names = {d["name"] for d in kept}
    if len(kept) != len(recorded.get("targets", [])) or not all(t.name in names for t in fitted):
        return spec, fitted
    by_name = {t.name: replace(t, fit=True) for t in targets}
    return recorded, tuple(by_name[d["name"]] for d in kept)


def _table_chunk(item: tuple[int, Simulator, int, list[int]]) -> list[dict[str, Any]]:
    """Rows of the reference table (an executor's item): each row's values and statistics."""
    _, simulator, seed, indices = item
    rows = []
    for i in indices:
        values, seeds = _row_draw(seed, i, simulator.parameters, simulator.seeds_needed)
        rows.append({"row": i, **values, **simulator.statistics(values, seeds)})
    return rows


def reference_table(
    config: Config,
    overrides: Sequence[str],
    size: int,
    out_dir: Path,
    resolved: tuple[list[Target], list[Any]] | None = None,
) -> pl.DataFrame:
    """``size`` prior draws of the calibration ``config`` with its fitted targets simulated as a
    particle simulates them (:class:`Simulator`, its replicates, arms and seeds), one row each,
    in ``out_dir/table``: rows already there are kept, the missing ones are simulated on the
    configured executor, ``CHUNK`` at a time, each chunk written as it finishes. A table of
    other parameters, targets, settings or model code is refused, except one recorded with more
    fitted targets than now (:func:`_superset`): it is reused, its extra statistics unread.
    ``resolved``: the targets and arms of :func:`resolve_targets`, when the caller has them
    (resolving simulates a probe replicate of every arm)."""
    from kibs_mc.run.code import code_inputs

    targets, arms = resolved if resolved is not None else resolve_targets(config, overrides)
    params = parameters_of(config)
    fitted = tuple(t for t in targets if t.fit)
    folder = out_dir / TABLE
    folder.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {
        "parameters": [asdict(p) for p in params],
        "targets": [asdict(t) for t in fitted],
        "replicates": config.calibration.replicates,
        "seed": config.seed,
        **{key: asdict(getattr(config, key)) for key in keys_of(SIMULATION)},
        "code": code_inputs(config.model.name),
    }
    recorded = folder / "spec.json"
    if recorded.exists():
        spec, fitted = _superset(json.loads(recorded.read_text()), spec, targets, fitted)
        same_spec(
            recorded,
            spec,
            "a reference table of other parameters, targets or settings; use another --out for this "
            "calibration.",
        )
    recorded.write_text(json.dumps(spec, sort_keys=True, default=str))
    simulator = Simulator(config, tuple(params), fitted, config.calibration.replicates, tuple(arms))
    parts = sorted(folder.glob("part_*.parquet"))
    have = pl.concat([pl.read_parquet(f) for f in parts]) if parts else None
    done = set(have["row"].to_list()) if have is not None else set()
    missing = [i for i in range(size) if i not in done]
    chunks = [missing[k : k + CHUNK] for k in range(0, len(missing), CHUNK)]
    # after the highest part: an interrupted run's parts need not be contiguous (chunks finish
    # in any order), and numbering from their count would overwrite one of them
    first = max((int(f.stem.split("_")[1]) for f in parts), default=-1) + 1
    items = [(first + n, simulator, config.seed, chunk) for n, chunk in enumerate(chunks)]
    with make_executor(config.executor) as executor:
        for item, rows in executor.map_unordered(_table_chunk, items):
            write_parquet(pl.DataFrame(rows), folder / f"part_{item[0]:05d}.parquet")
    table = pl.concat(
        [pl.read_parquet(f) for f in sorted(folder.glob("part_*.parquet"))], how="vertical_relaxed"
    )
    return table.filter(pl.col("row") < size).sort("row")


def amortised_rows(
    params: Sequence[Any],
    table: pl.DataFrame,
    targets: Sequence[Target],
    truths: pl.DataFrame,
    how: Rejection,
    interval: float = 0.9,
) -> pl.DataFrame:
    """Simulation-based calibration from a reference table (the amortised path of
    :func:`simulation_based_calibration`): per truth (a row of ``truths``: the parameters' values
    and the targets' statistics; a truth with a ``row`` of the table is left out of it), the
    posterior from ``table`` by rejection (``how``) with the targets' scales, then :func:`posterior_rows`
    (one row per parameter) plus the rows accepted (``accepted``) and the tolerance used
    (``tolerance``). Parameters on the ABC's particle scale: the log for a log-uniform one."""
    from kibs_mc.analysis.calibration import abc_rejection, parameter_table

    keys, names = [p.key for p in params], [t.name for t in targets]
    logs = np.array([p.scale == "log" for p in params])

    def particles(frame: pl.DataFrame) -> np.ndarray:
        x = frame.select(keys).to_numpy().astype(float)
        return np.where(logs, np.log(np.where(logs, x, 1.0)), x)

    box = np.array([(np.log(p.low), np.log(p.high)) if p.scale == "log" else (p.low, p.high) for p in params])
    theta, stats = particles(table), table.select(names).to_numpy().astype(float)
    scales = np.array([t.scale for t in targets], dtype=float)
    rows_of = table["row"].to_numpy() if "row" in table.columns else np.full(table.height, -1)
    out = []
    for j, truth in enumerate(truths.iter_rows(named=True)):
        keep = rows_of != truth.get("row", -2)
        observed = np.array([truth[n] for n in names], dtype=float)
        found, w, tolerance = abc_rejection(
            theta[keep],
            stats[keep],
            observed,
            scales,
            epsilon=how.epsilon,
            accept=how.accept,
            bounds=box if how.adjust else None,
        )
        values = np.where(logs, np.exp(found), found)
        posterior = pl.DataFrame(
            {
                **{k: values[:, i] for i, k in enumerate(keys)},
                "weight": w,
                "generation": np.zeros(len(w), np.int64),
            }
        )
        table_j = parameter_table(posterior, params, interval, {})
        for r in posterior_rows(j, {k: float(truth[k]) for k in keys}, table_j, posterior):
            out.append({**r, "accepted": len(w), "tolerance": tolerance})
    return pl.DataFrame(out)


def _table_of(
    overrides: Sequence[str], size: int, out_dir: Path
) -> tuple[Config, pl.DataFrame, list[Target]]:
    """The calibration ``overrides`` compose (``experiment=calibrate`` first), its reference
    table of ``size`` prior draws in ``out_dir`` and its fitted targets, resolved once."""
    overrides = ["experiment=calibrate", *overrides]
    config = load_config(overrides)
    resolved = resolve_targets(config, overrides)
    table = reference_table(config, overrides, size, out_dir, resolved)
    return config, table, [t for t in resolved[0] if t.fit]


def amortised_sbc(
    overrides: Sequence[str],
    size: int,
    truths: int,
    out_dir: Path,
    how: Rejection,
) -> pl.DataFrame:
    """The amortised simulation-based calibration of the calibration ``overrides`` compose
    (``experiment=calibrate`` first): the reference table of ``size`` prior draws
    (:func:`reference_table`, in ``out_dir``), its first ``truths`` rows whose fitted targets
    are all defined as the truths, each left out of the table for its own posterior
    (:func:`amortised_rows`); writes and returns the rows (``sbc_amortised.parquet``)."""
    config, table, fitted = _table_of(overrides, size, out_dir)
    defined = table.filter(pl.all_horizontal(pl.col(t.name).is_not_nan() for t in fitted))
    if defined.height < truths + 1:
        raise UserError(
            f"--truths={truths}: allowed: fewer than the {defined.height} rows of the reference table "
            "whose fitted targets are all defined"
        )
    rows = amortised_rows(
        parameters_of(config),
        table,
        fitted,
        defined.head(truths),
        how,
        interval=config.calibration.interval,
    )
    write_parquet(rows, out_dir / AMORTISED)
    return rows


#: The file of an amortised leave-one-target-out analysis: one row per (fitted target, parameter).
LEAVE_ONE_OUT = "leave_one_out.parquet"


def leave_one_target_out(
    params: Sequence[Any],
    table: pl.DataFrame,
    targets: Sequence[Target],
    how: Rejection,
    interval: float = 0.9,
    max_width: float | None = None,
) -> pl.DataFrame:
    """What each fitted target adds to the posterior, from a reference table at the targets'
    observed values: the rejection posterior (``how``, by the calibration's distance) on every
    target in ``targets``, and for each target ``k`` the posterior on the others with as many
    rows accepted. One row per (target left out, parameter): the parameter's narrowing with
    every target (``narrowing_all``) and without ``k`` (``narrowing_without``) - a target whose
    absence leaves every parameter as narrow tells the ABC nothing about them - and ``k``'s own
    predictive from the rows accepted without it, judged as the predictive check judges a held-out
    target (:func:`kibs_mc.analysis.calibration.ppc_table`: ``median``, ``low``, ``high``, ``z``,
    ``width``, ``verdict``): whether the other targets predict it."""
    from kibs_mc.analysis.calibration import MAX_WIDTH, abc_rejection, parameter_table, ppc_table

    keys, names = [p.key for p in params], [t.name for t in targets]
    values = table.select(keys).to_numpy().astype(float)
    stats = table.select(names).to_numpy().astype(float)
    observed = np.array([t.observed for t in targets], dtype=float)
    scales = np.array([t.scale for t in targets], dtype=float)
    index = np.arange(table.height, dtype=float)[:, None]

    def accepted(use: list[int], epsilon: float | None, accept: int) -> np.ndarray:
        rows, _, _ = abc_rejection(
            index, stats[:, use], observed[use], scales[use], epsilon=epsilon, accept=accept
        )
        return rows[:, 0].astype(np.int64)

    def narrowing(rows: np.ndarray) -> dict[str, float]:
        posterior = pl.DataFrame(
            {
                **{k: values[rows, i] for i, k in enumerate(keys)},
                "weight": np.ones(len(rows)),
                "generation": 0,
            }
        )
        frame = parameter_table(posterior, params, interval, {})
        return dict(zip(frame["parameter"].to_list(), frame["narrowing"].to_list(), strict=True))

    every = list(range(len(targets)))
    rows_all = accepted(every, how.epsilon, how.accept)
    with_all = narrowing(rows_all)
    out = []
    for k, target in enumerate(targets):
        rows = accepted([j for j in every if j != k], None, len(rows_all))
        without = narrowing(rows)
        draws = pl.DataFrame({"target": [target.name] * len(rows), "value": stats[rows, k]})
        check = ppc_table(draws, [target], interval, MAX_WIDTH if max_width is None else max_width).row(
            0, named=True
        )
        for p in params:
            out.append(
                {
                    "left_out": target.name,
                    "parameter": p.key,
                    "narrowing_all": with_all[p.key],
                    "narrowing_without": without[p.key],
                    "accepted": len(rows),
                    **{
                        c: check[c]
                        for c in ("observed", "scale", "median", "low", "high", "z", "width", "verdict")
                    },
                }
            )
    return pl.DataFrame(out)


def amortised_leave_one_out(
    overrides: Sequence[str], size: int, out_dir: Path, how: Rejection
) -> pl.DataFrame:
    """:func:`leave_one_target_out` of the calibration ``overrides`` compose, on its reference
    table of ``size`` prior draws (:func:`reference_table`, in ``out_dir``); writes and returns
    the rows (``leave_one_out.parquet``)."""
    config, table, fitted = _table_of(overrides, size, out_dir)
    if len(fitted) < 2:
        raise UserError(f"calibration.targets: {len(fitted)} fitted: allowed: 2 or more to leave one out")
    rows = leave_one_target_out(
        parameters_of(config),
        table,
        fitted,
        how,
        interval=config.calibration.interval,
        max_width=config.calibration.max_width,
    )
    write_parquet(rows, out_dir / LEAVE_ONE_OUT)
    return rows
