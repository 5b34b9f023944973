"""Contrasts between scenarios, multiplicity, relevance and ranks, on common random numbers.

What a decision rests on is a comparison, so every pair of scenarios is compared on every
outcome that is reported, from the per-replicate differences d_r = y_r(a) - y_r(b) over every
replicate r both scenarios have (replicate r of every scenario starts from the same seed,
docs/ODD.md §4; a scenario a selection stopped early is compared on the replicates it has):

- ``difference``: mean of d with its t interval, mean +- t_{n-1} s / sqrt(n) (:func:`t_interval`);
- ``p_value``: the minimum-effect test of H0: |E d| <= ``margin`` (Murphy & Myors 1999; with
  margin 0 the ordinary paired t test, :func:`min_effect_p`) on the same t statistic, so that a
  difference is "clear" only if it is both beyond chance and larger than the smallest effect
  that matters (``experiment.min_effect``, a share of the baseline's mean when relative);
- ``p_holm``: Holm's (1979) step-down adjustment across the outcome's contrasts (every pair of
  scenarios on that outcome: one family per outcome, so the decided outcome's family is its own
  contrasts), which keeps the probability of any false "clear" in the family at or below alpha
  under any dependence between the tests; ``p_bh``: Benjamini & Hochberg (1995), the false
  discovery rate, for readers who prefer it (``experiment.adjust=bh`` decides with it);
- ranks: the rank of each scenario's mean (1 = best in the outcome's direction) with a
  marginal confidence set by the method of Mogstad, Romano, Shaikh & Wilhelm (2024, Rev. Econ.
  Stud. 91(1):476-518, s.3): the rank lies between 1 + (number surely better) and k - (number
  surely worse), where "surely" is decided by tests of the 2 (k - 1) one-sided hypotheses of a
  scenario against each other one whose family-wise error is at most alpha (Holm's step-down
  over paired t tests: exact for normal differences at every n >= 2). Unlike a percentile
  interval of bootstrap ranks, it keeps its coverage when means tie (Hall & Miller 2009, J.
  Comput. Graph. Stat. 18:280-295); unlike the bootstrap of the max-|t| statistic, also at a
  handful of replicates (a bootstrap of 4 replicates sees too little spread and no t tails).

Every interval and test is a function of the cell's own replicates: adding an outcome or a
scenario, or reordering columns, leaves every other cell unchanged.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

import numpy as np
import polars as pl
from scipy.special import stdtr, stdtrit


def t_interval(d: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The t interval of the mean of ``d``: mean +- t_{n-1, (1 + confidence) / 2} s / sqrt(n)
    (NaN below two values). Exact for normal values at every n; its coverage on skewed values
    is in docs/inference.md."""
    n = len(d)
    if n < 2:
        return float("nan"), float("nan")
    mean = float(d.mean())
    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * float(d.std(ddof=1)) / np.sqrt(n)
    return mean - half, mean + half


def min_effect_p(d: np.ndarray, margin: float = 0.0) -> float:
    """p-value of H0: |E d| <= ``margin`` from the paired differences ``d``.

    With a = |mean d| and se its standard error, p = P(|m + se T| >= a) at the edge of the null
    (m = margin, T ~ t_{n-1}): F(-(a - m) / se) + F(-(a + m) / se), F the t_{n-1} distribution
    function. Rejecting says the mean difference lies beyond the margin on the side of the
    estimate. With margin 0 it is the two-sided paired t test; with a margin of many standard
    errors it is the one-sided test at the near edge; either way its size is alpha at the
    edges of the null (measured: docs/inference.md)."""
    n = len(d)
    if n < 2:
        return float("nan")
    se = float(d.std(ddof=1)) / np.sqrt(n)
    a = abs(float(d.mean()))
    if se == 0:
        return 0.0 if a > margin else 1.0
    return float(min(1.0, stdtr(n - 1, -(a - margin) / se) + stdtr(n - 1, -(a + margin) / se)))


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error); NaN entries stay NaN and do not
    count in the family."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    m = len(q)
    if m:
        order = np.argsort(q, kind="stable")
        adjusted = np.minimum(np.maximum.accumulate((m - np.arange(m)) * q[order]), 1.0)
        res = np.empty(m)
        res[order] = adjusted
        out[ok] = res
    return out


def benjamini_hochberg(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate; SciPy's
    ``false_discovery_control``); NaN entries stay NaN."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def _step_down(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down decisions at family-wise level ``alpha``, one family per row of ``p``
    (True = rejected)."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    passed = np.take_along_axis(p, order, axis=-1) < alpha / (m - np.arange(m))
    out = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(out, order, np.logical_and.accumulate(passed, axis=-1), axis=-1)
    return out


