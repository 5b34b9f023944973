"""One experiment, end to end: plan -> execute -> analyse -> report -> track.

Each stage is its own function; the experiment kind (``experiment.kind``) decides the
scenarios and adds its own analysis, the model (``model.name``) the outcomes. Results reach
the disk as they come (``kibs_mc.run.store``), so an interrupted or failed run keeps every
completed chunk for ``resume=true``.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kibs_mc.analysis.effects import (
    add_effects_to_summary,
    choose_baseline,
    decide_effects,
    paired_effects,
)
from kibs_mc.analysis.inference import ErrorRate, contrasts, ranks
from kibs_mc.analysis.plots import make_plots
from kibs_mc.analysis.report import Findings, write_report
from kibs_mc.analysis.statistics import summarize
from kibs_mc.config import Config
from kibs_mc.errors import ConfigError, first_line
from kibs_mc.experiments.kind import NO_TABLE, ExperimentKind, ExperimentResult, Finished, KindOutput
from kibs_mc.experiments.registry import get_kind
from kibs_mc.experiments.rounds import (
    PrecisionRounds,
    Round,
    Rounds,
    SelectionRounds,
    larger_is_better,
)
from kibs_mc.models import Model, get_model, headline
from kibs_mc.run.adaptive import Contest, Selection, selection_first_round
from kibs_mc.run.chunk import run_chunk
from kibs_mc.run.executor import Executor, local_workers, make_executor
from kibs_mc.run.interrupt import deferred_interrupts
from kibs_mc.run.limits import check_resources
from kibs_mc.run.lock import lock_run_dir, unlock_run_dir
from kibs_mc.run.plan import Plan, Scenario, adaptive_settings, auto_chunk_size, build_scenarios, plan_inputs
from kibs_mc.run.store import (
    ResultStore,
    out_of_space,
    refused_write,
    write_parquet,
    write_summary,
    write_text_atomic,
)
from kibs_mc.terminal import run_size, with_verdict

__all__ = ["ExperimentResult", "analyse", "execute", "plan", "run_experiment", "track"]


@dataclass
class Planned:
    """The validated plan of an experiment, before any work: every scenario composed, and
    what the rounds and the analysis compare (decided once, here)."""

    config: Config
    overrides: Sequence[str]
    run_dir: Path
    kind: ExperimentKind
    model: Model
    scenarios: list[Scenario]
    outcomes: list[str]
    baseline: str  # the scenario effects are measured against
    candidates: list[str]  # the listed scenarios but the baseline (what a selection chooses among)
    watched: str  # the outcome whose precision the progress display shows


@dataclass
class Executed:
    """What running the plan left in the run directory."""

    store: ResultStore
    rows: pl.DataFrame
    failed: pl.DataFrame
    computed: int
    reused: int
    notes: list[str]
    selection: Selection | None = None  # the certified best scenario, with experiment.selection


def run_experiment(
    config: Config,
    overrides: Sequence[str],
    run_dir: Path,
    console: Console | None = None,
) -> ExperimentResult:
    """Run every scenario's replicates and write the results into ``run_dir``.

    The run holds the run directory's lock throughout (a second run into it is refused with
    exit 2), and a Ctrl-C stops it between replicates (KeyboardInterrupt, completed chunks on
    disk). A file system that refuses a write (full, read-only) ends it with ExecutionError.

    Args:
        config: the validated configuration of the invocation.
        overrides: the invocation's command-line overrides (scenarios are composed on top).
        run_dir: where Parquet files, the resolved config and chunk parts go.
    """
    started, started_at = time.monotonic(), time.time()
    run_dir = Path(run_dir)
    console = console or Console(stderr=True)
    taken = lock_run_dir(run_dir)
    try:
        with deferred_interrupts():
            kind = get_kind(config)
            if kind.runs_itself:
                result, ran = run_itself(kind, config, overrides, run_dir, console)
                scenarios, summary, metrics = [], NO_TABLE, ran.metrics
            else:
                planned = plan(*kind.prepare(config, overrides), run_dir, kind)
                executed = execute(planned, console)
                result = analyse(planned, executed)
                config, scenarios = planned.config, planned.scenarios
                summary = with_verdict(result.summary, result.effects)
                metrics = {
                    "replicates_total": float(result.rows.height),
                    "chunks_computed": float(executed.computed),
                    "chunks_reused": float(executed.reused),
                }
            metrics = {"wall_seconds": time.monotonic() - started, **metrics}
            result.mlflow_run_id = track(
                config, scenarios, run_dir, summary, metrics, (started_at, time.time())
            )
            return result
    except Exception as exc:  # e.g. the disk filled up while figures or the report were written
        if (code := refused_write(exc)) is not None:
            raise out_of_space(code, run_dir) from None
        raise
    finally:
        if taken:
            unlock_run_dir(run_dir)


def run_itself(
    kind: ExperimentKind, config: Config, overrides: Sequence[str], run_dir: Path, console: Console
) -> tuple[ExperimentResult, KindOutput]:
    """A kind that is no plan of scenarios (``calibrate``) runs on the configured executor;
    its configuration, report and MLflow steps are written here, as every experiment's are."""
    # No announcer: the ABC sampler's tasks carry the executor, and a console does not pickle.
    with make_executor(config.executor) as executor:
        ran = kind.run(config, overrides, run_dir, executor, console)
    write_config(config, run_dir)
    report_md, _ = write_report(
        run_dir,
        title=f"kibs-mc experiment `{config.experiment.name}`: {ran.title}",
        figures=ran.figures,
        text={"sections": ran.sections, "notes": ran.notes, "summary": ran.summary or []},
    )
    if ran.steps:
        from kibs_mc.tracking.mlflow import STEPS_FILE

        write_text_atomic(run_dir / STEPS_FILE, json.dumps(ran.steps))
    rows = ran.rows if ran.rows is not None else NO_TABLE
    return ExperimentResult(
        run_dir=run_dir, rows=rows, report=report_md, notes=ran.notes, lines=ran.lines
    ), ran


