"""Summary statistics of replicate outcomes: means with t intervals, computed at once from
the rows (:func:`summarize`) or merged batch by batch while results stream in
(:class:`RunningSummary`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.special import stdtrit  # t quantiles; far lighter to import than scipy.stats

#: Columns of a result frame that are not outcomes (no summary for them).
NOT_OUTCOMES = ("scenario", "replicate", "seed", "_chunk")


def half_width(row: dict) -> float:
    """Half the width of a summary or effect row's CI (``ci_low``/``ci_high``); NaN if missing."""
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None:
        return float("nan")
    return (high - low) / 2


def summarize(rows: pl.DataFrame, outcomes: Sequence[str], confidence: float = 0.95) -> pl.DataFrame:
    """Per scenario and outcome: n, mean, sd, standard error and the t-based CI of the mean."""
    long = rows.select("scenario", *[pl.col(c).cast(pl.Float64) for c in outcomes]).unpivot(
        index="scenario", variable_name="outcome", value_name="value"
    )
    table = long.group_by("scenario", "outcome", maintain_order=True).agg(
        n=pl.col("value").count(),
        mean=pl.col("value").mean(),
        sd=pl.col("value").std(),
    )
    n = table["n"].to_numpy()
    t = np.where(n > 1, stdtrit(np.maximum(n - 1, 1), 0.5 + confidence / 2), np.nan)
    se = table["sd"].to_numpy() / np.sqrt(np.maximum(n, 1))
    half = t * se
    mean = table["mean"].to_numpy()
    return table.with_columns(se=pl.Series(se), ci_low=pl.Series(mean - half), ci_high=pl.Series(mean + half))


class RunningSummary:
    """Per scenario and outcome: count, mean and M2, merged batch by batch with the pairwise
    update of Chan, Golub and LeVeque (1979), so the driver knows the estimates while results
    stream in (rows of this invocation; a resumed run's earlier chunks are not included)."""

    def __init__(self) -> None:
        self.stats: dict[tuple[str, str], tuple[int, float, float]] = {}
        self._widest: dict[str, float | None] = {}

    def update(self, rows: pl.DataFrame) -> None:
        """Merge the rows of a batch of chunks (grouped by scenario in one pass)."""
        outcomes = [c for c in rows.columns if c not in NOT_OUTCOMES]
        if not outcomes or rows.height == 0:
            return
        self._widest.clear()
        stats = rows.group_by("scenario").agg(
            pl.len().alias("_n"),
            *[pl.col(c).cast(pl.Float64).mean().alias(f"{c}\0mean") for c in outcomes],
            *[
                ((pl.col(c).cast(pl.Float64) - pl.col(c).cast(pl.Float64).mean()) ** 2)
                .sum()
                .alias(f"{c}\0m2")
                for c in outcomes
            ],
        )
        for batch in stats.iter_rows(named=True):
            n_b = batch["_n"]
            for name in outcomes:
                mean_b, m2_b = batch[f"{name}\0mean"], batch[f"{name}\0m2"]
                n_a, mean_a, m2_a = self.stats.get((batch["scenario"], name), (0, 0.0, 0.0))
                n = n_a + n_b
                delta = mean_b - mean_a
                self.stats[(batch["scenario"], name)] = (
                    n,
                    mean_a + delta * n_b / n,
                    m2_a + m2_b + delta * delta * n_a * n_b / n,
                )

    def widest_half_width(self, outcome: str) -> float | None:
        """Largest 95% t-interval half-width of ``outcome``'s mean over the scenarios (None
        before any scenario has two replicates): how precise the run is so far. Asked for
        after every chunk, it changes only when a batch is merged: computed once per batch."""
        if outcome not in self._widest:
            halves = [
                float(stdtrit(n - 1, 0.975)) * math.sqrt(m2 / (n - 1) / n)
                for (_, name), (n, _, m2) in self.stats.items()
                if name == outcome and n > 1
            ]
            self._widest[outcome] = max(halves) if halves else None
        return self._widest[outcome]

    def frame(self) -> pl.DataFrame:
        """Columns scenario, outcome, n, mean, sd."""
        keys = list(self.stats)
        n = np.array([self.stats[k][0] for k in keys], dtype=np.int64)
        m2 = np.array([self.stats[k][2] for k in keys])
        return pl.DataFrame(
            {
                "scenario": [k[0] for k in keys],
                "outcome": [k[1] for k in keys],
                "n": n,
                "mean": [self.stats[k][1] for k in keys],
                "sd": np.where(n > 1, np.sqrt(m2 / np.maximum(n - 1, 1)), np.nan),
            }
        )
