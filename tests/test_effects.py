"""Paired effects, adaptive replicate counts and the report (issue: governance comparison)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from kibs_mc.analysis.effects import choose_baseline, paired_effects
from kibs_mc.analysis.statistics import summarize
from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment
from tests.conftest import cut_run


def synthetic(
    n: int, effect: float, rng: np.random.Generator, shared_sd: float = 3.0, own_sd: float = 0.5
) -> pl.DataFrame:
    """Two scenarios on common replicates: a large shared component plus small own noise."""
    shared = rng.normal(10, shared_sd, n)
    base = shared + rng.normal(0, own_sd, n)
    treated = shared + effect + rng.normal(0, own_sd, n)
    return pl.DataFrame(
        {
            "scenario": ["baseline"] * n + ["treated"] * n,
            "replicate": np.tile(np.arange(n), 2),
            "y": np.concatenate([base, treated]),
        }
    )


def test_ci_of_a_planted_effect_covers_it_at_about_the_nominal_rate():
    rng = np.random.default_rng(2024)
    covered = []
    for _ in range(200):
        effects = paired_effects(synthetic(40, 1.5, rng), ["y"], "baseline")
        row = effects.row(0, named=True)
        covered.append(row["ci_low"] <= 1.5 <= row["ci_high"])
    assert 0.88 <= np.mean(covered) <= 0.99


def test_no_planted_effect_is_mostly_not_significant():
    rng = np.random.default_rng(7)
    flagged = [
        paired_effects(synthetic(40, 0.0, rng), ["y"], "baseline")["significant"][0] for _ in range(100)
    ]
    assert np.mean(flagged) < 0.12


def test_pairing_narrows_the_interval_on_the_same_data():
    effects = paired_effects(synthetic(60, 0.3, np.random.default_rng(1)), ["y"], "baseline")
    r = effects.row(0, named=True)
    paired = r["ci_high"] - r["ci_low"]
    unpaired = r["unpaired_ci_high"] - r["unpaired_ci_low"]
    assert paired < unpaired / 3
    assert r["significant"]  # the 0.3 effect is invisible unpaired, clear paired
    assert r["unpaired_ci_low"] < 0 < r["unpaired_ci_high"]


def test_effect_size_and_cost_columns():
    rng = np.random.default_rng(5)
    rows = synthetic(50, 2.0, rng).with_columns(
        governance_cost=pl.when(pl.col("scenario") == "treated").then(4.0).otherwise(0.0)
    )
    r = paired_effects(rows, ["y"], "baseline").row(0, named=True)
    base = rows.filter(pl.col("scenario") == "baseline")["y"].to_numpy()
    assert r["effect_size"] == pytest.approx(r["effect"] / base.std(ddof=1))
    assert r["effect_per_cost"] == pytest.approx(r["effect"] / 4.0)


def test_effects_are_a_function_of_the_replicates():
    rows = synthetic(30, 1.0, np.random.default_rng(0))
    first = paired_effects(rows, ["y"], "baseline")
    assert first.equals(paired_effects(rows.sample(fraction=1.0, shuffle=True, seed=1), ["y"], "baseline"))


def test_baseline_choice():
    assert choose_baseline(["a", "baseline", "c"]) == "baseline"
    assert choose_baseline(["p=0", "p=1"]) == "p=0"
    assert choose_baseline(["a", "b"], "b") == "b"


# ------------------------------------------------------------------ adaptive replicate counts

SMALL = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "experiment=cj_docking",
    "executor=serial",
    "tracking=none",
    "executor.chunk_size=5",
]


def run(tmp_path, name, *extra):
    overrides = [*SMALL, *extra]
    return run_experiment(load_config(overrides), overrides, tmp_path / name)


def test_adaptive_counts_stop_at_the_target_or_at_max_replicates(tmp_path):
    result = run(
        tmp_path,
        "adaptive",
        "replicates=10",
        "experiment.max_replicates=80",
        "experiment.precision.outcome=knowledge_mean",
        "experiment.precision.half_width=0.0015",
        "experiment.precision.on=mean",
    )
    counts = dict(result.rows.group_by("scenario").len().iter_rows())
    summary = summarize(result.rows, ["knowledge_mean"])
    assert max(counts.values()) <= 80
    assert max(counts.values()) > 10, "the target should need more than the first round"
    for r in summary.iter_rows(named=True):
        half = (r["ci_high"] - r["ci_low"]) / 2
        assert half <= 0.0015 * abs(r["mean"]) or counts[r["scenario"]] == 80
    assert len(result.notes) == 6 and all("knowledge_mean" in n for n in result.notes)
    assert (result.run_dir / "report.md").read_text().count("reached the target") + (
        result.run_dir / "report.md"
    ).read_text().count("stopped at experiment.max_replicates") == 6
    # Replicates are numbered without gaps, and each scenario's seeds are the shared ones.
    for scenario, n in counts.items():
        reps = result.rows.filter(pl.col("scenario") == scenario)["replicate"].to_list()
        assert reps == list(range(n))


def test_loose_target_needs_no_extra_round(tmp_path):
    result = run(
        tmp_path,
        "loose",
        "replicates=10",
        "experiment.max_replicates=80",
        "experiment.precision.outcome=knowledge_mean",
        "experiment.precision.half_width=0.5",
    )
    assert result.rows.height == 60
    assert all("reached the target" in n for n in result.notes)


def test_unknown_precision_outcome_is_a_config_error(tmp_path):
    from kibs_mc.errors import ConfigError

    with pytest.raises(ConfigError, match="experiment.precision.outcome"):
        run(tmp_path, "bad", "replicates=4", "experiment.precision.outcome=nope")


def test_run_writes_effects_plots_and_report(tmp_path):
    result = run(tmp_path, "report", "replicates=8")
    for name in ("effects.parquet", "effects.png", "distributions.png", "report.md", "report.html"):
        assert (result.run_dir / name).exists(), name
    effects = pl.read_parquet(result.run_dir / "effects.parquet")
    assert set(effects["scenario"]) == {"p=0.01", "p=0.03", "p=0.1", "p=0.3", "p=1"}
    assert (effects["baseline"] == "p=0").all()
    summary = pl.read_parquet(result.run_dir / "summary.parquet")
    assert {"effect", "effect_ci_low", "effect_ci_high"} <= set(summary.columns)
    text = (result.run_dir / "report.md").read_text()
    assert "![effects](effects.png)" in text and "## What the scenarios do" in text


# ------------------------------------------------------------------ on the cluster model

KIBS_SMALL = ["model=kibs", "cluster=small", "executor=serial", "tracking=none", "model.steps=36"]


def test_common_random_numbers_pair_governance_effects(tmp_path):
    overrides = [*KIBS_SMALL, "experiment=compare_governance", "replicates=16", "figures=false"]
    result = run_experiment(load_config(overrides), overrides, tmp_path / "crn")
    effects = result.effects.filter(pl.col("outcome").is_in(["hte_knowledge_mean", "innovations_total"]))
    assert effects.height == 10
    paired = (effects["ci_high"] - effects["ci_low"]).to_numpy()
    unpaired = (effects["unpaired_ci_high"] - effects["unpaired_ci_low"]).to_numpy()
    # Every cell resamples with its own generator: where pairing barely helps (innovations of
    # `information` at n=16), the two bootstrap widths differ only by resampling noise.
    assert np.mean(paired < unpaired) >= 0.9
    assert np.median(paired / unpaired) < 0.7


def test_sobol_sweep_finds_a_costless_lever_irrelevant_to_cost(tmp_path):
    overrides = [
        *KIBS_SMALL,
        "model.steps=6",
        "experiment=lever_sweep",
        "replicates=1",
        "experiment.sweep.samples=32",
        "experiment.sweep.max_samples=0",
        "governance.unit_cost.business=1e9",
    ]
    # a unit cost no budget share can pay reaches no HTE, so the business share spends nothing
    result = run_experiment(load_config(overrides), overrides, tmp_path / "sobol")
    assert len(result.sampled) == 32 * (4 + 2)
    indices = pl.read_parquet(result.run_dir / "sensitivity.parquet")
    cost_rows = indices.filter(pl.col("outcome") == "governance_cost").iter_rows(named=True)
    cost = {r["factor"]: r for r in cost_rows}
    assert cost["governance.business"]["ST"] < 0.05
    for lever in ("strategic", "management", "information"):
        assert cost[f"governance.{lever}"]["ST"] > 0.15
    assert (result.run_dir / "sensitivity.png").exists() and (result.run_dir / "sweep.png").exists()


def test_resumed_adaptive_run_takes_the_same_decisions(tmp_path):
    """Interrupted in a later round, a resumed adaptive run ends with the uninterrupted rows."""
    adaptive = [
        "replicates=5",
        "executor.chunk_size=2",
        "experiment.max_replicates=200",
        "experiment=single",
        "experiment.precision.outcome=knowledge_cv",
        "experiment.precision.half_width=0.1",
    ]
    full = run(tmp_path, "full", *adaptive)
    assert full.rows.height > 30, "the target should need several rounds"
    cut = cut_run(full.run_dir, tmp_path / "cut", below=30)  # as if killed mid-run
    overrides = [*SMALL, *adaptive, "resume=true"]
    resumed = run_experiment(load_config(overrides), overrides, cut)
    assert resumed.reused_chunks > 0
    assert resumed.rows.equals(full.rows)