def write_config(config: Config, run_dir: Path) -> None:
    """The resolved configuration, ``config.yaml``: what the report shows and a later logging reads."""
    write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(config)))


def plan(
    config: Config, overrides: Sequence[str], run_dir: Path, kind: ExperimentKind | None = None
) -> Planned:
    """Compose and validate every scenario and check the machine can hold the run (exit 2
    otherwise), before any work starts. ``kind``: the checked kind of ``config``."""
    kind = kind or get_kind(config)
    specs = kind.scenario_specs(config, overrides)
    scenarios = [
        replace(sc, first_replicate=first) if first else sc
        for sc, first in zip(
            build_scenarios(config, overrides, specs), kind.first_replicates(config, specs), strict=True
        )
    ]
    model = get_model(scenarios[0].config.model.name)  # one model per experiment
    outcomes = list(model.outcomes)
    names = [sc.name for sc in scenarios]
    exp = config.experiment
    baseline = choose_baseline(names, exp.baseline)
    chosen = [s.name for s in exp.scenarios if s.name in names and s.name != baseline]
    _check_adaptive(config, outcomes, chosen)
    adaptive = exp.precision.outcome is not None or exp.selection.outcome is not None
    most = max(config.replicates, exp.max_replicates) if adaptive else config.replicates
    columns = len(outcomes) + len(model.accounts)  # a row's outcomes and records
    check_resources([sc.config for sc in scenarios], columns, most, local_workers(config.executor), run_dir)
    watched = exp.precision.outcome or exp.selection.outcome or headline(model, limit=1)[0]
    return Planned(config, overrides, run_dir, kind, model, scenarios, outcomes, baseline, chosen, watched)


def _check_adaptive(config: Config, outcomes: Sequence[str], candidates: Sequence[str]) -> None:
    """The adaptive rule names an outcome of the model, one rule at a time, and a selection
    has at least two candidates (ConfigError otherwise)."""
    precision, selection = config.experiment.precision, config.experiment.selection
    if precision.outcome is not None and precision.outcome not in outcomes:
        raise ConfigError(
            "experiment.precision.outcome", precision.outcome, "allowed: one of " + ", ".join(outcomes)
        )
    if selection.outcome is None:
        return
    if selection.outcome not in outcomes:
        raise ConfigError(
            "experiment.selection.outcome", selection.outcome, "allowed: one of " + ", ".join(outcomes)
        )
    if precision.outcome is not None:
        raise ConfigError(
            "experiment.selection.outcome",
            selection.outcome,
            "allowed: null while experiment.precision.outcome is set (one adaptive rule per run)",
        )
    if len(candidates) < 2:
        raise ConfigError(
            "experiment.selection.outcome",
            selection.outcome,
            "allowed: null with fewer than two listed scenarios besides the baseline",
        )
    if selection.first_stage > config.experiment.max_replicates:
        raise ConfigError(
            "experiment.selection.first_stage",
            selection.first_stage,
            f"allowed: at most experiment.max_replicates ({config.experiment.max_replicates})",
        )


