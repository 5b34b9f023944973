"""Contrasts, multiplicity, relevance, rank sets, per-cell generators and KN selection, on
synthetic data with planted truth. NumPy only: seconds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from kibs_mc.analysis.effects import paired_effects
from kibs_mc.analysis.inference import (
    contrasts,
    holm,
    min_effect_p,
    rank_sets,
    ranks,
    t_interval,
)
from kibs_mc.analysis.selection import kn, kn_eta, next_count


def crn(rng: np.random.Generator, n: int, means, shared: float = 3.0, own: float = 1.0) -> np.ndarray:
    """n replicates x k scenarios: a large term every scenario shares in a replicate (the
    common random numbers) plus each scenario's own noise."""
    means = np.asarray(means, dtype=float)
    return means[None, :] + rng.normal(0, shared, size=(n, 1)) + rng.normal(0, own, size=(n, len(means)))


def long_rows(y: np.ndarray, names) -> pl.DataFrame:
    n = y.shape[0]
    return pl.DataFrame(
        {
            "scenario": [s for s in names for _ in range(n)],
            "replicate": np.tile(np.arange(n), len(names)),
            "y": y.T.reshape(-1),
        }
    )


def test_holm_keeps_the_familywise_error_at_alpha_with_all_null_contrasts():
    rng = np.random.default_rng(1)
    reps, held, raw = 1000, 0, 0
    for _ in range(reps):
        y = crn(rng, 40, [5.0] * 6)
        p = [min_effect_p(y[:, a] - y[:, b]) for a in range(6) for b in range(a + 1, 6)]
        held += bool((holm(p) < 0.05).any())
        raw += bool((np.array(p) < 0.05).any())
    assert held / reps <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)  # alpha + 3 binomial SE
    assert raw / reps > 0.2  # 15 unadjusted tests at 5% each do not keep it


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.2, float("nan")]
    assert holm(p)[:4] == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert np.isnan(holm(p)[4])


def test_contrast_cis_cover_the_planted_difference_near_nominal():
    rng = np.random.default_rng(2)
    hits, reps = 0, 1000
    for _ in range(reps):
        d = rng.gamma(4.0, 0.25, size=60) - 1 + 0.4  # skewed paired differences with mean 0.4
        low, high = t_interval(d)
        hits += low <= 0.4 <= high
    assert 0.925 <= hits / reps <= 0.97  # 0.95 within about three binomial standard errors


def test_a_small_sure_difference_is_not_clear_below_the_smallest_effect_that_matters():
    rng = np.random.default_rng(3)
    y = crn(rng, 300, [100.0, 100.9], shared=5.0, own=0.3)  # +0.9%: sure, but below 2%
    rows = long_rows(y, ["baseline", "a"])
    plain = contrasts(rows, ["y"], ["baseline", "a"], "baseline", min_effect=0.0)
    relevant = contrasts(rows, ["y"], ["baseline", "a"], "baseline", min_effect=0.02)
    assert plain["clear"][0] and plain["p_holm"][0] < 1e-6
    assert not relevant["clear"][0] and relevant["margin"][0] == pytest.approx(2.0, rel=0.05)
    big = long_rows(crn(rng, 300, [100.0, 105.0], shared=5.0, own=0.3), ["baseline", "a"])
    assert contrasts(big, ["y"], ["baseline", "a"], "baseline", min_effect=0.02)["clear"][0]


def test_effects_take_their_adjusted_decision_from_the_reported_family():
    from kibs_mc.analysis.effects import decide_effects

    rng = np.random.default_rng(4)
    names = ["baseline", "a", "b", "c"]
    rows = long_rows(crn(rng, 100, [10.0, 10.0, 10.6, 13.0]), names)
    family = contrasts(rows, ["y"], names, "baseline", min_effect=0.02)
    effects = decide_effects(paired_effects(rows, ["y"], "baseline", min_effect=0.02), family)
    for r in effects.iter_rows(named=True):
        match = family.filter((pl.col("scenario") == "baseline") & (pl.col("versus") == r["scenario"]))
        assert r["p_adjusted"] == match["p_holm"][0] and r["clear"] == match["clear"][0]
        assert r["p_value"] == pytest.approx(match["p_value"][0])
    assert effects.filter(pl.col("scenario") == "c")["clear"][0]
    assert not effects.filter(pl.col("scenario") == "a")["clear"][0]


