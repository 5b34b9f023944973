"""``experiment.selection`` (KN through the pipeline: executor, chunks, resume) and the
inference files and executive summary of a run."""

from __future__ import annotations

import polars as pl
import pytest

from kibs_mc.config import load_config
from kibs_mc.errors import ConfigError
from kibs_mc.experiments.pipeline import run_experiment
from tests.conftest import cut_run

SMALL = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "experiment=cj_docking",
    "executor=serial",
    "tracking=none",
    "executor.chunk_size=5",
    "figures=false",
]
SELECT = [
    "replicates=10",
    "experiment.selection.outcome=knowledge_mean",
    "experiment.selection.first_stage=10",
    "experiment.selection.delta=0.02",
    "experiment.max_replicates=60",
]


def run(path, *extra):
    overrides = [*SMALL, *extra]
    return run_experiment(load_config(overrides), overrides, path)


def test_selection_runs_kn_rounds_through_the_pipeline_and_resumes_to_the_same_decisions(tmp_path):
    full = run(tmp_path / "full", *SELECT)
    sel = pl.read_parquet(full.run_dir / "selection.parquet")
    # the baseline does not compete
    assert set(sel["scenario"]) == {"p=0.01", "p=0.03", "p=0.1", "p=0.3", "p=1"}
    counts = dict(full.rows.group_by("scenario").len().iter_rows())
    assert counts["p=0"] == sel["replicates"].max()  # the baseline runs along with the contenders
    for r in sel.iter_rows(named=True):
        assert counts[r["scenario"]] == r["replicates"]
        reps = full.rows.filter(pl.col("scenario") == r["scenario"])["replicate"].to_list()
        assert reps == list(range(r["replicates"]))  # the shared seeds, without gaps
        if r["eliminated_after"] is not None:
            step = 5 + r["eliminated_after"] // 4  # one round: a chunk or a quarter more
            assert r["eliminated_after"] <= r["replicates"] <= r["eliminated_after"] + step
    assert sel["eliminated_after"].drop_nulls().len() >= 1, "some candidate should leave early"
    if sel["selected"].any():
        best = sel.filter(pl.col("selected")).row(0, named=True)
        assert best["in_contention"] and sel.filter(pl.col("in_contention")).height == 1
        assert "Certified" in full.report.read_text()
    else:
        assert sel["replicates"].max() == 60 and "Not certified" in full.report.read_text()
    assert any("Kim & Nelson" in n or "KN" in n for n in full.notes)
    # Interrupted after the first rounds, a resumed run replays KN to the same end.
    cut = cut_run(full.run_dir, tmp_path / "cut", below=25)
    resumed = run(cut, *SELECT, "resume=true")
    assert resumed.reused_chunks > 0
    assert resumed.rows.equals(full.rows)
    assert pl.read_parquet(cut / "selection.parquet").equals(sel)


def test_the_first_round_is_kns_first_stage_whatever_replicates_says(tmp_path):
    """With replicates=300 the first round used to run 300 of every scenario before KN
    screened anything (1 800 replicates where KN had decided by stage 18)."""
    many = run(tmp_path / "many", *SELECT, "replicates=300", "experiment.max_replicates=300")
    few = run(tmp_path / "few", *SELECT, "experiment.max_replicates=300")
    assert many.rows.equals(few.rows)  # replicates sets nothing with a selection
    counts = dict(many.rows.group_by("scenario").len().iter_rows())
    sel = pl.read_parquet(many.run_dir / "selection.parquet")
    assert max(counts.values()) < 300 and min(counts.values()) == 10
    assert counts["p=0"] == sel["replicates"].max()  # the baseline goes on with the contenders
    with pytest.raises(ConfigError, match="experiment.selection.first_stage"):
        run(tmp_path / "bad", *SELECT, "experiment.max_replicates=5")


def test_selection_and_precision_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="experiment.selection.outcome"):
        run(tmp_path / "x", *SELECT, "experiment.precision.outcome=knowledge_mean")
    with pytest.raises(ConfigError, match="experiment.selection.outcome"):
        run(tmp_path / "y", "replicates=4", "experiment.selection.outcome=nope")


def test_a_run_writes_contrasts_ranks_and_an_executive_summary_at_the_top(tmp_path):
    result = run(tmp_path / "r", "replicates=12", "figures=true")  # the report's sections in order
    contrasts = pl.read_parquet(result.run_dir / "contrasts.parquet")
    headline = ["knowledge_mean", "knowledge_cv", "meetings"]  # converged is boolean: not compared
    assert contrasts.height == 15 * len(headline)  # every pair of 6 scenarios, each headline outcome
    assert {"p_value", "p_holm", "p_bh", "clear", "margin"} <= set(contrasts.columns)
    assert (contrasts["p_holm"] >= contrasts["p_value"]).all()
    ranks = pl.read_parquet(result.run_dir / "ranks.parquet")
    assert ranks.filter(pl.col("outcome") == "knowledge_mean")["rank"].sort().to_list() == [1, 2, 3, 4, 5, 6]
    assert (ranks["rank_low"] <= ranks["rank"]).all() and (ranks["rank"] <= ranks["rank_high"]).all()
    summary = pl.read_parquet(result.run_dir / "summary.parquet")
    assert {"rank", "rank_low", "rank_high"} <= set(summary.columns)
    effects = pl.read_parquet(result.run_dir / "effects.parquet")
    assert {"p_adjusted", "clear"} <= set(effects.columns)
    text = result.report.read_text()
    assert text.index("## Executive summary") < text.index("## Figures") < text.index("## Pairwise contrasts")
    assert "Best for `knowledge_mean`" in text and "ranks" in text and "Uncertainty:" in text
    assert "- Parameters: the model's hand-set values (docs/ODD.md), not calibrated" in text
