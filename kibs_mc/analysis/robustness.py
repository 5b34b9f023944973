"""Robustness of policies across uncertain worlds: objective, regret, rank probabilities,
scenario discovery (``experiment=robustness``).

Every (world, policy) pair is one scenario of the run; the R replicates of the policies of one
world share their seeds (common random numbers), worlds use independent seed blocks. From the
replicate rows this module builds arrays y[w, p, r] (the objective's outcome) and c[w, p, r]
(the governance spending) and computes:

- the objective J[w, p] of each policy in each world: the mean outcome, or with ``per_money``
  the paired effect against the baseline policy per unit of extra spending,
  mean_r(y_p - y_0) / mean_r(c_p - c_0) (J of the baseline is 0: no money, no effect);
- per world: the best policy and the regret of every policy, J_best - J_p (for a ``min``
  objective the sign is turned, so regret is always >= 0);
- across worlds (McPhail et al. 2018, Earth's Future 6:169-191, for the metric families): the
  probability that a policy is best (ties split evenly), mean and 90th-percentile regret
  (Savage's minimax-regret family), the satisficing share (Simon; Starr's domain criterion),
  and the worst case (Wald's maximin);
- each with a CI that accounts for the noise within worlds as well as the sampling of worlds
  (:func:`world_bounds`): in each world the replicates bound every per-world quantity (is the
  policy surely / possibly best, its regret, does it surely / possibly satisfice, its
  objective) by t intervals of the paired per-replicate values, simultaneous over a policy's
  comparisons (Bonferroni); the worlds are then resampled with replacement (Davison & Hinkley
  1997, s.3.8 on hierarchical data) and the CI runs from the alpha/2 quantile of the metric of
  the lower bounds to the 1 - alpha/2 quantile of the metric of the upper bounds. The argmax of
  noisy means is biased toward a tie (a policy best by a small margin in every world is "best"
  in only some of them), and resampling replicates inherits that bias; bounding each world
  instead keeps the truth inside (docs/robustness.md, "Measured coverage").

Scenario discovery (Bryant & Lempert 2010, Technol. Forecast. Soc. Change 77:34-49) uses EMA
Workbench's PRIM (Friedman & Fisher 1999, Stat. Comput. 9:123-143) and CART (Breiman et al.
1984) on the worlds' parameter values, with the target "policy p is best here" or "policy p
fails the satisficing threshold here".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import stdtrit

from kibs_mc.config import UncertainParameter, UncertaintyConfig

#: Bootstrap draws for the robustness metrics' CIs.
BOOTSTRAP_SAMPLES = 1000
#: The metrics of robustness.parquet, in the order of the report.
METRICS = ("p_best", "regret_mean", "regret_p90", "satisficing", "worst_case")


@dataclass(frozen=True)
class Outcomes:
    """The run's replicate results as arrays over (world, policy, replicate)."""

    worlds: list[int]
    policies: list[str]
    y: np.ndarray  # objective outcome, float, NaN where missing
    cost: np.ndarray  # governance spending, float


def to_arrays(
    rows: pl.DataFrame,
    worlds: Sequence[int],
    policies: Sequence[str],
    outcome: str,
    cost: str | None,
    replicates: int,
) -> Outcomes:
    """Arrays (W, P, R) from rows with columns world, policy, replicate (global), outcome, cost.

    A (world, replicate) pair that is missing for any policy (a failed replicate) is masked for
    all policies, so every comparison stays paired.
    """
    w_index = {w: i for i, w in enumerate(worlds)}
    p_index = {p: i for i, p in enumerate(policies)}
    shape = (len(worlds), len(policies), replicates)
    y = np.full(shape, np.nan)
    c = np.full(shape, np.nan)
    wi = np.array([w_index[w] for w in rows["world"].to_list()], dtype=np.int64)
    pi = np.array([p_index[p] for p in rows["policy"].to_list()], dtype=np.int64)
    ri = rows["replicate"].to_numpy() - np.array([worlds[i] for i in wi]) * replicates
    y[wi, pi, ri] = rows[outcome].cast(pl.Float64).to_numpy()
    if cost is not None:
        c[wi, pi, ri] = rows[cost].cast(pl.Float64).to_numpy()
    else:
        c[wi, pi, ri] = 0.0
    missing = np.isnan(y).any(axis=1, keepdims=True)
    y[np.broadcast_to(missing, shape)] = np.nan
    return Outcomes(list(worlds), list(policies), y, c)


def world_objective(
    data: Outcomes,
    baseline: int | None,
    per_money: bool,
    world_draw: np.ndarray | None = None,
    replicate_draw: np.ndarray | None = None,
) -> np.ndarray:
    """J[b, w, p]: each policy's objective in each (resampled) world, natural units.

    Args:
        baseline: index of the baseline policy (needed for ``per_money``).
        world_draw: (B, W) world indices; default: the worlds as they are (B = 1).
        replicate_draw: (B, W, R) replicate indices; default: every replicate once.
    """
    W, _, R = data.y.shape
    if world_draw is None:
        world_draw = np.arange(W)[None, :]
    if replicate_draw is None:
        replicate_draw = np.broadcast_to(np.arange(R), (world_draw.shape[0], W, R))
    take = replicate_draw[:, :, None, :]
    y = np.take_along_axis(data.y[world_draw], take, axis=3)  # (B, W, P, R)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN world: J is NaN
        if not per_money:
            return np.nanmean(y, axis=3)
        assert baseline is not None
        c = np.take_along_axis(data.cost[world_draw], take, axis=3)
        effect = np.nanmean(y - y[:, :, baseline : baseline + 1, :], axis=3)
        spent = np.nanmean(c - c[:, :, baseline : baseline + 1, :], axis=3)
        j = np.where(spent > 0, effect / np.where(spent > 0, spent, 1.0), np.nan)
    j[:, :, baseline] = 0.0
    return j