def test_rank_sets_contain_the_true_rank_at_the_nominal_rate():
    rng = np.random.default_rng(4)
    truth = np.array([0.0, 0.1, 0.15, 0.6, 1.0])  # two close pairs and clear gaps
    true_rank = 1 + (truth[None, :] > truth[:, None]).sum(axis=1)
    reps, covered = 200, np.zeros(len(truth))
    for _ in range(reps):
        y = crn(rng, 50, truth, shared=2.0, own=0.4)
        _, low, high = rank_sets(y)
        covered += (low <= true_rank) & (true_rank <= high)
    assert (covered / reps >= 0.95 - 2 * np.sqrt(0.05 * 0.95 / reps)).all(), covered / reps
    rank, low, high = rank_sets(crn(rng, 200, truth, shared=2.0, own=0.4))
    assert (rank[4], low[4], high[4]) == (1, 1, 1)  # the clear best: first, surely
    assert low[1] < high[1]  # a close pair: its set spans both ranks


def test_ranks_follow_the_outcome_direction():
    rng = np.random.default_rng(5)
    rows = long_rows(crn(rng, 100, [3.0, 1.0, 2.0], own=0.1), ["a", "b", "c"])
    low_best = ranks(rows, ["y"], ["a", "b", "c"], lower_is_better=["y"])
    assert low_best.sort("rank")["scenario"].to_list() == ["b", "c", "a"]
    assert ranks(rows, ["y"], ["a", "b", "c"]).sort("rank")["scenario"].to_list() == ["a", "c", "b"]


def test_each_cell_depends_on_its_own_replicates_only_whatever_else_is_computed():
    rng = np.random.default_rng(6)
    y = crn(rng, 30, [0.0, 0.5, 1.0])
    rows = long_rows(y, ["a", "b", "c"]).with_columns(z=pl.col("y") * 2)
    both = paired_effects(rows, ["y", "z"], "a")
    one = paired_effects(rows.select("scenario", "replicate", "z"), ["z"], "a")
    reordered = paired_effects(rows, ["z", "y"], "a")
    key = (pl.col("outcome") == "z") & (pl.col("scenario") == "c")
    for other in (one, reordered):
        cis = ("ci_low", "ci_high")
        assert both.filter(key).select(cis).equals(other.filter(key).select(cis))


# ------------------------------------------------------------------ KN selection


def run_kn(rng: np.random.Generator, means, delta: float, step: int = 20, n0: int = 10):
    """KN as the pipeline runs it: rounds of ``step`` replicates for the contenders only."""
    k = len(means)
    pool = crn(rng, 3000, means)
    counts = [n0] * k
    reached = n0
    while True:
        result = kn([pool[: counts[i], i] for i in range(k)], delta, 0.05, n0)
        if result.done:
            return result, sum(counts)
        reached = next_count(result, reached, step, 10**6)
        for i in result.survivors:
            counts[i] = reached


def test_kn_selects_the_planted_best_at_a_rate_of_at_least_one_minus_alpha():
    rng = np.random.default_rng(7)
    delta, reps = 0.5, 200
    right = sum(run_kn(rng, [0, 0, 0, 0, delta], delta)[0].selected == 4 for _ in range(reps))
    assert right / reps >= 0.95
    # the same data, picking the larger mean after the first stage, is wrong far more often
    rng = np.random.default_rng(7)
    naive = sum(
        int(np.argmax(crn(rng, 3000, [0, 0, 0, 0, delta])[:10].mean(axis=0))) == 4 for _ in range(reps)
    )
    assert naive / reps < 0.9


def test_kn_stops_earlier_when_the_gap_is_larger():
    rng = np.random.default_rng(8)
    small = [run_kn(rng, [0, 0, 0.5], 0.5)[1] for _ in range(30)]
    large = [run_kn(rng, [0, 0, 2.0], 0.5)[1] for _ in range(30)]
    assert np.mean(large) < 0.6 * np.mean(small)


def test_kn_takes_the_decisions_of_the_one_at_a_time_procedure_whatever_the_rounds():
    rng = np.random.default_rng(9)
    pool = crn(rng, 2000, [0, 0.3, 0.6, 0.65])
    whole = kn([pool[:, i] for i in range(4)], 0.4, n0=10)
    assert whole.done and whole.selected in (2, 3)
    counts = [10] * 4
    while True:  # one replicate at a time, the paper's procedure
        result = kn([pool[: counts[i], i] for i in range(4)], 0.4, n0=10)
        if result.done:
            break
        for i in result.survivors:
            counts[i] += 1
    assert result.selected == whole.selected and result.eliminated_at == whole.eliminated_at
    assert max(whole.eliminated_at.values()) <= whole.bound


