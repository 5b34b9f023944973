"""What to measure next: the expected value of partial perfect information (EVPPI) of each
uncertain parameter on a decision between policies, from the worlds already simulated.

A robustness run (``experiment=robustness``) gives each policy p an objective J[w, p] in each
world w (``robustness.world_objective``); the policy chosen now is the one with the highest
mean objective, p* (the lowest expected regret). Knowing parameter theta exactly would let one
choose the best policy for its value; the EVPPI of theta is what that is worth on average,

    EVPPI(theta) = E_theta[ max_p g_p(theta) ] - max_p E[ g_p(theta) ],  g_p(theta) = E[J_p | theta],

in the objective's units: the expected regret that measuring theta would remove (regret is
the best policy's objective minus the chosen one's, so the expected regret of p* now is the
value of perfect information on everything, EVPI; 0 <= EVPPI <= EVPI).

Estimated by the regression method of Strong, Oakley & Brennan (2014, Med. Decis. Making
34:311-326) on the worlds' values, with no new simulations: each policy's incremental
objective J_p - J_p* is regressed on theta alone (a penalised cubic regression spline, the
smoothing chosen by generalised cross-validation, as a GAM of ``mgcv`` does), and the fitted
values g_p(theta_w) replace the inner expectation. The regression integrates the other
parameters over their joint distribution in the sample, so correlated (posterior) draws are
fine, and the noise of a world's replicates is part of the residual.

The interval comes from draws of the regression's coefficients from their posterior given the
fit (Gaussian, with the residual covariance across policies) together with Bayesian-bootstrap
weights of the worlds (Rubin 1981) for the outer mean. The plug-in estimate is biased upward
(the maximum of noisy curves exceeds the curve of the maximum); the draws measure that bias
(their mean minus the plug-in), and the estimate and the draws' 2.5% and 97.5% quantiles are
shifted down by it (each kept at >= 0 and at most the EVPI). Near EVPPI = 0 that shift is too
small (the draws of a worthless parameter are skewed away from 0), so the interval's lower end
is 0 unless a permutation test rejects "worth nothing" at 2.5%: the plug-in against its value
with the parameter shuffled across the worlds (``PERMUTATIONS`` shuffles; ``p_value``). Measured
coverage: docs/robustness.md, "What to measure next".

The smoother is written out here (a few lines of linear algebra on SciPy's B-spline basis)
rather than taken from a GAM package: the interval needs a thousand refits' worth of fitted
curves per parameter, which the Demmler-Reinsch form below gives in one decomposition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

#: Draws of the coefficients (and of the worlds' weights) behind each interval.
DRAWS = 1000
#: Fewest worlds (with a result for every policy) the regression is run on; fewer give no rows.
MIN_WORLDS = 8
#: Shuffles of a parameter across the worlds for the test of "worth nothing" (EVPPI = 0).
PERMUTATIONS = 200
#: Most basis functions of a parameter's spline (mgcv's default for a smooth is 10); fewer
#: with few worlds (at most a quarter of them) or few distinct values.
BASIS = 12
#: Smoothing parameters tried by GCV (times the largest penalty eigenvalue's inverse).
LAMBDAS = np.logspace(-4, 8, 49)


@dataclass(frozen=True)
class Smoother:
    """A penalised cubic regression spline of one parameter in Demmler-Reinsch form: fitted
    values for smoothing lambda are Q diag(1 / (1 + lambda s)) Q' y (Q orthonormal columns,
    ``s`` the penalty's eigenvalues; s = 0 for the constant and the linear trend, which the
    penalty leaves alone)."""

    q: np.ndarray  # (n, k)
    s: np.ndarray  # (k,)

    @staticmethod
    def of(x: np.ndarray, most: int = BASIS) -> Smoother:
        """The smoother of values ``x`` (n,), on their rank scale: knots at equal shares of
        the worlds, so a log-scale or a skewed posterior parameter is treated alike; tied
        values (integers, repeated posterior particles) share their rank."""
        from scipy.interpolate import BSpline
        from scipy.stats import rankdata

        n = len(x)
        u = (rankdata(x) - 0.5) / n
        distinct = np.unique(u)
        inner = min(most, n // 4, len(distinct)) - 4  # interior knots of a cubic B-spline basis
        if len(distinct) < 3 or inner < 1:  # too few worlds or values for a curve: a straight line
            basis = np.column_stack([np.ones(n), u - u.mean()])
            penalty = np.zeros((2, 2))
        else:
            interior = np.quantile(distinct, np.linspace(0, 1, inner + 2)[1:-1])
            lo, hi = float(u.min()), float(u.max())
            t = np.r_[[lo] * 4, interior, [hi] * 4]
            basis = BSpline.design_matrix(np.clip(u, lo, hi), t, 3).toarray()
            diff = np.diff(np.eye(basis.shape[1]), n=2, axis=0)  # P-spline penalty (Eilers & Marx 1996)
            penalty = diff.T @ diff
        gram = basis.T @ basis
        gram += 1e-10 * np.trace(gram) / len(gram) * np.eye(len(gram))
        r = np.linalg.cholesky(gram).T  # gram = r' r
        r_inv = np.linalg.inv(r)
        s, u_vec = np.linalg.eigh(r_inv.T @ penalty @ r_inv)
        s = np.clip(s, 0.0, None)
        q = basis @ r_inv @ u_vec
        return Smoother(q, s / (s.max() if s.max() > 0 else 1.0))

    def fit(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For responses ``y`` (n, m): the shrinkage d (k, m) of each column's GCV-chosen
        smoothing, the coefficients z = Q'y (k, m) and the residuals (n, m)."""
        n = len(y)
        z = self.q.T @ y
        outside = np.sum((y - self.q @ z) ** 2, axis=0)  # what no smoothing can fit
        d = 1.0 / (1.0 + LAMBDAS[:, None] * self.s[None, :])  # (L, k)
        rss = outside[None, :] + ((1.0 - d) ** 2) @ (z**2)  # (L, m)
        edf = d.sum(axis=1)[:, None]
        gcv = n * rss / (n - edf) ** 2  # edf <= basis size <= n / 4
        chosen = d[np.argmin(gcv, axis=0)].T  # (k, m)
        residuals = y - self.q @ (chosen * z)
        return chosen, z, residuals


