"""A replicate that raises is reported with scenario, replicate and seed; the others are kept."""

from __future__ import annotations

import polars as pl

from kibs_mc import simulate
from kibs_mc.config import load_config
from kibs_mc.experiment import run_experiment
from kibs_mc.plan import replicate_seeds

SMALL = ["model=cowan_jonard", "model.agents=60", "model.degree=4", "model.categories=5", "tracking=none",
         "executor=serial", "experiment=cj_docking", "replicates=6", "executor.chunk_size=4"]


def test_a_failing_replicate_is_reported_and_the_others_kept(tmp_path, monkeypatch, capsys):
    bad_seed = int(replicate_seeds(load_config(SMALL).seed, 6)[2])
    real, outcomes = simulate.MODELS["cowan_jonard"]

    def flaky(config, seed):
        if seed == bad_seed and config.model.rewire_p == 0.1:
            raise FloatingPointError("knowledge became NaN")
        return real(config, seed)

    monkeypatch.setitem(simulate.MODELS, "cowan_jonard", (flaky, outcomes))
    result = run_experiment(load_config(SMALL), SMALL, tmp_path / "run")
    assert result.rows.height == 6 * 6 - 1
    assert result.failed is not None and result.failed.to_dicts() == [{
        "scenario": "p=0.1", "replicate": 2, "seed": bad_seed,
        "error": "FloatingPointError: knowledge became NaN"}]
    assert pl.read_parquet(tmp_path / "run" / "errors.parquet").height == 1
    err = capsys.readouterr().err
    assert f"scenario=p=0.1 replicate=2 seed={bad_seed}" in err and "FloatingPointError" in err
    # The other replicates are exactly those of an undisturbed run.
    monkeypatch.setitem(simulate.MODELS, "cowan_jonard", (real, outcomes))
    clean = run_experiment(load_config(SMALL), SMALL, tmp_path / "clean").rows
    keep = ~((pl.col("scenario") == "p=0.1") & (pl.col("replicate") == 2))
    assert clean.filter(keep).equals(result.rows)