def choose_rounds(planned: Planned, chunk_size: int) -> Rounds:
    """What to run next (:mod:`kibs_mc.experiments.rounds`): KN selection with
    ``experiment.selection``, precision rounds with ``experiment.precision``, else the kind's
    own rounds (whose first round the adaptive rules start from too)."""
    config, scenarios = planned.config, planned.scenarios
    exp = config.experiment
    own = planned.kind.rounds(config, scenarios)
    if exp.selection.outcome is not None:
        better = larger_is_better(planned.model, exp.selection.outcome, exp.selection.larger_is_better)
        contest = Contest(exp.selection, planned.candidates, better)
        first = selection_first_round(scenarios, exp.selection)
        return SelectionRounds(first, scenarios, contest, exp.max_replicates, chunk_size)
    if exp.precision.outcome is not None:
        return PrecisionRounds(
            own.first(), scenarios, exp.precision, exp.max_replicates, chunk_size, planned.baseline
        )
    return own


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]replicates"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[ci]}"),
        console=console,
        transient=False,
    )


def running_precision(store: ResultStore, outcome: str) -> str:
    """The progress display's precision so far: the widest 95% CI half-width of ``outcome``
    over the scenarios, from the summaries kept while results are written (this invocation's
    replicates)."""
    half = store.summary.widest_half_width(outcome)
    return "" if half is None else f"{outcome} ±{half:.3g}"


def execute(planned: Planned, console: Console) -> Executed:
    """Run the plan's rounds on the configured executor until no round is left, writing each
    result as it arrives."""
    store = ResultStore(planned.run_dir)
    names = [sc.name for sc in planned.scenarios]
    with make_executor(planned.config.executor, _announcer(console)) as executor:
        run_plan, done = _open(planned, store, executor)
        rounds = choose_rounds(planned, run_plan.chunk_size)
        counts = {sc.index: 0 for sc in planned.scenarios}
        step, computed = Round(rounds.first()), 0
        with _progress(console) as progress:
            task = progress.add_task("run", total=sum(step.targets.values()), ci="")
            while step.left(counts):
                ranges = {i: (counts[i], step.targets[i]) for i in counts if step.targets[i] > counts[i]}
                todo = [c for c in run_plan.chunks(ranges) if c.key not in done]
                total = sum(step.targets.values())
                progress.update(task, total=total, completed=total - sum(len(c.replicates) for c in todo))
                computed += _run_round(executor, store, todo, progress, task, planned.watched)
                counts.update({i: b for i, (_, b) in ranges.items()})
                step = rounds.after(lambda: store.finalize(names), counts)
    rows = store.finalize(names)
    if not planned.config.keep_parts:
        store.compact()  # a finished run keeps one part, not thousands of small files
    return Executed(store, rows, store.errors(), computed, len(done), step.notes, step.selection)


def _announcer(console: Console) -> Callable[[str], None]:
    def announce(line: str) -> None:  # one line, however narrow the terminal
        console.print(line, soft_wrap=True, highlight=False, markup=False)

    return announce


def _open(planned: Planned, store: ResultStore, executor: Executor) -> tuple[Plan, set[str]]:
    """The plan cut into chunks of the chosen size, and the chunks the store already holds
    (``resume=true``); the resolved configuration is written beside them."""
    config, scenarios = planned.config, planned.scenarios
    chunk_size = (
        config.executor.chunk_size
        or (config.resume and store.recorded_chunk_size())
        or auto_chunk_size(
            config.replicates,
            len(scenarios),
            executor.workers,
            replicate_seconds(scenarios[0], config.seed, executor.workers),
        )
    )
    run_plan = Plan(scenarios, config.replicates, config.seed, chunk_size, adaptive_settings(config))
    done = store.open(
        run_plan.fingerprint(),
        chunk_size,
        config.resume,
        planned.overrides,
        [(sc.name, sc.overrides) for sc in scenarios],
        plan_inputs(config, chunk_size),
    )
    write_config(config, planned.run_dir)
    return run_plan, done