def _best_share(score: np.ndarray) -> np.ndarray:
    """(…, W, P) -> (…, W, P): 1/k for each of the k policies tied for the best, else 0."""
    best = np.nanmax(score, axis=-1, keepdims=True)
    tied = np.isclose(score, best, rtol=1e-12, atol=0.0)
    return tied / np.maximum(tied.sum(axis=-1, keepdims=True), 1)


def robustness_metrics(j: np.ndarray, maximize: bool, satisfice: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics per policy from J (B, W, P); each result is (B, P).

    ``satisfice`` (B, W) or scalar: the threshold J must reach (>= for max, <= for min).
    """
    score = j if maximize else -j
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        regret = np.nanmax(score, axis=2, keepdims=True) - score
        thr = np.asarray(satisfice, dtype=float)
        thr = thr[..., None] if thr.ndim == 2 else thr
        ok = (j >= thr) if maximize else (j <= thr)
        return {
            "p_best": np.nanmean(_best_share(score), axis=1),
            "regret_mean": np.nanmean(regret, axis=1),
            "regret_p90": np.nanquantile(regret, 0.9, axis=1),
            "satisficing": ok.mean(axis=1),
            "worst_case": np.nanmin(j, axis=1) if maximize else np.nanmax(j, axis=1),
        }


def pseudo_values(data: Outcomes, baseline: int | None, per_money: bool) -> np.ndarray:
    """(W, P, R) per-replicate values whose mean over a world's replicates is J[w, p].

    Without ``per_money`` the outcome itself. With it, J = mean(e) / mean(s) with e = y_p - y_0
    and s = c_p - c_0 per replicate; the linearised values J + (e_r - J s_r) / mean(s) (the
    delta method for a ratio of means; Cochran 1977, s.6.4) have mean J and carry its
    replicate noise, paired across policies like the outcomes themselves."""
    if not per_money:
        return data.y.copy()
    assert baseline is not None
    j = world_objective(data, baseline, per_money)[0]  # (W, P)
    e = data.y - data.y[:, baseline : baseline + 1, :]
    spent = data.cost - data.cost[:, baseline : baseline + 1, :]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_spent = np.nanmean(spent, axis=2, keepdims=True)
        v = j[:, :, None] + (e - j[:, :, None] * spent) / np.where(mean_spent > 0, mean_spent, np.nan)
    v[:, baseline, :] = np.where(np.isnan(data.y[:, baseline, :]), np.nan, 0.0)
    return v


def _t_bounds(d: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``d`` over its last axis (NaN = missing) -+ t_{n-1, 1 - alpha} se: each a
    one-sided (1 - alpha) bound; exact where the values do not vary (an exact difference),
    unbounded below two values."""
    ok = np.isfinite(d)
    n = ok.sum(axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(d, axis=-1)
        sd = np.nanstd(d, axis=-1, ddof=1)
        half = stdtrit(np.maximum(n - 1, 1), 1 - alpha) * sd / np.sqrt(n)
    half = np.where(n >= 2, np.where(sd > 0, half, 0.0), np.inf)
    return mean - half, mean + half


def _flag(condition: np.ndarray, source: np.ndarray) -> np.ndarray:
    """1.0 / 0.0 for ``condition``, NaN where ``source`` is NaN (a world without results)."""
    return np.where(np.isnan(source), np.nan, condition.astype(float))


def world_bounds(
    v: np.ndarray, maximize: bool, satisfice: float | None, baseline: int | None, alpha: float = 0.05
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per (world, policy), from the pseudo-values ``v`` (W, P, R), a low and a high bound of
    each per-world quantity, each holding with probability >= 1 - alpha / 2: ``best`` (1 where
    surely best; 1 where possibly best), ``regret`` (low, high), ``satisfices`` (surely,
    possibly) and ``objective`` (low, high).

    Policy p's regret is max(0, max_q D_qp), D_qp = J_q - J_p, from one-sided t bounds of the
    paired differences. Its high bound needs only the true best q's bound to hold, so each
    D_qp gets level alpha / 2; its low bound must hold for whichever q gives the largest, so
    each gets alpha / (2 (k - 1)) (Bonferroni). p is surely best when its high regret is 0
    (every other policy surely worse: an intersection-union test, Berger 1982, Technometrics
    24:295-300) and possibly best when its low regret is 0 (no other policy surely better)."""
    score = v if maximize else -v
    _, k, _ = score.shape
    d = score[:, None, :, :] - score[:, :, None, :]  # d[w, p, q] = score_q - score_p
    others = ~np.eye(k, dtype=bool)
    _, high = _t_bounds(d, alpha / 2)
    low, _ = _t_bounds(d, alpha / (2 * max(k - 1, 1)))
    low = np.where(others, low, -np.inf).max(axis=2)
    high = np.where(others, high, -np.inf).max(axis=2)
    regret = (np.maximum(low, 0.0), np.maximum(high, 0.0))  # NaN stays NaN: a world without results
    best = (_flag(high < 0, high), _flag(low <= 0, low))
    if satisfice is None:
        assert baseline is not None
        gap = score - score[:, baseline : baseline + 1, :]
    else:
        gap = score - (satisfice if maximize else -satisfice)
    s_low, s_high = _t_bounds(gap, alpha / 2)
    o_low, o_high = _t_bounds(v, alpha / 2)
    return {
        "best": best,
        "regret": regret,
        "satisfices": (_flag(s_low >= 0, s_low), _flag(s_high >= 0, s_high)),
        "objective": (o_low, o_high),
    }


def _quantile(x: np.ndarray, q, axis: int) -> np.ndarray:
    """np.nanquantile, through np.quantile when nothing is missing (many times faster)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(x, q, axis=axis) if np.isnan(x).any() else np.quantile(x, q, axis=axis)


def _across(per_world: np.ndarray, metric: str, maximize: bool) -> np.ndarray:
    """A metric across worlds from per-world values (B, W, P) -> (B, P)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if metric == "regret_p90":
            return _quantile(per_world, 0.9, axis=1)
        if metric == "worst_case":
            return np.nanmin(per_world, axis=1) if maximize else np.nanmax(per_world, axis=1)
        return np.nanmean(per_world, axis=1)


#: Which per-world bound each metric is computed from.
_BOUND_OF = {
    "p_best": "best",
    "regret_mean": "regret",
    "regret_p90": "regret",
    "satisficing": "satisfices",
    "worst_case": "objective",
}


def bootstrap_draws(worlds: int, replicates: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, W) world draws and (B, W, R) replicate draws of the two-stage bootstrap."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x40B057,)))
    return (
        rng.integers(0, worlds, size=(samples, worlds)),
        rng.integers(0, replicates, size=(samples, worlds, replicates)),
    )


def satisfice_threshold(j: np.ndarray, baseline: int | None, value: float | None) -> np.ndarray:
    """(B, W) thresholds: ``value``, or (None) the baseline policy's J in each world."""
    if value is not None:
        return np.full(j.shape[:2], float(value))
    assert baseline is not None
    return j[:, :, baseline]


@dataclass(frozen=True)
class Scoring:
    """How each policy is scored in each world: its objective (against the policy at index
    ``baseline``, or alone with None; per unit of money with ``per_money``), better when larger
    with ``maximize``, satisficing at ``satisfice`` (None: at the baseline's objective)."""

    baseline: int | None
    per_money: bool
    maximize: bool
    satisfice: float | None


def robustness_table(
    data: Outcomes,
    scoring: Scoring,
    seed: int,
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """robustness.parquet: one row per (policy, metric): the estimate from the worlds' means
    and its CI from the per-world bounds (:func:`world_bounds`) over resampled worlds."""
    baseline, per_money, maximize, satisfice = (
        scoring.baseline,
        scoring.per_money,
        scoring.maximize,
        scoring.satisfice,
    )
    W = data.y.shape[0]
    alpha = 1 - confidence
    point_j = world_objective(data, baseline, per_money)
    point = robustness_metrics(point_j, maximize, satisfice_threshold(point_j, baseline, satisfice))
    bounds = world_bounds(pseudo_values(data, baseline, per_money), maximize, satisfice, baseline, alpha)
    draws, _ = bootstrap_draws(W, 1, samples, seed)
    records = []
    for metric in METRICS:
        lower, upper = bounds[_BOUND_OF[metric]]
        low_of = _across(lower[draws], metric, maximize)
        high_of = _across(upper[draws], metric, maximize)
        low = _quantile(low_of, alpha / 2, axis=0)
        high = _quantile(high_of, 1 - alpha / 2, axis=0)
        for p, policy in enumerate(data.policies):
            records.append(
                {
                    "policy": policy,
                    "metric": metric,
                    "value": float(point[metric][0, p]),
                    "ci_low": float(low[p]),
                    "ci_high": float(high[p]),
                }
            )
    return pl.DataFrame(
        records,
        schema={
            "policy": pl.String,
            "metric": pl.String,
            "value": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        },
    )


def per_world_table(
    data: Outcomes,
    scoring: Scoring,
    seed: int,
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """One row per (world, policy): mean outcome, objective, regret, best, how often the
    policy is best in that world when only its replicates are resampled (``p_best_in_world``),
    and the bounds the world's replicates put on it (:func:`world_bounds`: ``surely_best``,
    ``possibly_best``, ``regret_low``, ``regret_high``)."""
    baseline, per_money, maximize, satisfice = (
        scoring.baseline,
        scoring.per_money,
        scoring.maximize,
        scoring.satisfice,
    )
    W, P, R = data.y.shape
    j = world_objective(data, baseline, per_money)[0]
    score = j if maximize else -j
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        regret = np.nanmax(score, axis=1, keepdims=True) - score
        mean = np.nanmean(data.y, axis=2)
    share = _best_share(score)
    _, rd = bootstrap_draws(W, R, samples, seed + 1)
    boot = world_objective(data, baseline, per_money, np.broadcast_to(np.arange(W), (samples, W)), rd)
    p_in = _best_share(boot if maximize else -boot).mean(axis=0)
    thr = satisfice_threshold(j[None], baseline, satisfice)[0]
    ok = (j >= thr[:, None]) if maximize else (j <= thr[:, None])
    best_name = [
        data.policies[int(np.nanargmax(score[w]))] if np.isfinite(score[w]).any() else None for w in range(W)
    ]
    bounds = world_bounds(
        pseudo_values(data, baseline, per_money), maximize, satisfice, baseline, 1 - confidence
    )
    return pl.DataFrame(
        {
            "world": np.repeat(data.worlds, P),
            "policy": data.policies * W,
            "outcome_mean": mean.ravel(),
            "objective": j.ravel(),
            "regret": regret.ravel(),
            "best": (share > 0).ravel(),
            "best_policy": np.repeat(np.array(best_name, dtype=object), P).tolist(),
            "p_best_in_world": p_in.ravel(),
            "surely_best": (bounds["best"][0] == 1).ravel(),
            "possibly_best": (bounds["best"][1] == 1).ravel(),
            "regret_low": bounds["regret"][0].ravel(),
            "regret_high": bounds["regret"][1].ravel(),
            "satisfices": ok.ravel(),
        }
    )


# --------------------------------------------------------------------------- worlds


def sample_worlds(space: UncertaintyConfig, count: int, sampler: str, seed: int) -> np.ndarray:
    """``count`` worlds, one row each, one column per parameter of ``space``.

    Unit points from ``scipy.stats.qmc`` (scrambled Sobol', Owen 1998, or a Latin hypercube,
    McKay et al. 1979) seeded from the root seed, scaled to [low, high]: linearly, on a log
    scale (``scale: log``), or to the integers low..high, each about equally often
    (``integer: true``). Sobol' points keep their balance for counts that are powers of two.
    """
    from scipy.stats import qmc

    params = space.parameters
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x3011D5,)))
    if sampler == "sobol":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "balance properties ... power of 2"
            unit = qmc.Sobol(d=len(params), scramble=True, seed=rng).random(count)
    else:
        unit = qmc.LatinHypercube(d=len(params), seed=rng).random(count)
    return scale_unit(params, unit)


def scale_unit(params: Sequence[UncertainParameter], unit: np.ndarray) -> np.ndarray:
    """Points of the unit cube (one column per parameter) scaled to the parameters' ranges:
    linearly, on a log scale (``scale: log``: uniform in log), or to the integers low..high,
    each on an equal share of [0, 1) (``integer: true``); one monotone map per column (the
    sweep's factors use it too)."""
    out = np.empty(unit.shape, dtype=float)
    for j, p in enumerate(params):
        u = unit[:, j]
        if p.integer:
            out[:, j] = np.minimum(np.floor(p.low + u * (p.high - p.low + 1)), p.high)
        elif p.scale == "log":
            out[:, j] = np.exp(np.log(p.low) + u * (np.log(p.high) - np.log(p.low)))
        else:
            out[:, j] = p.low + u * (p.high - p.low)
    return out


def sample_posterior(particles: pl.DataFrame, keys: Sequence[str], count: int, seed: int) -> np.ndarray:
    """``count`` worlds drawn from weighted particles (columns ``keys`` and ``weight``), one row
    each: systematic resampling (Kitagawa 1996; every particle appears floor or ceil of
    count x weight times) from a seeded offset, in a seeded random order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x3011D5, 1)))
    w = particles["weight"].to_numpy().astype(float)
    edges = np.cumsum(w / w.sum())
    edges[-1] = 1.0
    picks = np.searchsorted(edges, (rng.random() + np.arange(count)) / count, side="right")
    values = particles.select(*keys).to_numpy().astype(float)[np.minimum(picks, len(w) - 1)]
    return values[rng.permutation(count)]


def worlds_frame(space: UncertaintyConfig, values: np.ndarray) -> pl.DataFrame:
    """worlds.parquet: ``world`` and one column per parameter key."""
    data: dict[str, Any] = {"world": np.arange(len(values), dtype=np.int64)}
    for j, p in enumerate(space.parameters):
        data[p.key] = values[:, j].astype(np.int64) if p.integer else values[:, j]
    return pl.DataFrame(data)


# --------------------------------------------------------------------------- discovery

#: Target density of the chosen PRIM box; among boxes of the peeling trajectory at least this
#: dense, the one with the largest coverage (then the densest) is chosen.
DENSITY_TARGET = 0.8


def _ema():
    """EMA Workbench's analysis modules (slow import: several seconds; only here)."""
    import logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ipyparallel not installed" and similar notices
        from ema_workbench.analysis import cart, prim
    logging.getLogger("EMA").setLevel(logging.WARNING)
    return prim, cart


def choose_box(trajectory, density: float = DENSITY_TARGET) -> int:
    dense = trajectory[trajectory["density"] >= density]
    if len(dense):
        top = dense[dense["coverage"] == dense["coverage"].max()]
        return int(top["density"].idxmax())
    return int((trajectory["coverage"] * trajectory["density"]).idxmax())


#: Bootstrap resamples of the worlds for the stability of each PRIM box's edges.
BOX_BOOTSTRAP = 50


def _prim_box(prim, x, y: np.ndarray, density: float, mass_min: float):
    """PRIM's box of ``y`` over ``x`` (EMA Workbench) and the index of the chosen box."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prim.Prim(x, y, threshold=0.5, peel_alpha=0.05, paste_alpha=0.05, mass_min=mass_min)
        box = p.find_box()
    return box, choose_box(box.peeling_trajectory.reset_index(drop=True), density)


@contextmanager
def _without_quasi_p(prim):
    """EMA Workbench's PRIM without its quasi-p values (a third of its time): a resampled box
    needs only its limits (the choice of box reads coverage and density)."""

    class Box(prim.PrimBox):
        def _calculate_quasi_p(self, i, restricted_dims):
            return {}

    original = prim.PrimBox
    prim.PrimBox = Box
    try:
        yield
    finally:
        prim.PrimBox = original


def box_edges(
    x, y: np.ndarray, density: float, mass_min: float, draws: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chosen PRIM box found again on each resample of the worlds (``draws``: B x W
    indices): its low and high edge per parameter (B x parameters; the parameter's whole
    range where the box does not restrict it) and whether it restricts it. A resample where
    the target is everywhere or nowhere gives NaN."""
    prim, _ = _ema()
    columns = list(x.columns)
    full = {c: (float(x[c].min()), float(x[c].max())) for c in columns}
    low = np.full((len(draws), len(columns)), np.nan)
    high = np.full((len(draws), len(columns)), np.nan)
    restricts = np.zeros((len(draws), len(columns)), dtype=bool)
    for b, rows in enumerate(draws):
        yb = y[rows]
        if yb.sum() == 0 or yb.sum() == len(yb):
            continue
        with _without_quasi_p(prim):
            box, chosen = _prim_box(prim, x.iloc[rows].reset_index(drop=True), yb, density, mass_min)
        lims = box.box_lims[chosen]
        for j, c in enumerate(columns):
            lo, hi = float(lims[c].iloc[0]), float(lims[c].iloc[1])
            restricts[b, j] = lo > full[c][0] or hi < full[c][1]
            low[b, j], high[b, j] = max(lo, full[c][0]), min(hi, full[c][1])
    return low, high, restricts


def _edge_cis(edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None, j: int) -> dict[str, float | None]:
    """95% percentile intervals of parameter j's box edges over the resamples, and the share
    of resampled boxes that restrict it (None without resamples)."""
    keys = ("low_ci_low", "low_ci_high", "high_ci_low", "high_ci_high", "restricted_share")
    if edges is None:
        return dict.fromkeys(keys)
    low, high, restricts = edges
    found = np.isfinite(low[:, j])
    if not found.any():
        return dict.fromkeys(keys)
    lo = np.quantile(low[found, j], [0.025, 0.975])
    hi = np.quantile(high[found, j], [0.025, 0.975])
    values = (*lo, *hi, restricts[found, j].mean())
    return {k: float(v) for k, v in zip(keys, values, strict=True)}


@contextmanager
def _global_numpy_seed(seed: int):
    """NumPy's global random state seeded from ``seed`` while the block runs, restored after:
    EMA Workbench's CART builds scikit-learn's tree without a ``random_state``, which then
    breaks ties between equally good splits with the global state: without this, the same
    worlds could give different CART boxes in two processes."""
    saved = np.random.get_state()  # noqa: NPY002 - the legacy global state is what scikit-learn reads
    np.random.seed(np.random.SeedSequence(seed, spawn_key=(0xCA27,)).generate_state(1)[0])  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(saved)  # noqa: NPY002


#: discovery.parquet's and discovery_trajectory.parquet's columns (:func:`discover`).
DISCOVERY_SCHEMA = {
    "policy": pl.String,
    "target": pl.String,
    "method": pl.String,
    "box": pl.Int64,
    "parameter": pl.String,
    "low": pl.Float64,
    "high": pl.Float64,
    "coverage": pl.Float64,
    "density": pl.Float64,
    "mass": pl.Float64,
    "qp": pl.Float64,
    "low_ci_low": pl.Float64,
    "low_ci_high": pl.Float64,
    "high_ci_low": pl.Float64,
    "high_ci_high": pl.Float64,
    "restricted_share": pl.Float64,
}
TRAJECTORY_SCHEMA = {
    "policy": pl.String,
    "target": pl.String,
    "step": pl.Int64,
    "coverage": pl.Float64,
    "density": pl.Float64,
    "mass": pl.Float64,
    "restricted": pl.Int64,
    "chosen": pl.Boolean,
}


def _trajectory_rows(tr, chosen: int, policy: str, target: str) -> list[dict]:
    """discovery_trajectory.parquet's rows of one PRIM peeling trajectory."""
    return [
        {
            "policy": policy,
            "target": target,
            "step": int(i),
            "coverage": float(r["coverage"]),
            "density": float(r["density"]),
            "mass": float(r["mass"]),
            "restricted": int(r["res_dim"]),
            "chosen": int(i) == chosen,
        }
        for i, r in tr.iterrows()
    ]


def _cart_rows(tree, full: dict[str, tuple[float, float]], policy: str, target: str) -> list[dict]:
    """discovery.parquet's rows of a built CART tree: each restriction of each leaf where the
    target is the majority, clipped to the parameter's range ``full``."""
    found: list[dict] = []
    # ema_workbench names every node's feature, leaves' too (scikit-learn's -2): over a single
    # parameter that index is out of range; a name appended for it is never read for a leaf
    tree.feature_names = [*tree.feature_names, "(leaf)"]
    # a tree that did not split has one leaf and no box (ema_workbench's boxes fail on it)
    leaves = zip(tree.boxes, tree.stats, strict=True) if tree.clf.tree_.node_count > 1 else []
    for b, (lims, stats) in enumerate(leaves):
        if stats["density"] <= 0.5 or stats["coverage"] == 0:
            continue  # a leaf where the target is the minority
        for param in full:
            low, high = float(lims[param].iloc[0]), float(lims[param].iloc[1])
            if (low, high) == full[param] or (low <= full[param][0] and high >= full[param][1]):
                continue
            found.append(
                {
                    "policy": policy,
                    "target": target,
                    "method": "cart",
                    "box": b,
                    "parameter": param,
                    "low": max(low, full[param][0]),
                    "high": min(high, full[param][1]),
                    "coverage": float(stats["coverage"]),
                    "density": float(stats["density"]),
                    "mass": float(stats["mass"]),
                    "qp": None,
                }
            )
    return found


def discover(
    points: pl.DataFrame,
    targets: dict[tuple[str, str], np.ndarray],
    density: float = DENSITY_TARGET,
    mass_min: float = 0.05,
    seed: int = 0,
    box_bootstrap: int = BOX_BOOTSTRAP,
    significance: float = 0.05,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """PRIM and CART boxes for each target (policy, kind) over the worlds' parameters.

    Returns (discovery, trajectory): discovery has one row per (policy, target, method, box,
    parameter) restricted by the box, with its low/high, the box's coverage, density and mass
    (and PRIM's quasi p-value of the restriction); trajectory holds PRIM's peeling trajectory.
    A PRIM row of a box the report names (a restriction with quasi-p below ``significance``)
    also says how stable the box is: PRIM run again on ``box_bootstrap`` resamples of the
    worlds (the same rule chooses the box) gives 95% percentile intervals of the
    restriction's low and high edge (``low_ci_*``, ``high_ci_*``; an edge at the parameter's
    end stays there when the resampled box does not restrict it) and the share of resampled
    boxes that restrict the parameter at all (``restricted_share``).
    """
    prim, cart = _ema()
    draws = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xB0C5,))).integers(
        0, points.height, size=(box_bootstrap, points.height)
    )
    mass_min = max(mass_min, 2 / max(points.height, 1))  # at least two worlds per box or leaf
    x = points.drop("world").to_pandas()
    x = x.astype({c: "float64" for c in x.columns})
    full = {c: (float(x[c].min()), float(x[c].max())) for c in x.columns}
    found, paths = [], []
    for (policy, target), y in targets.items():
        y = np.asarray(y, dtype=bool)
        if y.sum() == 0 or y.sum() == len(y):
            continue  # nothing to separate
        box, chosen = _prim_box(prim, x, y, density, mass_min)
        tr = box.peeling_trajectory.reset_index(drop=True)
        paths += _trajectory_rows(tr, chosen, policy, target)
        lims = box.box_lims[chosen]
        qp = box.qp[chosen] if chosen < len(box.qp) else {}
        r = tr.iloc[chosen]
        named = any(0 <= v < significance for values in qp.values() for v in values)
        edges = box_edges(x, y, density, mass_min, draws) if box_bootstrap and named else None
        for param in x.columns:
            low, high = float(lims[param].iloc[0]), float(lims[param].iloc[1])
            if (low, high) == full[param]:
                continue
            q = [v for v in qp.get(param, []) if v >= 0]
            found.append(
                {
                    "policy": policy,
                    "target": target,
                    "method": "prim",
                    "box": 0,
                    "parameter": param,
                    "low": low,
                    "high": high,
                    "coverage": float(r["coverage"]),
                    "density": float(r["density"]),
                    "mass": float(r["mass"]),
                    "qp": max(q) if q else None,
                    **_edge_cis(edges, list(x.columns).index(param)),
                }
            )
        with warnings.catch_warnings(), _global_numpy_seed(seed):
            warnings.simplefilter("ignore")
            tree = cart.CART(x, y, mass_min=mass_min)
            tree.build_tree()
        found += _cart_rows(tree, full, policy, target)
    return pl.DataFrame(found, schema=DISCOVERY_SCHEMA), pl.DataFrame(paths, schema=TRAJECTORY_SCHEMA)