def _value(fitted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """EVPPI of incremental fitted values (..., n, m) against the reference policy (whose
    increment is 0), the worlds weighted (..., n): weighted mean of the best increment minus
    the best weighted mean increment."""
    best = np.maximum(fitted.max(axis=-1), 0.0)
    mean = np.einsum("...n,...nm->...m", weights, fitted)
    return np.einsum("...n,...n->...", weights, best) - np.maximum(mean.max(axis=-1), 0.0)


def evppi(
    x: np.ndarray,
    increments: np.ndarray,
    rng: np.random.Generator,
    draws: int = DRAWS,
    confidence: float = 0.95,
) -> dict[str, float]:
    """EVPPI of one parameter (values ``x``, n) on the incremental objectives (n, m) of the
    other policies against the chosen one: the plug-in estimate, the bias-corrected estimate,
    its standard error and the basic interval (module doc)."""
    n, m = increments.shape
    smoother = Smoother.of(np.asarray(x, dtype=float))
    d, z, residuals = smoother.fit(increments)
    fitted = smoother.q @ (d * z)
    plug_in = float(_value(fitted, np.full(n, 1.0 / n)))
    dof = max(n - float(d.sum(axis=0).mean()), 1.0)
    cov = residuals.T @ residuals / dof + 1e-12 * np.eye(m)
    chol = np.linalg.cholesky(cov)
    k = smoother.q.shape[1]
    noise = rng.standard_normal((draws, k, m)) @ chol.T  # rows: Gaussian with the residuals' covariance
    coefs = d * z + np.sqrt(d) * noise  # the ridge posterior in the orthonormal basis
    curves = np.einsum("nk,bkm->bnm", smoother.q, coefs)
    weights = rng.dirichlet(np.ones(n), size=draws)  # Bayesian bootstrap of the worlds
    values = _value(curves, weights)
    alpha = 1 - confidence
    low_q, high_q = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    bias = float(values.mean()) - plug_in
    null = np.empty(PERMUTATIONS)
    for b in range(PERMUTATIONS):  # the parameter shuffled across the worlds: worth nothing
        shuffled = increments[rng.permutation(n)]
        d_b, z_b, _ = smoother.fit(shuffled)
        null[b] = _value(smoother.q @ (d_b * z_b), np.full(n, 1.0 / n))
    p_value = float((1 + np.sum(null >= plug_in)) / (1 + PERMUTATIONS))
    return {
        "evppi": max(plug_in - bias, 0.0),
        "ci_low": max(float(low_q) - bias, 0.0) if p_value < alpha / 2 else 0.0,
        "ci_high": max(float(high_q) - bias, 0.0),
        "plug_in": plug_in,
        "se": float(values.std(ddof=1)),
        "upward_bias": bias,
        "p_value": p_value,
    }


def voi_table(
    points: pl.DataFrame,
    objective: np.ndarray,
    policies: Sequence[str],
    maximize: bool,
    seed: int,
    draws: int = DRAWS,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """voi.parquet: one row per parameter of ``points`` (column ``world`` and one column per
    parameter, rows in the order of ``objective``'s worlds), most valuable first: its EVPPI on
    the choice among ``policies`` (``objective``: J[w, p], NaN where a world has no result),
    the interval, the policy chosen now and the expected regret of that choice (EVPI).
    Parameters that do not vary across the worlds have EVPPI 0; with fewer than MIN_WORLDS worlds
    the table is empty."""
    j = np.asarray(objective, dtype=float)
    keep = np.isfinite(j).all(axis=1)
    names = [c for c in points.columns if c != "world"]
    if keep.sum() < MIN_WORLDS:  # too few worlds to regress on: nothing to say
        names = []
        keep[:] = False
    score = (j if maximize else -j)[keep]
    chosen = int(np.argmax(score.mean(axis=0))) if names else 0
    others = [p for p in range(score.shape[1]) if p != chosen]
    increments = score[:, others] - score[:, [chosen]]
    evpi = float(np.mean(score.max(axis=1)) - score[:, chosen].mean()) if names else 0.0
    records = []
    for i, name in enumerate(names):
        x = points[name].cast(pl.Float64).to_numpy()[keep]
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x0E77, i)))
        if len(np.unique(x)) < 2 or not others:
            row = dict.fromkeys(("evppi", "ci_low", "ci_high", "plug_in", "se", "upward_bias"), 0.0)
            row["p_value"] = 1.0
        else:
            row = evppi(x, increments, rng, draws, confidence)
            # no parameter is worth more than all of them (EVPI, the sample's own bound)
            row.update({k: min(row[k], evpi) for k in ("evppi", "ci_low", "ci_high")})
        records.append({"parameter": name, **row})
    schema = {
        "parameter": pl.String,
        "evppi": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "plug_in": pl.Float64,
        "se": pl.Float64,
        "upward_bias": pl.Float64,
        "p_value": pl.Float64,
    }
    table = pl.DataFrame(records, schema=schema).with_columns(
        pl.lit(policies[chosen]).alias("chosen"),
        pl.lit(evpi).alias("evpi"),
        pl.lit(int(keep.sum())).alias("worlds"),
    )
    return table.sort("evppi", descending=True, maintain_order=True)