def _run_round(
    executor: Executor, store: ResultStore, todo: list, progress: Progress, task: TaskID, watched: str
) -> int:
    """Run ``todo`` and write each result as it arrives; returns the chunks computed."""
    computed = 0
    # The bar advances as soon as a chunk is computed (the executor may hold results back, e.g.
    # while a local Ray cluster starts and the driver computes), the precision as it is stored.
    executor.on_computed = lambda chunk: progress.update(task, advance=len(chunk.replicates))
    try:
        for _chunk, result in executor.map_unordered(run_chunk, todo):
            store.write(result)
            computed += 1
            progress.update(task, ci=running_precision(store, watched))
    finally:
        executor.on_computed = None
        store.flush()  # interrupted or failed: what completed stays on disk for resume
    return computed


def analyse(planned: Planned, executed: Executed) -> ExperimentResult:
    """Summary, paired effects, the kind's own analysis, figures and the report."""
    config, run_dir, rows, exp = planned.config, planned.run_dir, executed.rows, planned.config.experiment
    _say_failed(executed.failed, run_dir)
    shown = headline(planned.model)
    names = [sc.name for sc in planned.scenarios]
    effects = _effects(
        rows,
        planned.outcomes,
        planned.kind.baselines(config, names),
        confidence=1 - exp.alpha,
        min_effect=exp.min_effect,
        relative=exp.min_effect_relative,
        cost=planned.model.cost,
    )
    extra: KindOutput = planned.kind.analyse(
        Finished(config, run_dir, rows, planned.outcomes, shown, effects)
    )
    if extra.children is not None:
        from kibs_mc.tracking.mlflow import CHILDREN_FILE

        (run_dir / CHILDREN_FILE).write_text(json.dumps(extra.children))
    listed = [n for n in names if n not in extra.unlisted]
    decided = [o for o in shown if rows.height and rows.schema[o] != pl.Boolean]
    tables = _decide(planned, rows, effects, listed, decided, executed.selection)
    figures = [*extra.figures]
    if config.figures:
        figures[:0] = make_plots(run_dir, rows, tables["effects"], names, listed, planned.outcomes)
    findings = _findings(planned, tables, listed, decided)
    report_md, _ = write_report(
        run_dir,
        title=f"kibs-mc experiment `{exp.name}`: {run_size(rows, listed or names)}",
        headline=shown,
        tables={
            name: tables[name].filter(pl.col("scenario").is_in(listed)) for name in ("summary", "effects")
        },
        figures=figures,
        text={
            "notes": executed.notes,
            "sections": extra.sections,
            "summary": extra.summary if extra.summary is not None else [] if findings else extra.lines,
        },
        findings=findings,
    )
    if executed.failed.height:
        tables["failed"] = executed.failed
    return ExperimentResult(
        run_dir=run_dir,
        rows=rows,
        scenarios=planned.scenarios,
        outcomes=planned.outcomes,
        headline=shown,
        tables=tables,
        computed_chunks=executed.computed,
        reused_chunks=executed.reused,
        baseline=planned.baseline,
        report=report_md,
        notes=[*executed.notes, *extra.notes],
        sampled=sorted(extra.unlisted),
        lines=extra.lines,
    )


def _say_failed(failed: pl.DataFrame, run_dir: Path) -> None:
    """The first replicates that raised, and how many, on stderr (all in errors.parquet)."""
    for error in failed.head(10).iter_rows(named=True):
        print(
            f"kibs-mc: replicate failed: scenario={error['scenario']} replicate={error['replicate']} "
            f"seed={error['seed']}: {error['error']}",
            file=sys.stderr,
        )
    if failed.height:
        print(
            f"kibs-mc: {failed.height} replicates failed (all listed in {run_dir / 'errors.parquet'}); "
            "the other results are kept.",
            file=sys.stderr,
        )