def test_kn_constants_follow_the_paper():
    # eta = ((2 alpha / (k - 1))^(-2 / (n0 - 1)) - 1) / 2 (Kim & Nelson 2001, s.3)
    assert kn_eta(0.05, 2, 3) == pytest.approx(0.5 * (0.1**-1 - 1))
    with pytest.raises(ValueError):
        kn([np.zeros(5)], 1.0)


# ------------------------------------------------------------------ adaptive precision on what is decided


def test_precision_on_effects_stops_when_the_effect_ci_reaches_the_target():
    """Common random numbers make each mean noisy (shared sd 3) but the paired effect precise
    (own sd 0.2): on=effect stops when the effect CI is narrow, long before the mean CIs are."""
    from kibs_mc.config import PrecisionConfig
    from kibs_mc.run.adaptive import next_targets, precision_cells
    from kibs_mc.run.plan import Scenario

    rng = np.random.default_rng(10)
    names = ["baseline", "a", "b"]
    pool = long_rows(crn(rng, 5000, [10.0, 10.5, 11.0], shared=3.0, own=0.2), names)
    scenarios = [Scenario(i, s, (), None) for i, s in enumerate(names)]  # type: ignore[arg-type]

    def adapt(on: str) -> tuple[int, dict]:
        precision = PrecisionConfig(outcome="y", half_width=0.01, relative=True, on=on)
        counts = dict.fromkeys(range(3), 10)
        while True:
            targets, _ = next_targets(pool, scenarios, counts, precision, 5000, 10, "baseline")
            if all(targets[i] <= counts[i] for i in counts):
                return counts[1], precision_cells(
                    pool.filter(pl.col("replicate") < counts[1]), names, "baseline", precision
                )
            counts = {i: max(counts[i], targets[i]) for i in counts}

    n_effect, cells = adapt("effect")
    assert all(half <= goal for half, goal in cells.values())
    mean_half = [
        _half_width(pool.filter((pl.col("scenario") == s) & (pl.col("replicate") < n_effect))["y"])
        for s in names
    ]
    assert max(mean_half) > 0.01 * 10  # the means are not that precise yet
    n_mean, _ = adapt("mean")
    assert n_mean > 5 * n_effect
    n_contrast, cells = adapt("contrast")
    assert n_contrast >= n_effect and all(half <= goal for half, goal in cells.values())


def _half_width(y: pl.Series) -> float:
    from scipy.special import stdtrit

    v = y.to_numpy()
    return float(stdtrit(len(v) - 1, 0.975) * v.std(ddof=1) / np.sqrt(len(v)))


def test_the_executive_summary_names_the_best_and_who_it_is_not_relevantly_ahead_of():
    from kibs_mc.analysis.effects import decide_effects
    from kibs_mc.analysis.report import Findings, executive_summary

    rng = np.random.default_rng(12)
    names = ["baseline", "a", "b", "c"]
    # b leads a by 1% (sure at n=300, but below the 2% that matters) and c by 10%
    rows = long_rows(crn(rng, 300, [100.0, 109.0, 110.0, 100.5], shared=5.0, own=0.5), names)
    family = contrasts(rows, ["y"], names, "baseline", min_effect=0.02)
    effects = decide_effects(paired_effects(rows, ["y"], "baseline", min_effect=0.02), family)
    # equal budgets, up to the float noise of summed spending
    cost = pl.DataFrame({"scenario": names, "cost": [0.0, 1800.0, 1800.0 + 1.3e-10, 1800.0 - 2e-11]})
    rows = rows.join(cost, on="scenario")
    ranked = ranks(rows, ["y", "cost"], names, lower_is_better=["cost"])
    text = "\n".join(
        executive_summary(
            Findings("y", "baseline", family, ranked, effects, 0.02, True, 0.05, "holm", cost="cost"), ["y"]
        )
    )
    assert "the same budget as every other policy" in text
    assert "Best for `y` (higher is better): `b`" in text
    assert "Not clearly ahead of `a`" in text and "beyond chance, but smaller than" in text
    assert "clearly ahead of the other 2" in text
    assert "6 pairwise contrasts" in text


