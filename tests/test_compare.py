"""``kibs-mc-compare`` on a real MLflow store: what differs between runs,
CIs on differences, the verdicts of ``show`` in words, exit 2 for what cannot be compared."""

from __future__ import annotations

import math

import polars as pl
import pytest
from scipy import stats

from kibs_mc.config import load_config
from kibs_mc.experiments import run_experiment
from kibs_mc.terminal import CLEAR, number
from kibs_mc.tracking.compare import main

FAST = ["cluster=small", "model.steps=20", "executor=serial"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three experiments in one SQLite store: two compare_governance runs that differ in a
    cost and in the model's horizon, and a Cowan-Jonard run with no scenario in common."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = {}
    for name, args in {
        "a": ["experiment=compare_governance", "replicates=4", *FAST],
        "b": [
            "experiment=compare_governance",
            "replicates=5",
            *FAST,
            "governance.unit_cost.business=0.2",
            "model.steps=15",
        ],
        "cj": [
            "model=cowan_jonard",
            "model.agents=40",
            "model.degree=4",
            "model.categories=4",
            "replicates=3",
            "executor=serial",
        ],
    }.items():
        args = [*args, f"tracking.uri={uri}", "figures=false"]  # what is compared: runs, not figures
        result = run_experiment(load_config(args), args, root / name)
        assert result.mlflow_run_id
        runs[name] = (result.mlflow_run_id, root / name)
    return uri, runs


def compare(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow
def test_list_shows_what_differs_between_runs_at_80_columns(store, capsys, monkeypatch):
    uri, runs = store
    # Run dirs are shown relative to the working directory (an absolute temporary path is
    # long enough to be folded across lines, as any long path would be).
    root = next(iter(runs.values()))[1].parent
    monkeypatch.chdir(root.parent)
    status, out, _ = compare(capsys, "--uri", uri, "list")
    assert status == 0
    assert max(len(line) for line in out.splitlines()) <= 80 and "…" not in out
    flat = " ".join(out.split())
    for run_id, run_dir in runs.values():
        assert run_id[:8] in out and f"{root.name}/{run_dir.name}" in out
    assert "differs: governance.unit_cost.business=0.2 model.steps=15" in flat
    assert "differs: governance.unit_cost.business=0.1 model.steps=20" in flat
    assert "compare_governance: 6 scenarios x 5 replicates" in flat


@pytest.mark.slow
def test_show_marks_the_clear_effects_in_words_and_refuses_an_unknown_outcome(store, capsys):
    uri, runs = store
    run_id, run_dir = runs["a"]
    status, out, _ = compare(capsys, "--uri", uri, "show", run_id[:8], "--outcome", "innovations_total")
    assert status == 0 and max(len(line) for line in out.splitlines()) <= 80
    effects = pl.read_parquet(run_dir / "effects.parquet").filter(pl.col("outcome") == "innovations_total")
    verdict = "clear" if "clear" in effects.columns else "significant"
    marked = {line.split()[0] for line in out.splitlines() if line.rstrip().endswith(CLEAR)}
    assert marked == set(effects.filter(pl.col(verdict))["scenario"])
    assert "hte_exits" not in out
    status, out, err = compare(capsys, "--uri", uri, "show", run_id, "--outcome", "innovations")
    assert status == 2 and out == ""
    assert "'innovations'" in err and "innovations_total" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_diff_gives_a_ci_for_each_difference_and_warns_of_another_model(store, capsys):
    uri, runs = store
    (a, dir_a), (b, dir_b) = runs["a"], runs["b"]
    status, out, err = compare(capsys, "--uri", uri, "diff", a, b, "--outcome", "innovations_total")
    assert status == 0
    assert "governance.unit_cost.business: 0.1" in " ".join(out.split())
    assert "warning" in err and "model.steps: 20 vs 15" in err
    ra = pl.read_parquet(dir_a / "replicates.parquet").filter(pl.col("scenario") == "information")
    rb = pl.read_parquet(dir_b / "replicates.parquet").filter(pl.col("scenario") == "information")
    x, y = ra["innovations_total"].cast(pl.Float64), rb["innovations_total"].cast(pl.Float64)
    va, vb = x.var() / x.len(), y.var() / y.len()
    df = (va + vb) ** 2 / (va**2 / (x.len() - 1) + vb**2 / (y.len() - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)  # Welch, from the replicates themselves
    line = next(line for line in out.splitlines() if line.split()[:1] == ["information"])
    assert f"± {number(half, 2)}" in line


@pytest.mark.slow
def test_diff_of_runs_without_a_common_scenario_exits_2(store, capsys):
    uri, runs = store
    status, out, err = compare(capsys, "--uri", uri, "diff", runs["a"][0], runs["cj"][0])
    assert status == 2 and out == ""
    assert "no scenario in common" in err and "allowed" in err
