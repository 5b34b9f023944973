"""The ``kibs-mc`` command: Hydra overrides in, one experiment out.

Exit status: 0 success; 1 a task failed for good after its retries (completed chunks kept);
2 bad configuration or input (one message, no traceback); 3 finished, but some replicates
raised (listed in ``errors.parquet``; the others are kept); 130 interrupted by Ctrl-C, 143 by
SIGTERM (``kill``, Slurm's ``scancel``); completed chunks stay on disk for ``resume=true``. A
Hydra multirun (``-m``) runs every job and exits with the highest status of its jobs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from kibs_mc.config import CONF_DIR, load_config, sweep_checks, to_config
from kibs_mc.errors import ConfigError, ExecutionError, UserError, redact_environment
from kibs_mc.experiments import ExperimentResult, run_experiment
from kibs_mc.run import interrupt
from kibs_mc.run.lock import lock_run_dir
from kibs_mc.terminal import results_table, run_size, verdict_column, with_verdict
from kibs_mc.tracking.mlflow import hide_credentials, hide_uri_override

#: Highest exit status of the jobs of a multirun so far (a job's failure must not stop the sweep).
_multirun_status = 0
#: The finished jobs of a multirun, compared side by side after the last one.
_multirun_jobs: list[ExperimentResult] = []
_multirun_dir: list[Path] = []  # the sweep directory, once known


#: Hydra's launcher that runs a multirun's jobs in this process, one after the other.
LOCAL_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


class JobFailed(RuntimeError):
    """A multirun job that failed, in a launcher that runs jobs in other processes (e.g. a
    Slurm array task of ``hydra/launcher=submitit_slurm``): raised so that the launcher sees the
    job fail (a status kept in that process's memory would be lost, and the sweep exit 0)."""


def finish(status: int) -> None:
    """End a job with ``status``: exit now, or in a multirun, remember it and go on (or, where
    the job runs in another process, raise JobFailed so the launching process fails)."""
    global _multirun_status
    if status == 0:
        return
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        if HydraConfig.get().launcher.get("_target_", LOCAL_LAUNCHER) != LOCAL_LAUNCHER:
            raise JobFailed(f"kibs-mc job {HydraConfig.get().job.num} ended with exit status {status}")
        _multirun_status = max(_multirun_status, status)
        return
    sys.exit(status)


#: Refusals printed so far: a multirun's jobs refused for the same reason say it once.
_refusals: list[str] = []


def fail(error: UserError, config_text: str = "") -> None:
    """Refuse the job with one line (exit status 2); values read from the environment through
    ``${oc.env:...}`` in the overrides or the configuration are not shown."""
    message = redact_environment(f"kibs-mc: {error}", " ".join(sys.argv) + config_text)
    if message not in _refusals:
        print(message, file=sys.stderr)
        _refusals.append(message)
    finish(2)


#: What "clear" means, by the verdict column the analysis wrote.
VERDICTS = {
    "clear": "clear: larger than experiment.min_effect after Holm's correction (effects.parquet)",
    "significant": "clear: the 95% CI excludes 0",
}


def print_results(
    frame: pl.DataFrame,
    outcomes: list[str],
    scenarios: list[str],
    baseline: str | None,
    title: str,
    console: Console,
) -> None:
    """The shared results table (kibs_mc.terminal) and a legend of its words."""
    console.print(results_table(frame, outcomes, scenarios, baseline, title))
    legend = "mean: over replicates, ± the 95% t interval's half-width"
    if baseline is not None and "effect" in frame.columns:
        legend += (
            f"; effect: paired difference from {baseline!r} on the same seeds, ± the 95% "
            "t interval's half-width"
        )
        verdict = verdict_column(frame)
        if verdict:
            legend += "; " + VERDICTS[verdict]
    console.print(legend, style="dim")


#: ``--full`` on the command line: every table in the terminal, not only the answer.
full_tables: list[str] = []


def plain(markdown_line: str) -> str:
    """A Markdown line of the report as terminal text (no emphasis marks, no backticks)."""
    return markdown_line.replace("**", "").replace("`", "")


def print_tables(result: ExperimentResult, console: Console) -> None:
    """The full results: every outcome of every listed scenario, and the kind's own lines."""
    sampled = set(result.sampled)
    listed = [sc.name for sc in result.scenarios if sc.name not in sampled]
    outcomes = [*result.headline, *[o for o in result.outcomes if o not in result.headline]]
    if listed:  # a calibration has no scenarios
        print_results(
            with_verdict(result.summary, result.effects),
            outcomes,
            listed,
            result.baseline if len(listed) > 1 else None,
            run_size(result.rows, listed) + (", common random numbers" if len(listed) > 1 else ""),
            console,
        )
    for line in result.lines:
        console.print(plain(line), markup=False, highlight=False)


def print_summary(result: ExperimentResult, console: Console, full: bool = False) -> None:
    """The end of a run's output: its answer (the report's executive summary: the decision,
    how sure, what it rests on) and where its files are; every table too when ``full`` or when
    the run has no summary."""
    from kibs_mc.analysis.report import read_summary

    answer = read_summary(result.report) if result.report is not None else []
    if full or not answer:
        print_tables(result, console)
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    if answer:
        console.print()
        console.print("[bold]Answer[/] (the executive summary of report.md)")
        for line in answer:  # a bullet's continuation lines indented under its text
            say(console, plain(line), indent="  ")
    console.print()
    console.print(f"results: {result.run_dir}", markup=False, highlight=False, soft_wrap=True)
    if result.report is not None:
        more = "" if full else "; every table in the terminal: add --full"
        files = "report.html, report.md, figures and Parquet tables"
        if not any(Path(result.run_dir).glob("*.png")):  # figures=false
            files = "report.html, report.md and Parquet tables"
        say(console, f"  {files}{more}", indent="  ")
    done = [f"chunks: {result.computed_chunks} computed, {result.reused_chunks} reused"]
    if not (result.computed_chunks or result.reused_chunks):  # a calibration runs no chunks
        done = []
    if result.mlflow_run_id:
        done.append(f"MLflow run {result.mlflow_run_id} (make ui)")
    if done:
        say(console, "; ".join(done), indent="  ")


def say(console: Console, text: str, indent: str = "") -> None:
    """``text`` wrapped at the console's width (80 in a pipe), continuation lines indented."""
    wrapped = textwrap.fill(
        text, width=console.width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False
    )
    console.print(wrapped, markup=False, highlight=False, soft_wrap=True)


#: CPU seconds the first compilation of a model's kernels takes (a tiny run with an empty
#: NUMBA_CACHE_DIR; docs/bench/journal.md); models not measured say no number.
COMPILE_SECONDS = {"kibs": 50}


def kernels_cold(model: str) -> bool:
    """Whether the model's Numba kernels have no compiled copy on disk yet (a fresh install):
    the first run then compiles them before any replicate runs."""
    import kibs_mc.kernels as kernels

    root = Path(os.environ.get("NUMBA_CACHE_DIR") or Path(kernels.__file__).parent)
    return not any(
        p.name.startswith(f"{model}.") or f"/{model}" in str(p.parent) for p in root.rglob("*.nbi")
    )


def announce_compile(model: str, console: Console) -> None:
    if kernels_cold(model):
        seconds = COMPILE_SECONDS.get(model)
        about = f", about {seconds} s on an idle core" if seconds else ""
        console.print(
            f"compiling the {model} model's kernels (first run only{about})...", markup=False, highlight=False
        )


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    console = Console()
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        try:
            config = to_config(cfg)
            announce_compile(config.model.name, Console(stderr=True))
            # A URI from a config file or an interpolation: no credentials in what is written.
            config = replace(
                config, tracking=replace(config.tracking, uri=hide_credentials(config.tracking.uri))
            )
            result = run_experiment(config, list(hc.overrides.task), run_dir)
            print_summary(result, console, full=bool(full_tables))
        except Exception as exc:  # a stop that came out of a library (e.g. Polars) as its own error
            interrupt.raise_if_stopping(exc)
            raise
    except UserError as error:
        fail(error, str(OmegaConf.to_container(cfg, resolve=False)))
        return
    except ExecutionError as error:
        print(
            f"kibs-mc: {error} Completed chunks are kept in {run_dir}; continue with the same "
            f"overrides plus resume=true hydra.run.dir={run_dir}",
            file=sys.stderr,
        )
        finish(1)
        return
    except KeyboardInterrupt:
        how = "terminated (SIGTERM)" if interrupt.by_sigterm() else "interrupted"
        print(
            f"kibs-mc: {how}; completed chunks are kept in {run_dir}. Continue with the "
            f"same overrides plus resume=true hydra.run.dir={run_dir}",
            file=sys.stderr,
        )
        sys.exit(143 if interrupt.by_sigterm() else 130)
    if hc.mode == RunMode.MULTIRUN:
        _multirun_jobs.append(result)
        _multirun_dir[:] = [Path(hc.sweep.dir)]
    if result.failed is not None:
        finish(3)


def job_names(names: list[str]) -> list[str]:
    """Short, distinct names of a multirun's jobs: their scenario names (the jobs' overrides)
    without the words all of them share; ``job <i>`` where that leaves nothing distinct."""
    words = [name.split() for name in names]
    common = set(words[0]).intersection(*words[1:])
    short = [" ".join(w for w in ws if w not in common) for ws in words]
    if len(set(short)) < len(short) or not all(short):
        return [f"job {i}" for i in range(len(names))]
    return short


def compare_jobs(jobs: list[ExperimentResult], sweep_dir: Path, console: Console) -> None:
    """The jobs of a multirun side by side, analysed as one experiment's scenarios: paired
    effects against the first job where they share their seeds (the same ``seed``: replicate r
    of every job starts from the same seed), contrasts, ranks, figures and the report with its
    executive summary, written into the sweep directory; the terminal ends with its answer."""
    from kibs_mc.analysis.statistics import summarize
    from kibs_mc.run.store import write_parquet

    if len(jobs) < 2:
        return
    if any(len(job.scenarios) != 1 for job in jobs) or len({tuple(job.outcomes) for job in jobs}) > 1:
        console.print(
            "multirun: the jobs are not single scenarios of one model, so they are not "
            "tabled together; compare them with kibs-mc-compare diff"
        )
        return
    names = job_names([job.scenarios[0].name for job in jobs])
    rows = pl.concat(
        [job.rows.with_columns(scenario=pl.lit(name)) for name, job in zip(names, jobs, strict=True)],
        how="vertical_relaxed",
    )
    seeds = rows.group_by("replicate").agg(pl.col("seed").n_unique())["seed"]
    paired = seeds.max() == 1
    summary = summarize(rows, jobs[0].outcomes)
    effects = None
    if paired:
        summary, effects = analyse_jobs(jobs, rows, names, summary, sweep_dir)
    write_parquet(summary, sweep_dir / "summary.parquet")
    title = f"multirun: {len(jobs)} jobs side by side" + (", paired (common seeds)" if paired else "")
    result = ExperimentResult(
        run_dir=sweep_dir,
        rows=rows,
        outcomes=list(jobs[0].outcomes),
        headline=list(jobs[0].headline),
        tables={"summary": summary} if effects is None else {"summary": summary, "effects": effects},
        baseline=names[0] if paired else None,
        report=sweep_dir / "report.md" if paired else None,
    )
    if not paired:
        outcomes = [*jobs[0].headline, *[o for o in jobs[0].outcomes if o not in jobs[0].headline]]
        print_results(summary, outcomes, names, None, title, console)
        console.print("the jobs do not share their seeds: no paired effects (unpaired means only)")
        console.print(f"multirun results: {sweep_dir} (summary.parquet)")
        return
    console.print(f"[bold]{title}[/]")
    print_summary(result, console, full=bool(full_tables))


def analyse_jobs(
    jobs: list[ExperimentResult], rows: pl.DataFrame, names: list[str], summary: pl.DataFrame, sweep_dir: Path
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A multirun's paired jobs analysed as an experiment's scenarios (the first job the
    baseline, the settings of the first job's experiment): effects, contrasts and ranks as
    Parquet, the figures, and report.md/report.html with the executive summary; returns the
    summary with the effects, and the effects."""
    from kibs_mc.analysis.effects import add_effects_to_summary, decide_effects, paired_effects
    from kibs_mc.analysis.inference import ErrorRate, contrasts, ranks
    from kibs_mc.analysis.plots import make_plots
    from kibs_mc.analysis.report import Findings, write_report
    from kibs_mc.experiments.posterior import point_values
    from kibs_mc.models import get_model
    from kibs_mc.run.store import write_parquet

    config = jobs[0].scenarios[0].config
    exp, outcomes, shown = config.experiment, list(jobs[0].outcomes), list(jobs[0].headline)
    model = get_model(config.model.name)
    decided = [o for o in shown if rows.schema[o] != pl.Boolean]
    margin, relative = exp.min_effect, exp.min_effect_relative
    effects = paired_effects(rows, outcomes, names[0], 1 - exp.alpha, margin, relative)
    family = contrasts(rows, decided, names, names[0], margin, relative, ErrorRate(exp.alpha, exp.adjust))
    ranked = ranks(rows, decided, names, [o for o in outcomes if o in model.lower_is_better], exp.alpha)
    effects = decide_effects(effects, family, exp.alpha, exp.adjust)
    summary = add_effects_to_summary(summary, effects)
    for name, frame in (("effects", effects), ("contrasts", family), ("ranks", ranked)):
        write_parquet(frame, sweep_dir / f"{name}.parquet")
    figures = make_plots(sweep_dir, rows, effects, names, names, outcomes) if config.figures else []
    findings = None
    if decided:
        cost = "governance_cost" if "governance_cost" in outcomes else None
        findings = Findings(
            decided[0],
            names[0],
            family,
            ranked,
            effects,
            exp.min_effect,
            exp.min_effect_relative,
            exp.alpha,
            exp.adjust,
            cost=cost,
            calibrated=point_values(config)[1] is not None,
        )
    jobs_text = "\n".join(f"- `{n}`: {job.run_dir}" for n, job in zip(names, jobs, strict=True))
    if (jobs[0].run_dir / "config.yaml").is_file():  # the configuration the report shows
        shutil.copyfile(jobs[0].run_dir / "config.yaml", sweep_dir / "config.yaml")
    write_report(
        sweep_dir,
        title=f"kibs-mc multirun: {len(jobs)} jobs side by side",
        headline=shown,
        tables={"summary": summary, "effects": effects},
        figures=figures,
        text={
            "notes": [f"The jobs share their seeds: paired against the first, `{names[0]}`."],
            "sections": ["## The jobs\n\n" + jobs_text + "\n"],
        },
        findings=findings,
    )
    return summary, effects


def check_run_dir(argv: list[str]) -> None:
    """A ``hydra.run.dir`` that cannot be created is a bad input (Hydra would crash); one that
    another run is using is refused (exit 2, naming the holder) before Hydra writes its
    ``.hydra/`` files into it."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "hydra.run.dir" and value and "${" not in value:
            try:
                Path(value).mkdir(parents=True, exist_ok=True)
                probe = Path(value) / ".kibs-mc-write-test"
                probe.write_text("")
                probe.unlink()
            except OSError as exc:
                raise UserError(
                    f"bad configuration: hydra.run.dir={value!r} cannot be used as the run directory "
                    f"({exc.strerror or exc}); allowed: a directory path that can be created and written."
                ) from None
            lock_run_dir(Path(value))  # held until this process ends


def config_dirs(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` without Hydra's ``--config-dir DIR`` (``-cd DIR``, ``--config-dir=DIR``), and
    the same directories as a ``hydra.searchpath`` override for the up-front check. A
    directory that does not exist is a bad input."""
    rest, dirs = [], []
    args = iter(argv)
    for arg in args:
        if arg in ("--config-dir", "-cd"):
            value = next(args, "")
        elif arg.startswith("--config-dir="):
            value = arg.partition("=")[2]
        else:
            rest.append(arg)
            continue
        if not Path(value).is_dir():
            raise UserError(
                f"bad configuration: --config-dir={value!r} is not a directory; allowed: a "
                "directory holding config groups, e.g. DIR/experiment/my_experiment.yaml"
            )
        dirs.append(f"file://{Path(value).resolve()}")
    return rest, ([f"hydra.searchpath=[{','.join(dirs)}]"] if dirs else [])


#: What ``kibs-mc --help`` says before Hydra's list of config groups and keys.
HELP = """\
kibs-mc: Monte Carlo experiments on how the governance of four collaboration interfaces
(strategic, management, business, information) between a high-tech cluster and its
knowledge-intensive business services (KIBS) changes innovation. Each run simulates many
random clusters per scenario on the same seeds and ends with its answer: the best scenario,
how sure that is, and what it rests on.

usage: kibs-mc [key=value ...]          one experiment (Hydra overrides)
       kibs-mc -m key=a,b ...           one experiment per value (multirun)
       kibs-mc report RUN_DIR ...       one decision page: finished runs side by side
       kibs-mc --cfg job [key=value]    print the composed configuration

experiments (experiment=...):
  single              the composed configuration as one scenario (the default)
  decide              the governance setting to choose across the calibrated posterior (make run)
  compare_governance  the six governance settings, paired effects against the baseline
  lever_sweep         Sobol sensitivity of the outcomes to the four levers
  calibrate           ABC-SMC fit of the model to a cluster's statistics (calibration.targets)
  robustness          which setting stays best across uncertain worlds (uncertainty=...)
  mix                 the best split of the budget over the interfaces across uncertain worlds
  cj_docking          the Cowan-Jonard docking sweep (model=cowan_jonard)

main keys:
  replicates=N (per scenario)  seed=N  cluster=small|default|large  executor=auto|ray|serial
  governance=baseline|strategic|management|business|information|all_four
  governance.<interface>=SHARE of the budget, governance.unit_cost.<interface>=MONEY per unit
  calibration.use=hand_set|RUN_DIR (default: the shipped posterior)  tracking=mlflow|none
  resume=true hydra.run.dir=RUN_DIR (finish an interrupted run)
  --full: every table in the terminal, not only the answer (they are always in report.md)

documentation: README.md; docs/ODD.md (the model), docs/inference.md, docs/calibration.md,
docs/robustness.md, docs/distributed.md

Every configuration group and key Hydra knows follows.
"""


def did_you_mean(error: UserError) -> UserError:
    """A bad key, with the known keys closest to it named (``Did you mean 'replicates'?``)."""
    import difflib

    from omegaconf import DictConfig, OmegaConf

    from kibs_mc.config.compose import compose_config

    if not isinstance(error, ConfigError):
        return error
    if error.allowed.startswith("allowed: one of ") and isinstance(error.value, str):  # a group's option
        options = [o.strip(" '") for o in error.allowed[len("allowed: one of ") :].split(",")]
        close = difflib.get_close_matches(error.value, options, n=2, cutoff=0.6)
        named = " or ".join(repr(f"{error.key}={c}") for c in close)
    elif "is not a known key" in error.allowed:
        parent, _, leaf = error.key.rpartition(".")
        try:
            root = compose_config([])
        except UserError:
            return error
        node = OmegaConf.select(root, parent) if parent else root
        known = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
        close = difflib.get_close_matches(leaf, known, n=2, cutoff=0.6)
        named = " or ".join(repr(f"{parent}.{c}" if parent else c) for c in close)
    else:
        return error
    if not close:
        return error
    return ConfigError(error.key, error.value, error.allowed, f"Did you mean {named}?")


def check_up_front(args: list[str]) -> None:
    """Compose and validate the configuration of each job the command line asks for (a
    multirun: every swept value, once) and check the run directory, so that bad input exits 2
    with one line before Hydra starts (options Hydra handles itself are left to it)."""
    try:
        argv, search = config_dirs(args)
        multirun = [a for a in argv if a in ("-m", "--multirun")]
        argv = [a for a in argv if a not in multirun]
        if any(a.startswith("-") for a in argv):
            return
        kept = [a for a in argv if not a.startswith("hydra.") or a.startswith("hydra.searchpath=")]
        for overrides in sweep_checks(kept) if multirun else [kept]:
            load_config(overrides + search)
        if not multirun:
            check_run_dir(argv)
    except UserError as error:
        fail(did_you_mean(error))


def main() -> None:
    """Console entry point: check plain overrides up front so bad ones exit 2 (Hydra would
    exit 1), then hand over to Hydra (which also handles -m, --cfg, --help...)."""
    interrupt.terminate_as_interrupt()  # SIGTERM (kill, scancel) stops a run as Ctrl-C does
    try:
        # Credentials in tracking.uri never reach Hydra's .hydra/ files, plan.json or MLflow.
        sys.argv[1:] = [hide_uri_override(a) for a in sys.argv[1:]]
        if sys.argv[1:2] == ["report"]:  # the decision page, not an experiment
            from kibs_mc.analysis.decision import main as report

            exit_now(report(sys.argv[2:]))
        if "--help" in sys.argv or "-h" in sys.argv:
            print(HELP)
            sys.argv.append("hydra.help.app_name=kibs-mc")
        full_tables[:] = [a for a in sys.argv[1:] if a == "--full"]
        sys.argv[1:] = [a for a in sys.argv[1:] if a != "--full"]
        check_up_front(sys.argv[1:])
        hydra_main()
        if _multirun_dir:
            compare_jobs(_multirun_jobs, _multirun_dir[0], Console())
        if _multirun_status:
            sys.exit(_multirun_status)
    except SystemExit as done:
        exit_now(done.code)
    except Exception:  # a stop that came out of a library as its own error is the stop
        if not interrupt.stop_requested():
            raise
        stopped()
    except KeyboardInterrupt:
        stopped()
    exit_now(0)


def stopped() -> NoReturn:
    """End after a SIGINT or SIGTERM that came before a run started or after it ended (nothing
    to resume)."""
    print(f"kibs-mc: {'terminated (SIGTERM)' if interrupt.by_sigterm() else 'interrupted'}", file=sys.stderr)
    exit_now(143 if interrupt.by_sigterm() else 130)


def exit_now(status: object) -> NoReturn:
    """End the process as the interpreter would, without its teardown of every loaded module
    (Ray, Numba, Polars, matplotlib; docs/performance.md): the
    interpreter's own thread shutdown runs (it stops idle thread pools, then joins the threads
    that keep it alive, e.g. the background shutdown of a local Ray cluster), then the atexit
    handlers (Ray, logging, MLflow), and the standard streams are flushed."""
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:  # sys.exit("message") prints the message and exits 1
        print(status, file=sys.stderr)
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize calls first
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
