"""Paired effects of each scenario against the baseline, on common random numbers.

Replicate r of every scenario uses the same seed (docs/ODD.md §4), so the effect of a scenario
on an outcome is estimated from the per-replicate differences d_r = y_r(scenario) -
y_r(baseline). Pairing removes the between-replicate variance that scenarios share (the
random cluster and its initial knowledge), which is why paired intervals are much narrower
than unpaired ones on the same data (Law 2015, Simulation Modeling and Analysis, s.11.2).

For each scenario and outcome:
- ``effect``: mean of d over the replicates both have, with its 95% t interval
  (:func:`kibs_mc.analysis.inference.t_interval`), the interval of the same t statistic that
  the minimum-effect test below decides with;
- ``effect_size``: Glass's delta, the effect in units of the baseline's standard deviation
  across replicates (a scale-free magnitude that pairing does not inflate);
- ``effect_per_cost``: effect per unit of extra cost over the baseline, when the model has an
  outcome that measures spending (``Model.cost``, e.g. ``governance_cost``);
- ``unpaired_ci_low/high``: the Welch t interval that ignores pairing, for comparison;
- ``significant``: the (unadjusted) CI excludes zero;
- ``margin``, ``p_value``, ``p_adjusted``, ``clear``: the minimum-effect test of
  :mod:`kibs_mc.analysis.inference` and its multiplicity adjustment (:func:`decide_effects`):
  ``clear`` means larger than the smallest effect that matters, after adjustment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.special import stdtrit

from kibs_mc.analysis.inference import (
    adjust_by_family,
    margin,
    min_effect_p,
    t_interval,
)
from kibs_mc.models import MODELS

__all__ = [
    "add_effects_to_summary",
    "choose_baseline",
    "decide_effects",
    "paired_effects",
    "welch_interval",
]


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Welch's t interval of mean(a) - mean(b) for independent samples (Welch 1947; the
    Welch-Satterthwaite degrees of freedom); NaN below two values on either side."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan"), float("nan")
    va, vb = float(a.var(ddof=1)) / na, float(b.var(ddof=1)) / nb
    diff = float(a.mean()) - float(b.mean())
    if va + vb == 0:
        return diff, diff
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = float(stdtrit(df, 0.5 + confidence / 2)) * np.sqrt(va + vb)
    return diff - half, diff + half


def choose_baseline(scenarios: Sequence[str], requested: str | None = None) -> str:
    """The scenario others are compared with: ``requested``, else ``baseline``, else the first."""
    if requested:
        return requested
    return "baseline" if "baseline" in scenarios else scenarios[0]


#: The columns of effects.parquet before :func:`decide_effects` adds its decisions.
EFFECT_SCHEMA = {
    "scenario": pl.String,
    "outcome": pl.String,
    "baseline": pl.String,
    "n": pl.Int64,
    "baseline_mean": pl.Float64,
    "scenario_mean": pl.Float64,
    "effect": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "sd_difference": pl.Float64,
    "effect_size": pl.Float64,
    "extra_cost": pl.Float64,
    "effect_per_cost": pl.Float64,
    "unpaired_ci_low": pl.Float64,
    "unpaired_ci_high": pl.Float64,
    "significant": pl.Boolean,
    "margin": pl.Float64,
    "p_value": pl.Float64,
}


def _extra_cost(paired: pl.DataFrame, cost: str | None) -> float | None:
    """The scenario's mean extra ``cost`` over its paired baseline replicates (None without a
    cost outcome)."""
    if cost is None:
        return None
    gap = (paired[cost] - paired[f"{cost}__base"]).mean()
    return float(gap) if isinstance(gap, int | float) else 0.0


def paired_effects(
    rows: pl.DataFrame,
    outcomes: Sequence[str],
    baseline: str,
    confidence: float = 0.95,
    min_effect: float = 0.0,
    relative: bool = True,
    cost: str | None = None,
) -> pl.DataFrame:
    """Effects of every scenario other than ``baseline`` on every outcome (see module doc);
    also per unit of extra ``cost`` (the outcome that measures spending; None: a registered
    model's ``Model.cost`` that ``rows`` has, if any).

    ``p_value`` tests H0: |effect| <= margin, the margin being ``min_effect`` (a share of the
    baseline's mean when ``relative``); ``p_adjusted`` and ``clear`` are Holm's across each
    outcome's rows until :func:`decide_effects` sets them from the reported families."""
    scenarios = [
        s for s in rows.get_column("scenario").unique(maintain_order=True).to_list() if s != baseline
    ]
    parts = rows.partition_by("scenario", as_dict=True)  # one pass, not one filter per scenario
    base = parts.get((baseline,), rows.clear())
    if cost is None:
        cost = next((m.cost for m in MODELS.values() if m.cost in rows.columns), None)
    cost = cost if cost in rows.columns else None
    records = []
    for scenario in scenarios:
        other = parts[(scenario,)]
        paired = other.join(base, on="replicate", suffix="__base").sort("replicate")
        extra_cost = _extra_cost(paired, cost)
        for outcome in outcomes:
            y = paired[outcome].cast(pl.Float64).to_numpy()
            y0 = paired[f"{outcome}__base"].cast(pl.Float64).to_numpy()
            d = y - y0
            n = len(d)
            effect = float(d.mean()) if n else float("nan")
            low, high = t_interval(d, confidence)
            ulow, uhigh = welch_interval(y, y0, confidence)
            base_mean = float(y0.mean()) if n else float("nan")
            m = margin(min_effect, relative, base_mean if base_mean else float(np.mean(y)) if n else 0.0)
            sd_base = float(y0.std(ddof=1)) if n > 1 else float("nan")
            records.append(
                {
                    "scenario": scenario,
                    "outcome": outcome,
                    "baseline": baseline,
                    "n": n,
                    "baseline_mean": base_mean,
                    "scenario_mean": float(y.mean()) if n else float("nan"),
                    "effect": effect,
                    "ci_low": low,
                    "ci_high": high,
                    "sd_difference": float(d.std(ddof=1)) if n > 1 else float("nan"),
                    "effect_size": effect / sd_base if sd_base > 0 else float("nan"),
                    "extra_cost": extra_cost,
                    "effect_per_cost": effect / extra_cost
                    if extra_cost is not None and extra_cost > 0
                    else None,
                    "unpaired_ci_low": ulow,
                    "unpaired_ci_high": uhigh,
                    "significant": bool(low > 0 or high < 0),
                    "margin": m,
                    "p_value": min_effect_p(d, m),
                }
            )
    return decide_effects(pl.DataFrame(records, schema=EFFECT_SCHEMA))


def decide_effects(
    effects: pl.DataFrame, contrasts: pl.DataFrame | None = None, alpha: float = 0.05, adjust: str = "holm"
) -> pl.DataFrame:
    """Set ``p_adjusted`` and ``clear`` of each effect.

    An effect whose pair is in ``contrasts`` (the reported family,
    :func:`kibs_mc.analysis.inference.contrasts`) takes that contrast's adjusted p-value; the
    others (outcomes or scenarios outside the reported contrasts, e.g. sweep points or the
    worlds of a robustness run) form one family per outcome, adjusted the same way (Holm, or
    Benjamini-Hochberg with ``adjust="bh"``)."""
    adjusted = np.full(effects.height, np.nan)
    if contrasts is not None and contrasts.height:
        column = "p_bh" if adjust == "bh" else "p_holm"
        known = {
            (r["outcome"], frozenset((r["scenario"], r["versus"]))): r[column]
            for r in contrasts.iter_rows(named=True)
        }
        for i, r in enumerate(effects.select("outcome", "scenario", "baseline").iter_rows(named=True)):
            adjusted[i] = known.get((r["outcome"], frozenset((r["scenario"], r["baseline"]))), np.nan)
    rest = np.isnan(adjusted)
    if rest.any():
        p = effects["p_value"].to_numpy()[rest]
        outcome = np.asarray(effects["outcome"].to_list(), dtype=object)[rest]
        adjusted[rest] = adjust_by_family(p, list(outcome), adjust)
    return effects.with_columns(
        p_adjusted=pl.Series(adjusted, dtype=pl.Float64),
        clear=pl.Series(np.nan_to_num(adjusted, nan=1.0) < alpha, dtype=pl.Boolean),
    )


def add_effects_to_summary(summary: pl.DataFrame, effects: pl.DataFrame) -> pl.DataFrame:
    """Summary rows gain the paired effect against the baseline (null for the baseline)."""
    joined = effects.select(
        "scenario",
        "outcome",
        pl.col("effect"),
        pl.col("ci_low").alias("effect_ci_low"),
        pl.col("ci_high").alias("effect_ci_high"),
        "effect_size",
        "effect_per_cost",
    )
    return summary.join(joined, on=["scenario", "outcome"], how="left", maintain_order="left")
