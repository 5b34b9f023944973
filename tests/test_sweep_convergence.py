"""Sweeps that keep their points and check their convergence."""

from __future__ import annotations

import numpy as np
import polars as pl

from kibs_mc.analysis.sensitivity import index_warnings, precise
from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment

SWEEP = [
    "model=kibs",
    "cluster=small",
    "executor=serial",
    "tracking=none",
    "model.steps=6",
    "experiment=lever_sweep",
    "replicates=1",
    "executor.chunk_size=16",
    "experiment.sweep.samples=8",
    "experiment.sweep.max_samples=32",
]


def run(path, *extra):
    overrides = [*SWEEP, *extra]
    return run_experiment(load_config(overrides), overrides, path)


def test_a_doubling_sweep_runs_nested_rounds_to_its_cap_and_keeps_its_points(tmp_path):
    result = run(tmp_path / "cap", "experiment.sweep.tolerance=0.0001")
    points = pl.read_parquet(result.run_dir / "points.parquet")
    assert points.height == 32 * 6
    assert {
        "governance.strategic",
        "governance.management",
        "governance.business",
        "governance.information",
        "replicates",
    } <= set(points.columns)
    assert (points["replicates"] == 1).all()  # 8 -> 16 -> 32 base samples, every point run
    ran = result.rows.filter(pl.col("scenario") != "baseline")
    assert ran["scenario"].n_unique() == 32 * 6
    # factor values in the file are those the point's scenario ran with
    row = points.row(5, named=True)
    sc = next(s for s in result.scenarios if s.name == row["scenario"])
    assert sc.config.governance.management == row["governance.management"]
    convergence = pl.read_parquet(result.run_dir / "sensitivity_convergence.parquet")
    assert sorted(convergence["samples"].unique().to_list()) == [8, 16, 32]
    assert (pl.read_parquet(result.run_dir / "sensitivity.parquet")["samples"] == 32).all()
    assert (result.run_dir / "sensitivity_convergence.png").exists()
    assert any("stopped at experiment.sweep.max_samples = 32" in n for n in result.notes)
    assert any(" S1 " in n and " ST " in n and "±" in n for n in result.notes)  # indices with CIs


def test_a_sweep_that_is_precise_after_the_first_round_stops_there(tmp_path):
    result = run(
        tmp_path / "loose",
        "experiment.sweep.tolerance=100",
        "experiment.sweep.max_samples=16",
        "figures=false",
    )
    points = pl.read_parquet(result.run_dir / "points.parquet")
    assert points.filter(pl.col("replicates") > 0).height == 8 * 6
    assert points.filter(pl.col("replicates") == 0).height == 8 * 6
    assert any("precise at N = 8" in n for n in result.notes)


def test_warnings_name_indices_that_are_noise():
    frame = pl.DataFrame(
        {
            "outcome": ["y"] * 3,
            "factor": ["a", "b", "c"],
            "samples": [16] * 3,
            "S1": [0.87, 0.02, 0.5],
            "S1_conf": [0.1, 0.05, 0.1],
            "ST": [0.50, 0.01, 0.55],
            "ST_conf": [0.1, 0.03, 0.1],
        }
    )
    warnings = index_warnings(frame, ["y"])
    assert len(warnings) == 2
    assert "`a`" in warnings[0] and "below" in warnings[0]
    assert "`b`" in warnings[1] and "not distinguishable from zero" in warnings[1]


def test_precision_needs_narrow_cis_and_a_resolved_st_ranking():
    def frame(st, conf):
        return pl.DataFrame(
            {
                "outcome": ["y"] * 3,
                "factor": ["a", "b", "c"],
                "samples": [64] * 3,
                "S1": st,
                "S1_conf": conf,
                "ST": st,
                "ST_conf": conf,
            }
        )

    assert precise(frame([0.6, 0.3, 0.05], [0.05, 0.05, 0.02]), "y", 0.1)
    assert not precise(frame([0.6, 0.3, 0.05], [0.2, 0.05, 0.02]), "y", 0.1)  # one CI too wide
    assert not precise(frame([0.6, 0.3, 0.05], [0.05, 0.05, 0.02]), "y", 0.01)
    assert not precise(frame([np.nan] * 3, [0.0] * 3).head(0), "y", 0.1)
