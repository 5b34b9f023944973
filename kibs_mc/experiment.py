"""One experiment, end to end: plan, run chunks on an executor, store, summarise, track."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
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

from kibs_mc.config import Config
from kibs_mc.executor import make_executor
from kibs_mc.limits import check_resources, local_workers
from kibs_mc.plan import Plan, Scenario, auto_chunk_size, build_scenarios
from kibs_mc.results import ResultStore, summarize, write_summary
from kibs_mc.simulate import outcome_columns, run_chunk


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


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]replicates"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False,
    )


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
    console = console or Console(stderr=True)
    run_dir = Path(run_dir)
    scenarios = build_scenarios(config, overrides)  # validates every scenario before any work
    outcomes: list[str] = []
    for sc in scenarios:
        for name in outcome_columns(sc.config.model.name):
            if name not in outcomes:
                outcomes.append(name)
    check_resources([sc.config.model for sc in scenarios], len(outcomes), config.replicates,
                    local_workers(config.executor), run_dir)
    store = ResultStore(run_dir)
    with make_executor(config.executor) as executor:
        chunk_size = config.executor.chunk_size or (config.resume and store.recorded_chunk_size()) or \
            auto_chunk_size(config.replicates, len(scenarios), executor.workers)
        plan = Plan(scenarios, config.replicates, config.seed, chunk_size)
        done = store.open(plan.fingerprint(), chunk_size, config.resume, overrides)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(config)))
        todo = [c for c in plan.chunks() if c.key not in done]
        reused = len(done)
        with _progress(console) as progress:
            task = progress.add_task("run", total=plan.total,
                                     completed=plan.total - sum(len(c.replicates) for c in todo))
            try:
                for chunk, result in executor.map_unordered(run_chunk, todo):
                    store.write(result)
                    progress.advance(task, len(chunk.replicates))
            finally:
                store.flush()  # interrupted or failed: what completed stays on disk for resume
    rows = store.finalize([s.name for s in scenarios])
    failed = store.errors()
    for error in failed.head(10).iter_rows(named=True):
        print(f"kibs-mc: replicate failed: scenario={error['scenario']} replicate={error['replicate']} "
              f"seed={error['seed']}: {error['error']}", file=sys.stderr)
    if failed.height:
        print(f"kibs-mc: {failed.height} replicates failed (all listed in {run_dir / 'errors.parquet'}); "
              "the other results are kept.", file=sys.stderr)
    summary = summarize(rows, outcomes)
    write_summary(summary, run_dir)
    run_id = None
    if config.tracking.enabled:
        from kibs_mc.tracking import log_experiment

        try:
            run_id = log_experiment(config.tracking, config, scenarios, summary, run_dir)
        except Exception as exc:  # noqa: BLE001 - tracking must never cost results
            print(
                f"kibs-mc: warning: MLflow logging to {config.tracking.uri} failed "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                f"The results are safe in {run_dir}; log them later with: "
                f"python -m kibs_mc.tracking {run_dir} tracking.uri=<uri>",
                file=sys.stderr,
            )
    return ExperimentResult(run_dir, rows, summary, scenarios, outcomes, run_id,
                            len(todo), reused, failed if failed.height else None)
