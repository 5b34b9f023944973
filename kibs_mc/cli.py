"""The ``kibs-mc`` command: Hydra overrides in, one experiment out.

Exit status: 0 success; 1 a task failed for good after its retries (completed chunks kept);
2 bad configuration or input (one message, no traceback); 3 finished, but some replicates
raised (listed in ``errors.parquet``; the others are kept); 130 interrupted (completed chunks
stay on disk for ``resume=true``). A Hydra multirun (``-m``) runs every job and exits with the
highest status of its jobs.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import NoReturn

import hydra
import polars as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from kibs_mc.analysis.statistics import half_width
from kibs_mc.config import CONF_DIR, load_config, to_config
from kibs_mc.errors import ExecutionError, UserError
from kibs_mc.experiments import ExperimentResult, run_experiment
from kibs_mc.run.lock import lock_run_dir

#: Highest exit status of the jobs of a multirun so far (a job's failure must not stop the sweep).
_multirun_status = 0


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


def fail(error: UserError) -> None:
    print(f"kibs-mc: {error}", file=sys.stderr)
    finish(2)


def print_summary(result: ExperimentResult, console: Console) -> None:
    shown = result.headline[:4]
    table = Table(title=f"{len(result.rows)} replicates: mean ± 95% CI half-width")
    table.add_column("scenario", no_wrap=True)
    for outcome in shown:
        table.add_column(outcome, justify="right", no_wrap=True)
    summary = result.summary
    sampled = set(result.sampled)
    listed = [sc for sc in result.scenarios if sc.name not in sampled]
    for sc in listed:
        cells = []
        for outcome in shown:
            row = summary.filter((pl.col("scenario") == sc.name) & (pl.col("outcome") == outcome))
            if row.height == 0:
                cells.append("-")
                continue
            r = row.row(0, named=True)
            half = half_width(r)
            cells.append(f"{r['mean']:.4g} ± {half:.2g}" if half == half else f"{r['mean']:.4g}")
        table.add_row(sc.name, *cells)
    console.print(table)
    if result.effects is not None and result.effects.height:
        effects = Table(title=f"paired effect vs {result.baseline!r} ± 95% bootstrap CI "
                              "half-width (coloured: CI excludes 0)")
        effects.add_column("scenario", no_wrap=True)
        for outcome in shown:
            effects.add_column(outcome, justify="right", no_wrap=True)
        for sc in listed:
            if sc.name == result.baseline:
                continue
            cells = []
            for outcome in shown:
                part = result.effects.filter((pl.col("scenario") == sc.name) & (pl.col("outcome") == outcome))
                if part.height == 0:
                    cells.append("-")
                    continue
                r = part.row(0, named=True)
                style = ("green" if r["effect"] > 0 else "red") if r["significant"] else "dim"
                half = half_width(r)
                cells.append(f"[{style}]{r['effect']:+.3g} ± {half:.2g}[/]")
            effects.add_row(sc.name, *cells)
        console.print(effects)
    if sampled:
        console.print(f"{len(sampled)} sampled sweep points: see sweep.png, sensitivity.png and "
                      "sensitivity.parquet in the run directory")
    for note in result.notes:
        console.print(f"note: {note}")
    if result.report is not None:
        console.print(f"report: {result.report} (and report.html)")
    console.print(f"results: {result.run_dir} (chunks: {result.computed_chunks} computed, "
                  f"{result.reused_chunks} reused)")
    if result.mlflow_run_id:
        console.print(f"mlflow run: {result.mlflow_run_id}")


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    console = Console()
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        config = to_config(cfg)
        result = run_experiment(config, list(hc.overrides.task), run_dir)
    except UserError as error:
        fail(error)
        return
    except ExecutionError as error:
        print(f"kibs-mc: {error} Completed chunks are kept in {run_dir}; continue with the same "
              f"overrides plus resume=true hydra.run.dir={run_dir}", file=sys.stderr)
        finish(1)
        return
    except KeyboardInterrupt:
        print(
            f"kibs-mc: interrupted; completed chunks are kept in {run_dir}. Continue with the "
            f"same overrides plus resume=true hydra.run.dir={run_dir}",
            file=sys.stderr,
        )
        sys.exit(130)
    print_summary(result, console)
    if result.failed is not None:
        finish(3)


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


def main() -> None:
    """Console entry point: check plain overrides up front so bad ones exit 2 (Hydra would
    exit 1), then hand over to Hydra (which also handles -m, --cfg, --help...)."""
    try:
        argv = sys.argv[1:]
        if all(not a.startswith("-") for a in argv):
            try:
                load_config([a for a in argv if not a.partition("=")[0].startswith("hydra.")])
                check_run_dir(argv)
            except UserError as error:
                fail(error)
        hydra_main()
        if _multirun_status:
            sys.exit(_multirun_status)
    except SystemExit as done:
        exit_now(done.code)
    exit_now(0)


def exit_now(status: object) -> NoReturn:
    """End the process as the interpreter would, without its teardown of every loaded module
    (Ray, Numba, Polars, matplotlib: about half a second, docs/performance.md): the
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