def pairwise_t(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """t statistics of the paired differences y[:, i] - y[:, j] (k x k) over the replicates
    both columns have, and their degrees of freedom (shared replicates - 1; 0 where a pair has
    fewer than two, or no spread, and then t = 0)."""
    d = y[:, :, None] - y[:, None, :]
    ok = np.isfinite(d)
    count = ok.sum(axis=0)
    d = np.where(ok, d, 0.0)
    mean = d.sum(axis=0) / np.maximum(count, 1)
    ss = (np.where(ok, d - mean, 0.0) ** 2).sum(axis=0)
    se = np.sqrt(ss / np.maximum(count - 1, 1) / np.maximum(count, 1))
    usable = (count >= 2) & (se > 0)
    t = np.where(usable, mean / np.where(usable, se, 1.0), 0.0)
    return t, np.where(usable, count - 1, 0)


def rank_sets(
    y: np.ndarray, alpha: float = 0.05, larger_better: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank of each column's mean (1 = best) and its marginal (1 - alpha) confidence set.

    ``y`` is replicates x scenarios, row r from seed r in every column, NaN where a scenario
    lacks a replicate. For scenario i, each other scenario j gives two one-sided paired t tests
    on the replicates both have (j better than i; j worse than i); Holm's step-down over these
    2 (k - 1) tests at level alpha decides which j are surely better (counted in the low end)
    and surely worse (counted out of the high end). A pair with fewer than two shared
    replicates, or no spread in its differences, decides nothing."""
    y = np.asarray(y, dtype=float)
    if not larger_better:
        y = -y
    n, k = y.shape
    finite = np.isfinite(y)
    means = np.where(finite, y, 0.0).sum(axis=0) / np.where(finite.any(axis=0), finite.sum(axis=0), np.nan)
    rank = 1 + (means[None, :] > means[:, None]).sum(axis=1)
    low, high = np.ones(k, dtype=np.int64), np.full(k, k, dtype=np.int64)
    if k < 2 or n < 2:
        return rank, low, high
    t, df = pairwise_t(y)  # t[i, j]: i minus j
    others = ~np.eye(k, dtype=bool)
    t, df = t[others].reshape(k, k - 1), df[others].reshape(k, k - 1)
    usable = df > 0
    safe = np.where(usable, df, 1)
    worse = np.where(usable, stdtr(safe, t), 1.0)  # one-sided p of "i is worse than j"
    better = np.where(usable, stdtr(safe, -t), 1.0)  # one-sided p of "i is better than j"
    sure = _step_down(np.concatenate([worse, better], axis=1), alpha)
    low += sure[:, : k - 1].sum(axis=1)
    high -= sure[:, k - 1 :].sum(axis=1)
    return rank, low, high


def replicate_matrix(rows: pl.DataFrame, outcome: str, scenarios: Sequence[str]) -> np.ndarray:
    """Replicates x scenarios of ``outcome``, row r = replicate r's seed in every column, NaN
    where a scenario lacks that replicate (a failed one, or one a selection never ran)."""
    if not scenarios:
        return np.empty((0, 0))
    wide = (
        rows.filter(pl.col("scenario").is_in(list(scenarios)))
        .select("scenario", "replicate", pl.col(outcome).cast(pl.Float64))
        .pivot(on="scenario", index="replicate", values=outcome)
        .sort("replicate")
    )
    if any(s not in wide.columns for s in scenarios):
        return np.empty((0, len(scenarios)))
    return wide.select(list(scenarios)).fill_null(float("nan")).to_numpy()


def paired_matrix(rows: pl.DataFrame, outcome: str, scenarios: Sequence[str]) -> np.ndarray:
    """Replicates x scenarios of ``outcome`` on the replicates every scenario has (a replicate
    that is missing in one scenario leaves the whole matrix)."""
    y = replicate_matrix(rows, outcome, scenarios)
    return y[np.isfinite(y).all(axis=1)] if y.size else y


def margin(min_effect: float, relative: bool, reference: float) -> float:
    """The smallest difference that matters on an outcome: ``min_effect`` itself, or that share
    of |reference| (the baseline's mean) when ``relative``."""
    return min_effect * abs(reference) if relative else min_effect


def adjust_by_family(p: np.ndarray, family: Sequence[str], adjust: str = "holm") -> np.ndarray:
    """Adjusted p-values, each family (e.g. each outcome) adjusted on its own: Holm, or
    Benjamini-Hochberg with ``adjust="bh"``."""
    p = np.asarray(p, dtype=float)
    names = np.asarray(family, dtype=object)
    out = np.full(p.shape, np.nan)
    for name in dict.fromkeys(family):
        part = names == name
        out[part] = benjamini_hochberg(p[part]) if adjust == "bh" else holm(p[part])
    return out


CONTRAST_SCHEMA = {
    "outcome": pl.String,
    "scenario": pl.String,
    "versus": pl.String,
    "n": pl.Int64,
    "scenario_mean": pl.Float64,
    "versus_mean": pl.Float64,
    "difference": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "margin": pl.Float64,
    "p_value": pl.Float64,
    "p_holm": pl.Float64,
    "p_bh": pl.Float64,
    "clear": pl.Boolean,
}


class ErrorRate(NamedTuple):
    """The error rate a family of contrasts is decided at: ``alpha`` family-wise (``adjust``
    ``"holm"``) or as the false discovery rate (``"bh"``)."""

    alpha: float = 0.05
    adjust: str = "holm"


#: 5% family-wise, Holm's step-down.
HOLM_5 = ErrorRate()


def contrasts(
    rows: pl.DataFrame,
    outcomes: Sequence[str],
    scenarios: Sequence[str],
    baseline: str,
    min_effect: float = 0.0,
    relative: bool = True,
    error: ErrorRate = HOLM_5,
) -> pl.DataFrame:
    """Every pair (a, b) of ``scenarios`` (a listed first) on every outcome, each on the
    replicates both have; each outcome's contrasts are one family.

    ``n``, the means and the difference are those of the pair's shared replicates; ``ci_low``
    and ``ci_high`` its (1 - alpha) t interval. ``clear``: the adjusted p-value (Holm, or BH
    with ``error.adjust="bh"``, within the outcome) is below ``error.alpha``, i.e. the
    difference is beyond ``margin`` (the outcome's smallest relevant difference)."""
    alpha, adjust = error
    records: list[dict] = []
    for outcome in outcomes:
        y = replicate_matrix(rows, outcome, scenarios)
        if y.shape[0] == 0:
            continue
        reference = float("nan")
        if baseline in scenarios:
            own = y[:, list(scenarios).index(baseline)]
            reference = float(np.mean(own[np.isfinite(own)])) if np.isfinite(own).any() else reference
        if not (np.isfinite(reference) and reference):
            reference = float(np.nanmean(y)) if np.isfinite(y).any() else 0.0
        m = margin(min_effect, relative, reference)
        for a in range(len(scenarios)):
            for b in range(a + 1, len(scenarios)):
                both = np.isfinite(y[:, a]) & np.isfinite(y[:, b])
                ya, yb = y[both, a], y[both, b]
                d = ya - yb
                low, high = t_interval(d, 1 - alpha)
                records.append(
                    {
                        "outcome": outcome,
                        "scenario": scenarios[a],
                        "versus": scenarios[b],
                        "n": len(d),
                        "scenario_mean": float(ya.mean()) if len(d) else float("nan"),
                        "versus_mean": float(yb.mean()) if len(d) else float("nan"),
                        "difference": float(d.mean()) if len(d) else float("nan"),
                        "ci_low": low,
                        "ci_high": high,
                        "margin": m,
                        "p_value": min_effect_p(d, m),
                    }
                )
    p = np.array([r["p_value"] for r in records])
    family = [r["outcome"] for r in records]
    by_holm, by_bh = adjust_by_family(p, family, "holm"), adjust_by_family(p, family, "bh")
    decide = by_bh if adjust == "bh" else by_holm
    for r, h, b, q in zip(records, by_holm, by_bh, decide, strict=True):
        r.update(p_holm=float(h), p_bh=float(b), clear=bool(q < alpha))
    return pl.DataFrame(records, schema=CONTRAST_SCHEMA)


RANK_SCHEMA = {
    "outcome": pl.String,
    "scenario": pl.String,
    "n": pl.Int64,
    "mean": pl.Float64,
    "better": pl.String,
    "rank": pl.Int64,
    "rank_low": pl.Int64,
    "rank_high": pl.Int64,
}


def ranks(
    rows: pl.DataFrame,
    outcomes: Sequence[str],
    scenarios: Sequence[str],
    lower_is_better: Collection[str] = (),
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Rank of each scenario on each outcome (1 = best) with its (1 - alpha) confidence set;
    ``n`` and ``mean`` are each scenario's own (all its replicates)."""
    records = []
    for outcome in outcomes:
        y = replicate_matrix(rows, outcome, scenarios)
        if y.shape[0] == 0:
            continue
        larger = outcome not in lower_is_better
        rank, low, high = rank_sets(y, alpha, larger)
        for i, s in enumerate(scenarios):
            own = y[:, i][np.isfinite(y[:, i])]
            records.append(
                {
                    "outcome": outcome,
                    "scenario": s,
                    "n": len(own),
                    "mean": float(own.mean()) if len(own) else float("nan"),
                    "better": "higher" if larger else "lower",
                    "rank": int(rank[i]),
                    "rank_low": int(low[i]),
                    "rank_high": int(high[i]),
                }
            )
    return pl.DataFrame(records, schema=RANK_SCHEMA)