# --------------------------------------------------------------------------- words


def _range_words(
    param: str, low: float, high: float, full: tuple[float, float], row: dict | None = None
) -> str:
    """``param`` in [low, high] in words; with a discovery ``row`` that has edge CIs, each edge
    named with its 95% interval over resampled worlds, e.g. "x < 0.42 [0.35, 0.5]"."""

    def edge(value: float, end: str) -> str:
        lo, hi = (row or {}).get(f"{end}_ci_low"), (row or {}).get(f"{end}_ci_high")
        return f"{value:.3g}" + (f" [{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else "")

    if low <= full[0]:
        return f"{param} < {edge(high, 'high')}"
    if high >= full[1]:
        return f"{param} > {edge(low, 'low')}"
    return f"{edge(low, 'low')} < {param} < {edge(high, 'high')}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def ranges_of(points: pl.DataFrame) -> dict[str, tuple[float, float]]:
    """Each parameter's range over the worlds (the ends a box that does not restrict it has)."""
    return {
        c: (float(np.min(points[c].to_numpy())), float(np.max(points[c].to_numpy())))
        for c in points.columns
        if c != "world"
    }


def where_words(
    discovery: pl.DataFrame,
    full: dict[str, tuple[float, float]],
    policy: str,
    target: str,
    significance: float = 0.05,
) -> str:
    """Where the worlds of ``target`` (``best``, ``fails``, ``not_best``) of ``policy`` lie, in
    words from its PRIM box: ", mostly where x < 0.41 [0.39, 0.43] (PRIM box: ...)", or that
    PRIM found no box, or no restriction distinguishable from chance."""
    box = discovery.filter(
        (pl.col("policy") == policy) & (pl.col("target") == target) & (pl.col("method") == "prim")
    )
    if box.height == 0:
        return "; PRIM found no box that separates these worlds from the others"
    sure = box.filter(pl.col("qp").is_not_null() & (pl.col("qp") < significance)).sort("qp")
    stats = box.row(0, named=True)
    tail = f" (PRIM box: coverage {stats['coverage']:.2f}, density {stats['density']:.2f})"
    if sure.height == 0:
        return (
            "; no restriction of its PRIM box is distinguishable from chance "
            f"(quasi-p >= {significance:g})" + tail
        )
    words = " and ".join(
        _range_words(r["parameter"], r["low"], r["high"], full[r["parameter"]], r)
        for r in sure.iter_rows(named=True)
    )
    shares = [
        f"{r['parameter']} in {_pct(r['restricted_share'])}"
        for r in sure.iter_rows(named=True)
        if r["restricted_share"] is not None
    ]
    stable = (
        "; [edge]: 95% interval over resampled sets of worlds, whose boxes restrict " + " and ".join(shares)
        if shares
        else ""
    )
    return f", mostly where {words}" + tail[:-1] + stable + ")"


def flip_sentences(
    table: pl.DataFrame,
    discovery: pl.DataFrame,
    points: pl.DataFrame,
    satisfice_words: str,
    significance: float = 0.05,
) -> list[str]:
    """ "Where the answer flips": one sentence per policy that is best somewhere, and one per
    policy that fails the satisficing threshold somewhere, from its PRIM box."""
    full = ranges_of(points)

    def where(policy: str, target: str) -> str:
        return where_words(discovery, full, policy, target, significance)

    lines = []
    metric = {r["policy"] + "/" + r["metric"]: r for r in table.iter_rows(named=True)}
    policies = table["policy"].unique(maintain_order=True).to_list()
    ranked = sorted(policies, key=lambda p: -metric[p + "/p_best"]["value"])
    for p in ranked:
        r = metric[p + "/p_best"]
        if r["value"] == 0:
            continue
        tail = where(p, "best") if r["value"] < 1 else ", in every world sampled"
        lines.append(
            f"- **{p}** is the best policy in {_pct(r['value'])} of worlds "
            f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]{tail}."
        )
    never = [p for p in ranked if metric[p + "/p_best"]["value"] == 0]
    if never:
        lines.append("- Never best: " + ", ".join(f"**{p}**" for p in never) + ".")
    for p in ranked:
        r = metric[p + "/satisficing"]
        if 0 < r["value"] < 1:
            lines.append(
                f"- **{p}** fails {satisfice_words} in {_pct(1 - r['value'])} of worlds "
                f"[{_pct(1 - r['ci_high'])}, {_pct(1 - r['ci_low'])}]{where(p, 'fails')}."
            )
        elif r["value"] == 0:
            lines.append(f"- **{p}** fails {satisfice_words} in every world sampled.")
    return lines


