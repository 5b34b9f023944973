"""The pipeline end to end: plan, executors, Parquet results, MLflow, and the CLI contract."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment
from kibs_mc.run.plan import auto_chunk_size, build_scenarios, replicate_seeds

SMALL_CJ = ["model=cowan_jonard", "model.agents=60", "model.degree=4", "model.categories=5", "tracking=none"]


def run(tmp_path, name, *overrides):
    overrides = [*SMALL_CJ, *overrides]
    config = load_config(overrides)
    return run_experiment(config, overrides, tmp_path / name)


# ------------------------------------------------------------------ plan


def test_replicate_seed_depends_on_root_seed_and_index_alone():
    assert np.array_equal(replicate_seeds(7, 5, start=3), replicate_seeds(7, 10)[3:8])
    assert not np.array_equal(replicate_seeds(7, 5), replicate_seeds(8, 5))
    assert len(set(replicate_seeds(7, 1000).tolist())) == 1000


def test_docking_scenarios_compose_their_overrides_on_top_of_the_invocation():
    overrides = ["experiment=cj_docking", "model.alpha=0.5", "model.rewire_p=0.7"]
    scenarios = build_scenarios(load_config(overrides), overrides)
    assert [s.config.model.rewire_p for s in scenarios] == [0.0, 0.01, 0.03, 0.1, 0.3, 1.0]
    assert {s.config.model.alpha for s in scenarios} == {0.5}


@pytest.mark.parametrize("replicates,scenarios,workers", [(1, 1, 1), (20, 6, 2), (10_000, 6, 2), (7, 1, 64)])
def test_auto_chunk_size_covers_every_replicate(replicates, scenarios, workers):
    size = auto_chunk_size(replicates, scenarios, workers)
    assert 1 <= size <= replicates


# ------------------------------------------------------------------ executors


@pytest.mark.slow
def test_serial_and_ray_give_identical_replicates_whatever_the_chunking(tmp_path, ray_local, cli):
    common = ["experiment=cj_docking", "replicates=9"]
    serial = run(tmp_path, "serial", *common, "executor=serial", "executor.chunk_size=4")
    ray_one = run(tmp_path, "ray1", *common, "executor=ray", "executor.chunk_size=1")
    ray_seven = run(tmp_path, "ray7", *common, "executor=ray", "executor.chunk_size=7")
    # A fresh process with its own one-CPU Ray cluster and the automatic chunk size.
    proc = cli(*SMALL_CJ, *common, "executor=ray", "executor.num_cpus=1", "hydra.run.dir=fresh")
    assert proc.returncode == 0, proc.stderr
    fresh = pl.read_parquet(tmp_path / "fresh" / "replicates.parquet")
    want = pl.read_parquet(serial.run_dir / "replicates.parquet")
    assert want.height == 6 * 9
    assert want.columns[:3] == ["scenario", "replicate", "seed"]
    for other in (ray_one.run_dir, ray_seven.run_dir):
        assert pl.read_parquet(other / "replicates.parquet").equals(want)
    assert fresh.equals(want)
    assert ray_one.computed_chunks == 6 * 9 and ray_seven.computed_chunks == 6 * 2


def test_scenarios_share_replicate_seeds(tmp_path):
    result = run(tmp_path, "crn", "experiment=cj_docking", "replicates=4", "executor=serial")
    seeds = result.rows.group_by("scenario").agg(pl.col("seed").sort()).get_column("seed").to_list()
    assert all(s == seeds[0] for s in seeds)
    # ... and different rewiring changes outcomes on the same seeds
    means = result.rows.group_by("scenario").agg(pl.col("knowledge_mean").mean())
    assert means.get_column("knowledge_mean").n_unique() > 1


def test_summary_has_a_confidence_interval_per_scenario_and_outcome(tmp_path):
    result = run(tmp_path, "summary", "replicates=12", "executor=serial")
    summary = pl.read_parquet(result.run_dir / "summary.parquet")
    row = summary.filter(pl.col("outcome") == "knowledge_mean").row(0, named=True)
    values = result.rows.get_column("knowledge_mean").to_numpy()
    assert row["n"] == 12
    assert row["mean"] == pytest.approx(values.mean())
    assert row["sd"] == pytest.approx(values.std(ddof=1))
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    # t(0.975, 11) = 2.201
    assert row["ci_high"] - row["mean"] == pytest.approx(2.201 * values.std(ddof=1) / np.sqrt(12), rel=1e-3)


def test_without_figures_a_run_writes_the_same_tables_and_a_report_but_no_png(tmp_path):
    common = ["experiment=cj_docking", "replicates=3", "executor=serial"]
    drawn = run(tmp_path, "drawn", *common)
    bare = run(tmp_path, "bare", *common, "figures=false")
    assert {"effects.png", "distributions.png"} <= {p.name for p in drawn.run_dir.glob("*.png")}
    assert not list(bare.run_dir.glob("*.png"))
    assert "## Figures" in drawn.report.read_text() and "## Figures" not in bare.report.read_text()
    for name in ("replicates.parquet", "summary.parquet", "effects.parquet"):
        assert pl.read_parquet(bare.run_dir / name).equals(pl.read_parquet(drawn.run_dir / name)), name


# ------------------------------------------------------------------ CLI and MLflow


@pytest.mark.slow
def test_cli_docking_writes_parquet_and_logs_parent_and_child_runs(tmp_path, cli):
    db = tmp_path / "mlflow.db"
    proc = cli(
        "model=cowan_jonard",
        "experiment=cj_docking",
        "replicates=20",
        "hydra.run.dir=run",
        f"tracking.uri=sqlite:///{db}",
        "executor.num_cpus=2",
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "run"
    for name in ("replicates.parquet", "timeseries.parquet", "summary.parquet"):
        assert (run_dir / name).exists(), name
    rows = pl.read_parquet(run_dir / "replicates.parquet")
    assert rows.height == 120
    assert rows.columns == [
        "scenario",
        "replicate",
        "seed",
        "knowledge_mean",
        "knowledge_var",
        "knowledge_cv",
        "meetings",
        "trades",
        "converged",
    ]
    assert rows.get_column("converged").all()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("kibs-mc")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 6
    assert parents[0].data.params["replicates"] == "20"
    by_name = {c.data.tags["kibs_mc.scenario"]: c for c in children}
    assert by_name["p=0.3"].data.params["model.rewire_p"] == "0.3"
    summary = pl.read_parquet(run_dir / "summary.parquet")
    want = summary.filter((pl.col("scenario") == "p=0.3") & (pl.col("outcome") == "knowledge_mean"))
    assert by_name["p=0.3"].data.metrics["knowledge_mean_mean"] == pytest.approx(want["mean"][0])
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"replicates.parquet", "summary.parquet", "config.yaml"} <= artifacts
    # MLflow shows the experiment's own duration (not the moment of logging at its end).
    parent = parents[0].info
    wall_ms = parents[0].data.metrics["wall_seconds"] * 1000
    assert parent.end_time - parent.start_time == pytest.approx(wall_ms, abs=300)
    assert parent.start_time <= (run_dir / "config.yaml").stat().st_mtime * 1000
    assert all((c.info.start_time, c.info.end_time) == (parent.start_time, parent.end_time) for c in children)
    # Logged later from the run directory: the run's period comes from its files.
    later = tmp_path / "later.db"
    logged = subprocess.run(
        [sys.executable, "-m", "kibs_mc.tracking", str(run_dir), f"tracking.uri=sqlite:///{later}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert logged.returncode == 0, logged.stderr[-2000:]
    again = MlflowClient(tracking_uri=f"sqlite:///{later}").search_runs(
        [MlflowClient(tracking_uri=f"sqlite:///{later}").get_experiment_by_name("kibs-mc").experiment_id],
        filter_string="tags.kibs_mc.experiment = 'cj_docking'",
    )
    first = [r for r in again if "mlflow.parentRunId" not in r.data.tags][0].info
    assert first.start_time == int((run_dir / "config.yaml").stat().st_mtime * 1000)
    assert first.end_time == int((run_dir / "report.md").stat().st_mtime * 1000)


@pytest.mark.parametrize(
    "override,key,value",
    [
        ("model.nonsense=3", "model.nonsense", "3"),
        ("replicates=-5", "replicates", "-5"),
        ("model.alpha=1.5", "model.alpha", "1.5"),
        ("executor=warp_drive", "executor", "warp_drive"),
        ("model.degree=7", "model.degree", "7"),
        ("seed=abc", "seed", "abc"),
        ("executor.address=127.0.0.1:1", "executor.address", "127.0.0.1:1"),  # nothing listens
    ],
)
def test_bad_overrides_exit_2_with_one_clear_message(cli, override, key, value):
    proc = cli("model=cowan_jonard", override, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert key in message and value in message and "allowed" in message
    assert len(message.splitlines()) == 1


def test_big_clusters_size_chunks_from_a_measured_replicate():
    from kibs_mc.experiments.pipeline import replicate_seconds

    overrides = [*SMALL_CJ, "replicates=100000"]
    scenario = build_scenarios(load_config(overrides), overrides)[0]
    assert replicate_seconds(scenario, 1, workers=2) is None
    seconds = replicate_seconds(scenario, 1, workers=3200)
    assert 0 < seconds < 5
    # 3 200 workers must get tasks long enough for the driver to keep up: beyond the laptop cap.
    assert auto_chunk_size(10_000_000, 1, 3200, seconds) > auto_chunk_size(10_000_000, 1, 3200)


def test_a_cluster_too_big_for_the_machine_is_refused_up_front(cli, tmp_path):
    proc = cli(
        "cluster.hte=10000000", "cluster.fields=1000", "tracking=none", "hydra.run.dir=big", timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "GiB of memory" in proc.stderr and "per replicate" in proc.stderr
    assert not list((tmp_path / "big").glob("chunks/*.parquet"))


@pytest.mark.slow
def test_a_job_that_fails_when_it_runs_does_not_stop_a_multirun(cli, tmp_path):
    """Bad values of a sweep are refused before any job runs (tests/test_hostile.py); what only
    a job's run can find (here: its run directory is in use by another run) fails that job, and
    the jobs after it still run."""
    from kibs_mc.run.lock import lock_run_dir, unlock_run_dir

    busy = tmp_path / "sweep" / "1"
    lock_run_dir(busy)  # this test process is the other run holding job 1's directory
    try:
        proc = cli(
            "-m",
            *SMALL_CJ,
            "replicates=2",
            "executor=serial",
            "model.alpha=0.1,0.2,0.3",
            "hydra.sweep.dir=sweep",
            timeout=240,
        )
    finally:
        unlock_run_dir(busy)
    assert proc.returncode == 2, proc.stderr[-2000:]  # the worst job's status
    assert f"run directory {busy} is in use by another kibs-mc run" in proc.stderr
    assert not (busy / "replicates.parquet").exists()
    for job in ("0", "2"):  # the jobs before and after the failed one both ran
        assert (tmp_path / "sweep" / job / "replicates.parquet").exists()


def test_a_kind_whose_optional_dependency_is_missing_says_how_to_install_it():
    from kibs_mc.errors import ConfigError
    from kibs_mc.experiments.kind import ExperimentKind
    from kibs_mc.experiments.registry import check_installed

    class Lacking(ExperimentKind):
        name = "sweep"
        requires = ("no_such_module_of_kibs_mc",)

    with pytest.raises(
        ConfigError, match=r"no_such_module_of_kibs_mc is missing: pip install 'kibs-mc\[sweep\]'"
    ):
        check_installed(Lacking())
    check_installed(ExperimentKind())  # the comparisons need nothing beyond the default install