def test_the_cost_sentence_names_the_policies_that_cost_otherwise():
    """Equal budgets but an instrument that leaves money unspent: the summary names the policy
    that spent less instead of calling the budgets different; when the best one is the odd one
    out, it gives the range."""
    from kibs_mc.analysis.effects import decide_effects
    from kibs_mc.analysis.report import Findings, executive_summary

    names = ["baseline", "a", "b", "c"]
    base = long_rows(
        crn(np.random.default_rng(12), 300, [100.0, 109.0, 110.0, 100.5], shared=5.0, own=0.5), names
    )
    family = contrasts(base, ["y"], names, "baseline", min_effect=0.02)
    effects = decide_effects(paired_effects(base, ["y"], "baseline", min_effect=0.02), family)

    def summary(costs: list[float]) -> str:
        rows = base.join(pl.DataFrame({"scenario": names, "cost": costs}), on="scenario")
        ranked = ranks(rows, ["y", "cost"], names, lower_is_better=["cost"])
        found = Findings("y", "baseline", family, ranked, effects, 0.02, True, 0.05, "holm", cost="cost")
        return "\n".join(executive_summary(found, ["y"]))

    text = summary([0.0, 1800.0, 1800.0, 1761.4])  # b is best
    assert "Its cost (`cost`) is 1800, the same as every other policy's except `c` 1761" in text
    text = summary([0.0, 1800.0, 1700.0, 1800.0])
    assert "Its cost (`cost`) is 1700, not the same for every policy (1700 to 1800)" in text


def test_the_summary_does_not_call_a_large_lead_small_when_the_adjustment_decides():
    """b leads every other scenario by ~10% (five times the 2% that matters), but with 4
    replicates and 15 contrasts Holm's adjustment leaves it unclear: the summary must say the
    adjustment (too few replicates) decides, not that the lead is smaller than the margin."""
    from kibs_mc.analysis.effects import decide_effects
    from kibs_mc.analysis.report import Findings, executive_summary

    names = ["baseline", "a", "b", "c", "d", "e"]
    rows = long_rows(
        crn(np.random.default_rng(0), 4, [100.0, 100.0, 110.0, 100.0, 100.0, 100.0], shared=5.0, own=3.0),
        names,
    )
    family = contrasts(rows, ["y"], names, "baseline", min_effect=0.02)
    effects = decide_effects(paired_effects(rows, ["y"], "baseline", min_effect=0.02), family)
    ranked = ranks(rows, ["y"], names)
    findings = Findings("y", "baseline", family, ranked, effects, 0.02, True, 0.05, "holm")
    lines = executive_summary(findings, ["y"])
    close = next(line for line in lines if line.startswith("- Not clearly ahead of"))
    leads = family.filter((pl.col("scenario") == "b") | (pl.col("versus") == "b"))
    unclear_big = leads.filter(~pl.col("clear") & (pl.col("difference").abs() > pl.col("margin")))
    assert unclear_big.height >= 3  # the planted situation
    assert "smaller than" not in close
    assert close.count("not clear after adjustment") == unclear_big.height


def test_each_outcome_is_its_own_holm_family():
    """The decided outcome's contrasts are adjusted among themselves only: adding seven more
    outcomes leaves its adjusted p-values and decisions as they were (one family of 120 would
    multiply its smallest p by up to 120 instead of 15)."""
    from kibs_mc.analysis.effects import decide_effects

    rng = np.random.default_rng(9)
    names = ["baseline", "a", "b", "c", "d", "e"]
    y = crn(rng, 12, [10.0, 10.4, 10.8, 10.0, 9.6, 10.2], own=0.5)
    rows = long_rows(y, names)
    for i in range(7):
        rows = rows.with_columns(pl.col("y").alias(f"other{i}") + rng.normal(0, 1, rows.height))
    alone = contrasts(rows, ["y"], names, "baseline", min_effect=0.0)
    together = contrasts(rows, ["y", *[f"other{i}" for i in range(7)]], names, "baseline", min_effect=0.0)
    mine = together.filter(pl.col("outcome") == "y")
    assert mine.height == 15 and together.height == 120
    assert mine.select("p_holm", "p_bh", "clear").equals(alone.select("p_holm", "p_bh", "clear"))
    assert list(mine["p_holm"]) == pytest.approx(list(holm(mine["p_value"].to_numpy())))
    # effects outside the contrasts: one family per outcome as well
    effects = decide_effects(paired_effects(rows, ["y", "other0"], "baseline"))
    for outcome in ("y", "other0"):
        part = effects.filter(pl.col("outcome") == outcome)
        assert list(part["p_adjusted"]) == pytest.approx(list(holm(part["p_value"].to_numpy())))