# --------------------------------------------------------------------------- figures


def robustness_figures(
    run_dir,
    table: pl.DataFrame,
    per_world: pl.DataFrame,
    trajectory: pl.DataFrame,
    discovery: pl.DataFrame,
    points: pl.DataFrame,
    importance: list[str],
) -> list:
    """rank_probability.png, regret.png, prim_tradeoff.png, prim_boxes.png, world_map.png
    (the last three where there is something to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    colors = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]  # a ListedColormap
    policies = table["policy"].unique(maintain_order=True).to_list()
    color = {p: colors[i % len(colors)] for i, p in enumerate(policies)}
    figures = {
        "rank_probability.png": _rank_probability(plt, table, policies, color),
        "regret.png": _regret(plt, per_world, policies),
        "prim_tradeoff.png": _prim_tradeoff(plt, trajectory, color),
        "prim_boxes.png": _prim_boxes(plt, discovery, points, color),
        "world_map.png": _world_map(plt, per_world, points, importance, policies, color),
    }
    out = []
    for name, made in figures.items():
        if made is None:
            continue
        fig, title = made
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=110)
        plt.close(fig)
        out.append(run_dir / name)
    return out


def _rank_probability(plt, table: pl.DataFrame, policies: list[str], color: dict) -> tuple:
    pb = table.filter(pl.col("metric") == "p_best")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    v = pb["value"].to_numpy()
    err = np.vstack([v - pb["ci_low"].to_numpy(), pb["ci_high"].to_numpy() - v])
    ax.bar(policies, v, yerr=np.clip(err, 0, None), capsize=4, color=[color[p] for p in policies])
    ax.set_ylabel("P(best) across worlds")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=30)
    return fig, "Probability of being the best policy (95% bootstrap CI)"


def _regret(plt, per_world: pl.DataFrame, policies: list[str]) -> tuple:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    data = [
        per_world.filter(pl.col("policy") == p)["regret"].drop_nans().drop_nulls().to_numpy()
        for p in policies
    ]
    ax.boxplot(data, tick_labels=policies, orientation="vertical")
    ax.set_ylabel("regret (best objective - policy's)")
    ax.tick_params(axis="x", rotation=30)
    return fig, "Regret across worlds"


def _prim_tradeoff(plt, trajectory: pl.DataFrame, color: dict) -> tuple | None:
    best = trajectory.filter(pl.col("target") == "best")
    if not best.height:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for p in best["policy"].unique(maintain_order=True).to_list():
        t = best.filter(pl.col("policy") == p)
        ax.plot(t["coverage"], t["density"], "-o", ms=3, color=color[p], label=p)
        c = t.filter(pl.col("chosen"))
        ax.plot(c["coverage"], c["density"], "*", ms=14, color=color[p], mec="k")
    ax.set_xlabel("coverage")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return fig, "PRIM peeling trajectories, target: policy is best (star: chosen box)"


def _prim_boxes(plt, discovery: pl.DataFrame, points: pl.DataFrame, color: dict) -> tuple | None:
    boxes = discovery.filter((pl.col("method") == "prim") & (pl.col("target") == "best"))
    if not boxes.height:
        return None
    params = [c for c in points.columns if c != "world"]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(params)))
    _draw_boxes(ax, boxes, points, params, color)
    return fig, "PRIM boxes where each policy is best (restricted parameters)"


def _world_map(
    plt,
    per_world: pl.DataFrame,
    points: pl.DataFrame,
    importance: list[str],
    policies: list[str],
    color: dict,
) -> tuple | None:
    if len(importance) < 2:
        return None
    first, second = importance[:2]
    w = per_world.filter(pl.col("best")).unique("world", keep="first", maintain_order=True)
    joined = points.join(w.select("world", "best_policy"), on="world", how="left")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for p in policies:
        s = joined.filter(pl.col("best_policy") == p)
        if s.height:
            ax.scatter(s[first], s[second], color=color[p], label=p, s=28, edgecolor="k", lw=0.3)
    ax.set_xlabel(first)
    ax.set_ylabel(second)
    ax.legend(fontsize=8)
    return fig, "Best policy per world over the two most important parameters"


def _draw_boxes(ax, boxes: pl.DataFrame, points: pl.DataFrame, params: list[str], color: dict) -> None:
    """Each policy's PRIM box as one bar per restricted parameter, on the share of the
    parameter's range the worlds span (one row per parameter, the policies side by side)."""
    owners = boxes["policy"].unique(maintain_order=True).to_list()
    for k, p in enumerate(owners):
        b = boxes.filter(pl.col("policy") == p)
        for n, r in enumerate(b.iter_rows(named=True)):
            j = params.index(r["parameter"])
            lo, hi = float(points[r["parameter"]].min()), float(points[r["parameter"]].max())
            span = hi - lo or 1.0
            y = j + (k - (len(owners) - 1) / 2) * 0.8 / max(len(owners), 1)
            ax.plot(
                [(r["low"] - lo) / span, (r["high"] - lo) / span],
                [y, y],
                lw=5,
                color=color[p],
                label=p if n == 0 else None,
            )
    ax.set_yticks(range(len(params)), params)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of each parameter's range")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="best")


def importance_order(points: pl.DataFrame, best: Sequence[str], seed: int) -> list[str]:
    """Parameters ordered by how well they predict the best policy (extra-trees feature scores,
    EMA Workbench's get_ex_feature_scores; Geurts et al. 2006)."""
    _ema()
    from ema_workbench.analysis import feature_scoring
    from ema_workbench.analysis.scenario_discovery_util import RuleInductionType

    x = points.drop("world").to_pandas().astype("float64")
    y = np.asarray(best, dtype=object)
    if len(set(y.tolist())) < 2:
        return list(x.columns)
    codes = np.unique(y, return_inverse=True)[1]
    # EMA Workbench's rule, a third of the parameters per split, is 0 below two parameters,
    # which scikit-learn refuses: at least one.
    scores, _ = feature_scoring.get_ex_feature_scores(
        x,
        codes,
        mode=RuleInductionType.CLASSIFICATION,
        max_features=max(1, round(x.shape[1] / 3)),
        random_state=seed % 2**32,
    )
    return [str(i) for i in scores.sort_values(by=scores.columns[0], ascending=False).index]
