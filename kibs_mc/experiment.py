"""One experiment, end to end: plan, run chunks on an executor, store, summarise, track."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kibs_mc.config import Config, PrecisionConfig
from kibs_mc.effects import add_effects_to_summary, choose_baseline, paired_effects
from kibs_mc.errors import ConfigError
from kibs_mc.executor import make_executor
from kibs_mc.limits import check_resources, local_workers
from kibs_mc.plan import Plan, Scenario, auto_chunk_size, build_scenarios
from kibs_mc.plots import make_plots
from kibs_mc.report import headline, write_report
from kibs_mc.results import ResultStore, summarize, write_parquet, write_summary
from kibs_mc.simulate import outcome_columns, run_chunk
from kibs_mc.sweep import points_frame, sensitivity


@dataclass
class ExperimentResult:
    run_dir: Path
    rows: pl.DataFrame
    summary: pl.DataFrame
    scenarios: list[Scenario]
    outcomes: list[str]
    mlflow_run_id: str | None
    computed_chunks: int
    reused_chunks: int
    failed: pl.DataFrame | None = None  # replicates that raised: scenario, replicate, seed, error
    effects: pl.DataFrame | None = None  # paired effects against the baseline
    baseline: str | None = None
    report: Path | None = None
    notes: list[str] = field(default_factory=list)  # e.g. adaptive stopping per scenario
    sampled: list[str] = field(default_factory=list)  # scenarios that are sweep points


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]replicates"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[ci]}"),
        console=console, transient=False,
    )


def running_precision(store: ResultStore, outcome: str) -> str:
    """The progress display's precision so far: the widest 95% CI half-width of ``outcome``
    over the scenarios, from the summaries kept while results are written (this invocation's
    replicates)."""
    half = store.summary.widest_half_width(outcome)
    return "" if half is None else f"{outcome} ±{half:.3g}"


def run_experiment(
    config: Config,
    overrides: Sequence[str],
    run_dir: Path,
    console: Console | None = None,
) -> ExperimentResult:
    """Run every scenario's replicates and write the results into ``run_dir``.

    Args:
        config: the validated configuration of the invocation.
        overrides: the invocation's command-line overrides (scenarios are composed on top).
        run_dir: where Parquet files, the resolved config and chunk parts go.
    """
    started = time.monotonic()
    console = console or Console(stderr=True)
    run_dir = Path(run_dir)
    scenarios = build_scenarios(config, overrides)  # validates every scenario before any work
    outcomes = list(outcome_columns(scenarios[0].config.model.name))  # one model per experiment
    precision = config.experiment.precision
    if precision.outcome is not None and precision.outcome not in outcomes:
        raise ConfigError("experiment.precision.outcome", precision.outcome,
                          "allowed: one of " + ", ".join(outcomes))
    most = config.replicates if precision.outcome is None else \
        max(config.replicates, config.experiment.max_replicates)
    check_resources([sc.config for sc in scenarios], len(outcomes), most,
                    local_workers(config.executor), run_dir)
    store = ResultStore(run_dir)
    notes: list[str] = []
    with make_executor(config.executor) as executor:
        chunk_size = config.executor.chunk_size or (config.resume and store.recorded_chunk_size()) or \
            auto_chunk_size(config.replicates, len(scenarios), executor.workers,
                            replicate_seconds(scenarios[0], config.seed, executor.workers))
        plan = Plan(scenarios, config.replicates, config.seed, chunk_size)
        done = store.open(plan.fingerprint(), chunk_size, config.resume, overrides)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(config)))
        reused = len(done)
        computed = 0
        counts = {sc.index: 0 for sc in scenarios}
        targets = {sc.index: config.replicates for sc in scenarios}
        with _progress(console) as progress:
            task = progress.add_task("run", total=sum(targets.values()), ci="")
            watched = precision.outcome or headline(outcomes, limit=1)[0]
            while True:
                ranges = {i: (counts[i], targets[i]) for i in counts if targets[i] > counts[i]}
                todo = [c for c in plan.chunks(ranges) if c.key not in done]
                progress.update(task, total=sum(targets.values()),
                                completed=sum(targets.values()) - sum(len(c.replicates) for c in todo))
                try:
                    for chunk, result in executor.map_unordered(run_chunk, todo):
                        store.write(result)
                        computed += 1
                        progress.update(task, advance=len(chunk.replicates),
                                        ci=running_precision(store, watched))
                finally:
                    store.flush()  # interrupted or failed: what completed stays on disk for resume
                counts.update({i: b for i, (_, b) in ranges.items()})
                if precision.outcome is None:
                    break
                rows = store.finalize([s.name for s in scenarios])
                targets, status = next_targets(rows, scenarios, counts, precision,
                                               config.experiment.max_replicates, chunk_size)
                if all(targets[i] <= counts[i] for i in counts):
                    notes = precision_notes(status, precision)
                    break
    rows = store.finalize([s.name for s in scenarios])
    failed = store.errors()
    for error in failed.head(10).iter_rows(named=True):
        print(f"kibs-mc: replicate failed: scenario={error['scenario']} replicate={error['replicate']} "
              f"seed={error['seed']}: {error['error']}", file=sys.stderr)
    if failed.height:
        print(f"kibs-mc: {failed.height} replicates failed (all listed in {run_dir / 'errors.parquet'}); "
              "the other results are kept.", file=sys.stderr)
    summary = summarize(rows, outcomes)
    names = [sc.name for sc in scenarios]
    baseline = choose_baseline(names, config.experiment.baseline)
    effects = paired_effects(rows, outcomes, baseline, seed=config.seed)
    write_parquet(effects, run_dir / "effects.parquet")
    summary = add_effects_to_summary(summary, effects)
    write_summary(summary, run_dir)
    sweep = config.experiment.sweep
    points = indices = None
    if sweep.method is not None:
        points = points_frame(sweep, config.seed)
        numeric = [o for o in outcomes if rows.height and rows.schema[o] != pl.Boolean]
        indices = sensitivity(rows, sweep, config.seed, numeric)
        write_parquet(indices, run_dir / "sensitivity.parquet")
    figures = make_plots(run_dir, rows, effects, names, outcomes, points, indices)
    sampled = set(points["scenario"].to_list()) if points is not None else set()
    report_md, _ = write_report(
        run_dir, f"kibs-mc experiment `{config.experiment.name}`: {len(rows)} replicates",
        (run_dir / "config.yaml").read_text(),
        summary.filter(~pl.col("scenario").is_in(sampled)),
        effects.filter(~pl.col("scenario").is_in(sampled)), outcomes, figures, notes, indices)
    run_id = None
    if config.tracking.enabled:
        from kibs_mc.tracking import log_experiment

        try:
            run_id = log_experiment(config.tracking, config, scenarios, summary, run_dir,
                                    run_metrics={"wall_seconds": time.monotonic() - started,
                                                 "replicates_total": float(rows.height),
                                                 "chunks_computed": float(computed),
                                                 "chunks_reused": float(reused)})
        except Exception as exc:  # noqa: BLE001 - tracking must never cost results
            print(
                f"kibs-mc: warning: MLflow logging to {config.tracking.uri} failed "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                f"The results are safe in {run_dir}; log them later with: "
                f"python -m kibs_mc.tracking {run_dir} tracking.uri=<uri>",
                file=sys.stderr,
            )
    return ExperimentResult(run_dir, rows, summary, scenarios, outcomes, run_id,
                            computed, reused, failed if failed.height else None,
                            effects=effects, baseline=baseline, report=report_md, notes=notes,
                            sampled=sorted(sampled))


#: From this many workers on, the automatic chunk size depends on a measured replicate time
#: (below it, four tasks per worker and at most plan.MAX_AUTO_CHUNK replicates already keep
#: the driver's share of the work small; docs/performance.md).
TIMED_CHUNKS_FROM_WORKERS = 16


def replicate_seconds(scenario: Scenario, seed: int, workers: int) -> float | None:
    """Seconds one replicate of ``scenario`` takes here, for sizing chunks on big clusters.

    Runs replicate 0 twice in the driver (the first call loads or compiles the kernels); its
    result is discarded. None below TIMED_CHUNKS_FROM_WORKERS workers, where it is not needed.
    """
    if workers < TIMED_CHUNKS_FROM_WORKERS:
        return None
    probe = next(Plan([scenario], 1, seed, 1).chunks())
    run_chunk(probe)
    return run_chunk(probe).seconds


def next_targets(
    rows: pl.DataFrame, scenarios: Sequence[Scenario], counts: dict[int, int],
    precision: PrecisionConfig, max_replicates: int, chunk_size: int,
) -> tuple[dict[int, int], list[dict]]:
    """Replicates each scenario should reach next, from its current CI half-width.

    A scenario short of its target gets n * (h / target)^2 replicates (the CI half-width
    shrinks as 1/sqrt(n)), at least one more chunk, at most four times as many as it has (a
    noisy early estimate must not launch a huge round), and never more than max_replicates.
    """
    # Only the replicates each scenario has reached so far count: a resumed run may find more
    # on disk, and must take the same decisions as the run it continues.
    reached_counts = {sc.name: counts[sc.index] for sc in scenarios}
    limit = pl.col("scenario").replace_strict(reached_counts, return_dtype=pl.Int64)
    rows = rows.filter(pl.col("replicate") < limit)
    assert precision.outcome is not None  # only adaptive runs come here
    summary = summarize(rows, [precision.outcome])
    targets = dict(counts)
    status = []
    for sc in scenarios:
        found = summary.filter(pl.col("scenario") == sc.name)
        n = counts[sc.index]
        if found.height == 0:  # every replicate so far failed: nothing to estimate from
            status.append({"scenario": sc.name, "n": n, "half_width": float("inf"),
                           "target": float("nan"), "reached": False})
            continue
        r = found.row(0, named=True)
        half = (r["ci_high"] - r["ci_low"]) / 2 if r["n"] > 1 else float("inf")
        goal = precision.half_width * abs(r["mean"]) if precision.relative else precision.half_width
        reached = half <= goal
        if not reached and n < max_replicates:
            wanted = math.ceil(n * (half / goal) ** 2) if goal > 0 and math.isfinite(half) else 4 * n
            targets[sc.index] = min(max_replicates, max(wanted, n + chunk_size), 4 * n)
        status.append({"scenario": sc.name, "n": n, "half_width": half, "target": goal,
                       "reached": reached})
    return targets, status


def precision_notes(status: list[dict], precision: PrecisionConfig) -> list[str]:
    """Which scenarios reached the precision target and which stopped at max_replicates."""
    kind = "relative " if precision.relative else ""
    notes = []
    for s in status:
        verdict = "reached the target" if s["reached"] else "stopped at experiment.max_replicates"
        notes.append(f"`{s['scenario']}`: {verdict}: 95% CI half-width of `{precision.outcome}` "
                     f"{s['half_width']:.4g} vs {kind}target {s['target']:.4g} with n={s['n']}.")
    return notes
