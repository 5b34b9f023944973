"""A replicate that raises is reported with scenario, replicate and seed; the others are kept."""

from __future__ import annotations

import polars as pl

from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment
from kibs_mc.models import MODELS
from kibs_mc.run.plan import replicate_seeds

SMALL = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "tracking=none",
    "executor=serial",
    "experiment=cj_docking",
    "replicates=6",
    "executor.chunk_size=4",
]


def test_a_failing_replicate_is_reported_and_the_others_kept(tmp_path, monkeypatch, capsys):
    bad_seed = int(replicate_seeds(load_config(SMALL).seed, 6)[2])
    real = MODELS["cowan_jonard"].simulate

    def flaky(config, seed):
        if seed == bad_seed and config.model.rewire_p == 0.1:
            raise FloatingPointError("knowledge became NaN")
        return real(config, seed)

    monkeypatch.setattr(MODELS["cowan_jonard"], "simulate", flaky)
    result = run_experiment(load_config(SMALL), SMALL, tmp_path / "run")
    assert result.rows.height == 6 * 6 - 1
    assert result.failed is not None and result.failed.to_dicts() == [
        {
            "scenario": "p=0.1",
            "replicate": 2,
            "seed": bad_seed,
            "error": "FloatingPointError: knowledge became NaN",
        }
    ]
    assert pl.read_parquet(tmp_path / "run" / "errors.parquet").height == 1
    err = capsys.readouterr().err
    assert f"scenario=p=0.1 replicate=2 seed={bad_seed}" in err and "FloatingPointError" in err
    # The other replicates are exactly those of an undisturbed run.
    monkeypatch.setattr(MODELS["cowan_jonard"], "simulate", real)
    clean = run_experiment(load_config(SMALL), SMALL, tmp_path / "clean").rows
    keep = ~((pl.col("scenario") == "p=0.1") & (pl.col("replicate") == 2))
    assert clean.filter(keep).equals(result.rows)


def test_a_scenario_whose_replicates_all_fail_keeps_the_others(tmp_path, monkeypatch):
    """A flush holding only failed replicates (no rows at all) is written, not a crash."""
    real = MODELS["cowan_jonard"].simulate

    def broken_at_p0(config, seed):
        if config.model.rewire_p == 0.0:
            raise FloatingPointError("diverged")
        return real(config, seed)

    monkeypatch.setattr(MODELS["cowan_jonard"], "simulate", broken_at_p0)
    from kibs_mc.run import store as results

    monkeypatch.setattr(
        results.ResultStore,
        "__init__",  # flush after every chunk
        _with_flush_rows(results.ResultStore.__init__, 1),
    )
    result = run_experiment(load_config(SMALL), SMALL, tmp_path / "run")
    assert result.rows.height == 5 * 6
    assert set(result.rows["scenario"]) == {"p=0.01", "p=0.03", "p=0.1", "p=0.3", "p=1"}
    assert result.failed is not None and result.failed.height == 6
    assert "_chunk" not in pl.read_parquet(tmp_path / "run" / "replicates.parquet").columns


def _with_flush_rows(init, flush_rows):
    def patched(self, run_dir, flush_seconds=1.0, flush_rows_=flush_rows):
        init(self, run_dir, flush_seconds=0.0, flush_rows=flush_rows_)

    return patched
