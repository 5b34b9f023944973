"""What to measure next: EVPPI by regression on the worlds already simulated (analysis/voi.py),
against planted decisions whose value of information is known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from kibs_mc.analysis.voi import Smoother, voi_table


def planted(seed: int, worlds: int = 128, slope: float = 2.0, flip: float = 0.5, noise: float = 0.5):
    """Three policies in worlds of three parameters: B beats A by slope x (x - flip), C trails
    A by 0.3; y and the log-scale z do not enter. A world-level shift common to the policies
    (as common random numbers give) cancels in every comparison. Knowing x is worth
    E[max(0, slope (x - flip))] - max(0, slope (0.5 - flip)) (x uniform on [0, 1]); y and z
    are worth nothing."""
    rng = np.random.default_rng(seed)
    x, y = rng.random(worlds), rng.random(worlds)
    z = np.exp(rng.uniform(np.log(0.01), 0.0, worlds))
    shift = rng.normal(0.0, 1.0, worlds)
    j = np.column_stack(
        [
            shift + rng.normal(0, noise, worlds),
            shift + slope * (x - flip) + rng.normal(0, noise, worlds),
            shift - 0.3 + rng.normal(0, noise, worlds),
        ]
    )
    points = pl.DataFrame({"world": np.arange(worlds), "x": x, "y": y, "z": z})
    truth = slope * (1 - flip) ** 2 / 2 - max(0.0, slope * (0.5 - flip))
    return points, j, truth


def test_the_parameter_the_decision_flips_on_has_the_largest_evppi_and_one_that_does_not_enter_reaches_0():
    points, j, truth = planted(seed=3)
    table = voi_table(points, j, ["A", "B", "C"], maximize=True, seed=1)
    assert table["parameter"].to_list()[0] == "x"  # most valuable first
    rows = {r["parameter"]: r for r in table.iter_rows(named=True)}
    x = rows["x"]
    assert x["ci_low"] > 0 and x["ci_low"] <= truth <= x["ci_high"]
    assert x["p_value"] < 0.025
    for name in ("y", "z"):  # no information in them: the interval reaches 0
        assert rows[name]["ci_low"] == 0.0 and rows[name]["evppi"] < x["ci_low"]
    # regret units: EVPPI is at most the expected regret of the policy chosen now (EVPI)
    score = j - j[:, [int(np.argmax(j.mean(axis=0)))]]
    assert x["evpi"] == pytest.approx(np.mean(score.max(axis=1)))
    assert (table["ci_high"] <= table["evpi"] + 1e-12).all()
    assert table["chosen"][0] in ("A", "B") and table["worlds"][0] == 128


def test_a_minimised_objective_is_the_same_decision_turned_over():
    points, j, _ = planted(seed=4)
    up = voi_table(points, j, ["A", "B", "C"], maximize=True, seed=2)
    down = voi_table(points, -j, ["A", "B", "C"], maximize=False, seed=2)
    assert up.equals(down)


def test_a_parameter_that_does_not_vary_is_worth_nothing_and_a_world_without_results_is_left_out():
    points, j, _ = planted(seed=5, worlds=64)
    points = points.with_columns(pl.lit(0.3).alias("fixed"))
    j[7, 1] = np.nan  # a world whose policy B failed
    table = voi_table(points, j, ["A", "B", "C"], maximize=True, seed=1)
    fixed = table.filter(pl.col("parameter") == "fixed").row(0, named=True)
    assert fixed["evppi"] == fixed["ci_high"] == 0.0 and fixed["p_value"] == 1.0
    assert table["worlds"][0] == 63


def test_the_smoother_keeps_a_trend_and_flattens_noise():
    """GCV keeps a trend in the parameter's ranks exactly (the penalty leaves straight lines
    alone) and fits pure noise with few effective degrees of freedom; tied values share a rank."""
    rng = np.random.default_rng(0)
    x = np.round(rng.random(200), 2)  # ties, as integers and repeated particles give
    smoother = Smoother.of(x)
    assert smoother.q.shape[1] <= 12
    from scipy.stats import rankdata

    trend = np.column_stack([2.0 + 3.0 * rankdata(x)])
    _, _, residuals = smoother.fit(trend)
    assert np.abs(residuals).max() < 1e-6 * np.abs(trend).max()
    d, _, _ = smoother.fit(rng.normal(size=(200, 3)))
    assert (d.sum(axis=0) < 4).all()


def test_too_few_worlds_give_no_rows():
    points, j, _ = planted(seed=6, worlds=6)
    table = voi_table(points, j, ["A", "B", "C"], maximize=True, seed=1)
    assert table.height == 0 and "evppi" in table.columns