def _decide(
    planned: Planned,
    rows: pl.DataFrame,
    effects: pl.DataFrame,
    listed: Sequence[str],
    decided: Sequence[str],
    selection: Selection | None,
) -> dict[str, pl.DataFrame]:
    """The contrasts of every pair of listed scenarios and their ranks on the ``decided``
    outcomes, the effects decided with them, the summary with both, and a selection's table;
    each written into the run directory."""
    run_dir, exp = planned.run_dir, planned.config.experiment
    lower = [o for o in planned.outcomes if not larger_is_better(planned.model, o)]
    margin, relative, error = exp.min_effect, exp.min_effect_relative, ErrorRate(exp.alpha, exp.adjust)
    family = contrasts(rows, decided, listed, planned.baseline, margin, relative, error)
    ranked = ranks(rows, decided, listed, lower, exp.alpha)
    effects = decide_effects(effects, family, exp.alpha, exp.adjust)
    write_parquet(effects, run_dir / "effects.parquet")
    write_parquet(family, run_dir / "contrasts.parquet")
    write_parquet(ranked, run_dir / "ranks.parquet")
    summary = summarize(rows, planned.outcomes)
    tables = {"effects": effects, "contrasts": family, "ranks": ranked}
    if selection is not None:
        means = {
            r["scenario"]: r["mean"]
            for r in summary.filter(pl.col("outcome") == selection.outcome).iter_rows(named=True)
        }
        tables["selection"] = selection.frame(means)
        write_parquet(tables["selection"], run_dir / "selection.parquet")
    summary = add_effects_to_summary(summary, effects).join(
        ranked.select("scenario", "outcome", "rank", "rank_low", "rank_high"),
        on=["scenario", "outcome"],
        how="left",
        maintain_order="left",
    )
    write_summary(summary, run_dir)
    return {"summary": summary, **tables}


def _findings(
    planned: Planned, tables: dict[str, pl.DataFrame], listed: Sequence[str], decided: Sequence[str]
) -> Findings | None:
    """What the report's executive summary reads: the contrasts and ranks on the objective
    (the selection's outcome, else the first decided headline outcome); None without one."""
    exp = planned.config.experiment
    objective = exp.selection.outcome or (decided[0] if decided else None)
    if objective is None or not tables["ranks"].height:
        return None
    return Findings(
        objective,
        planned.baseline,
        tables["contrasts"],
        tables["ranks"],
        tables["effects"].filter(pl.col("scenario").is_in(listed)),
        exp.min_effect,
        exp.min_effect_relative,
        exp.alpha,
        exp.adjust,
        tables.get("selection"),
        planned.model.cost,
        planned.kind.parameters(planned.config),
        calibrated=planned.kind.calibrated(planned.config),
    )


def _effects(
    rows: pl.DataFrame, outcomes: Sequence[str], baselines: dict[str, str], **options: Any
) -> pl.DataFrame:
    """Paired effects of each scenario against its own baseline (one group per baseline, e.g.
    per world of a robustness experiment)."""
    groups: dict[str, list[str]] = {}
    for name, base in baselines.items():
        groups.setdefault(base, []).append(name)
    if len(groups) == 1:
        return paired_effects(rows, outcomes, next(iter(groups)), **options)
    parts = [
        paired_effects(rows.filter(pl.col("scenario").is_in([base, *names])), outcomes, base, **options)
        for base, names in groups.items()
    ]
    return pl.concat(parts)


def track(
    config: Config,
    scenarios: Sequence[Scenario],
    run_dir: Path,
    summary: pl.DataFrame,
    run_metrics: dict[str, float],
    period: tuple[float, float] | None = None,
) -> str | None:
    """Log the experiment to MLflow (when ``tracking.enabled``); returns the parent run id.
    ``period``: when the experiment started and ended (seconds since the epoch).
    A store that fails costs nothing: the results are on disk, and the message says how to
    log them later."""
    if not config.tracking.enabled:
        return None
    from kibs_mc.tracking.mlflow import log_experiment

    try:
        return log_experiment(
            config.tracking, config, scenarios, summary, run_dir, run_metrics=run_metrics, period=period
        )
    except Exception as exc:  # noqa: BLE001 - tracking must never cost results
        print(
            f"kibs-mc: warning: MLflow logging to {config.tracking.uri} failed "
            f"({type(exc).__name__}: {first_line(exc) if str(exc) else ''}). "
            f"The results are safe in {run_dir}; log them later with: "
            f"python -m kibs_mc.tracking {run_dir} tracking.uri={shlex.quote(config.tracking.uri)}",
            file=sys.stderr,
        )
        return None


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
