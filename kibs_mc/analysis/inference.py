"""Contrasts between scenarios, multiplicity, relevance and ranks, on common random numbers.

What a decision rests on is a comparison, so every pair of scenarios is compared on every
outcome that is reported, from the per-replicate differences d_r = y_r(a) - y_r(b) (replicate
r of every scenario starts from the same seed, MODEL.md s.4):

- ``difference``: mean of d with a percentile bootstrap CI (2 000 resamples of replicates);
- ``p_value``: a two-sided paired t test of H0: |E d| <= ``margin`` (a minimum-effect test,
  Murphy & Myors 1999; with margin 0 the ordinary paired t test), so that a difference is
  "clear" only if it is both beyond chance and larger than the smallest effect that matters
  (``experiment.min_effect``, a share of the baseline's mean when relative);
- ``p_holm``: Holm's (1979) step-down adjustment across the whole family of reported contrasts
  (every pair x every outcome), which keeps the probability of any false "clear" at or below
  alpha under any dependence between the tests; ``p_bh``: Benjamini & Hochberg (1995), the
  false discovery rate, for readers who prefer it (``experiment.adjust=bh`` decides with it);
- ranks: the rank of each scenario's mean (1 = best in the outcome's direction) with a
  marginal confidence set by the method of Mogstad, Romano, Shaikh & Wilhelm (2024, Rev. Econ.
  Stud. 91(1):476-518, s.3): simultaneous bootstrap CIs for the k-1 differences of one scenario
  with each other one; the rank lies between 1 + (number surely better) and k - (number surely
  worse). Unlike a percentile interval of bootstrap ranks, it keeps its coverage when means tie
  (Hall & Miller 2009, J. Comput. Graph. Stat. 18:280-295).

Every resampled cell has its own generator, derived from the root seed and the cell's names
(:func:`cell_rng`): adding an outcome or a scenario, or reordering columns, leaves every other
cell's CI unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

import numpy as np
import polars as pl
from scipy.special import stdtr

#: Bootstrap resamples per CI.
BOOTSTRAP_SAMPLES = 2000
#: Spawn-key tag of the analysis's generators (distinct from the replicates' keys).
ANALYSIS_KEY = 0xB007


def cell_rng(seed: int, *names: str) -> np.random.Generator:
    """The generator of one analysis cell, from the root seed and the cell's names only.

    Each name enters the spawn key as a stable 32-bit BLAKE2b digest (Python's ``hash`` of a
    string changes from process to process)."""
    key = tuple(int.from_bytes(hashlib.blake2b(n.encode(), digest_size=4).digest(), "little") for n in names)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(ANALYSIS_KEY, *key)))


def bootstrap_mean_ci(
    values: np.ndarray, rng: np.random.Generator, confidence: float = 0.95, samples: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``."""
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    means = values[rng.integers(0, n, size=(samples, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def min_effect_p(d: np.ndarray, margin: float = 0.0) -> float:
    """Two-sided p-value of H0: |E d| <= ``margin`` from the paired differences ``d``.

    Rejecting says the mean difference lies beyond the margin on the side of the estimate:
    p = 2 P(T_{n-1} > (|mean d| - margin) / se), capped at 1. With margin 0 it is the paired
    t test. The size is at most alpha at both ends of the null interval."""
    n = len(d)
    if n < 2:
        return float("nan")
    se = float(d.std(ddof=1)) / np.sqrt(n)
    excess = abs(float(d.mean())) - margin
    if se == 0:
        return 0.0 if excess > 0 else 1.0
    return float(min(1.0, 2 * stdtr(n - 1, -excess / se)))


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


def rank_sets(
    y: np.ndarray,
    rng: np.random.Generator,
    alpha: float = 0.05,
    larger_better: bool = True,
    samples: int = BOOTSTRAP_SAMPLES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank of each column's mean (1 = best) and its marginal (1 - alpha) confidence set.

    ``y`` is replicates x scenarios, row r from seed r in every column; rows are resampled
    jointly, which keeps the pairing. For scenario i the critical value c_i is the (1 - alpha)
    bootstrap quantile of max_j |d*_ij - d_ij| / se_ij over the other scenarios j; j is surely
    better when d_ij + c_i se_ij < 0 and surely worse when d_ij - c_i se_ij > 0."""
    y = np.asarray(y, dtype=float)
    if not larger_better:
        y = -y
    n, k = y.shape
    means = y.mean(axis=0) if n else np.full(k, np.nan)
    rank = 1 + (means[None, :] > means[:, None]).sum(axis=1)
    low, high = np.ones(k, dtype=np.int64), np.full(k, k, dtype=np.int64)
    if n < 2 or k < 2:
        return rank, low, high
    boot = y[rng.integers(0, n, size=(samples, n))].mean(axis=1)  # samples x k
    for i in range(k):
        others = [j for j in range(k) if j != i]
        d = y[:, [i]] - y[:, others]
        dhat = d.mean(axis=0)
        se = d.std(axis=0, ddof=1) / np.sqrt(n)
        spread = np.abs((boot[:, [i]] - boot[:, others]) - dhat)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(se > 0, spread / np.where(se > 0, se, 1.0), 0.0)
        c = float(np.quantile(t.max(axis=1), 1 - alpha))
        low[i] = 1 + int(((dhat + c * se < 0) & (se > 0)).sum())
        high[i] = k - int(((dhat - c * se > 0) & (se > 0)).sum())
    return rank, low, high


def paired_matrix(rows: pl.DataFrame, outcome: str, scenarios: Sequence[str]) -> np.ndarray:
    """Replicates x scenarios of ``outcome`` on the replicates every scenario has (a replicate
    that failed in one scenario leaves the comparison)."""
    if not scenarios:
        return np.empty((0, 0))
    wide = (
        rows.filter(pl.col("scenario").is_in(list(scenarios)))
        .select("scenario", "replicate", pl.col(outcome).cast(pl.Float64))
        .pivot(on="scenario", index="replicate", values=outcome)
        .drop_nulls()
        .sort("replicate")
    )
    if any(s not in wide.columns for s in scenarios):
        return np.empty((0, len(scenarios)))
    return wide.select(list(scenarios)).to_numpy()


def margin(min_effect: float, relative: bool, reference: float) -> float:
    """The smallest difference that matters on an outcome: ``min_effect`` itself, or that share
    of |reference| (the baseline's mean) when ``relative``."""
    return min_effect * abs(reference) if relative else min_effect


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


def contrasts(
    rows: pl.DataFrame,
    outcomes: Sequence[str],
    scenarios: Sequence[str],
    baseline: str,
    seed: int,
    min_effect: float = 0.0,
    relative: bool = True,
    alpha: float = 0.05,
    adjust: str = "holm",
) -> pl.DataFrame:
    """Every pair (a, b) of ``scenarios`` (a listed first) on every outcome, as one family.

    ``clear``: the adjusted p-value (Holm, or BH with ``adjust="bh"``) is below ``alpha``,
    i.e. the difference is beyond ``margin`` (the outcome's smallest relevant difference)."""
    records: list[dict] = []
    for outcome in outcomes:
        y = paired_matrix(rows, outcome, scenarios)
        if y.shape[0] == 0:
            continue
        ref = float(y[:, list(scenarios).index(baseline)].mean()) if baseline in scenarios else 0.0
        m = margin(min_effect, relative, ref if ref else float(y.mean()))
        for a in range(len(scenarios)):
            for b in range(a + 1, len(scenarios)):
                d = y[:, a] - y[:, b]
                low, high = bootstrap_mean_ci(
                    d, cell_rng(seed, "contrast", outcome, scenarios[a], scenarios[b]), 1 - alpha
                )
                records.append(
                    {
                        "outcome": outcome,
                        "scenario": scenarios[a],
                        "versus": scenarios[b],
                        "n": len(d),
                        "scenario_mean": float(y[:, a].mean()),
                        "versus_mean": float(y[:, b].mean()),
                        "difference": float(d.mean()),
                        "ci_low": low,
                        "ci_high": high,
                        "margin": m,
                        "p_value": min_effect_p(d, m),
                    }
                )
    p = np.array([r["p_value"] for r in records])
    by_holm, by_bh = holm(p), benjamini_hochberg(p)
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
    seed: int,
    lower_is_better: Collection[str] = (),
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Rank of each scenario on each outcome (1 = best) with its (1 - alpha) confidence set."""
    records = []
    for outcome in outcomes:
        y = paired_matrix(rows, outcome, scenarios)
        if y.shape[0] == 0:
            continue
        larger = outcome not in lower_is_better
        rank, low, high = rank_sets(y, cell_rng(seed, "rank", outcome), alpha, larger)
        for i, s in enumerate(scenarios):
            records.append(
                {
                    "outcome": outcome,
                    "scenario": s,
                    "n": y.shape[0],
                    "mean": float(y[:, i].mean()),
                    "better": "higher" if larger else "lower",
                    "rank": int(rank[i]),
                    "rank_low": int(low[i]),
                    "rank_high": int(high[i]),
                }
            )
    return pl.DataFrame(records, schema=RANK_SCHEMA)
