"""Adaptive replicate counts: rounds of replicates until every scenario's estimate reaches
the precision ``experiment.precision`` asks for, or ``experiment.max_replicates``.

Each round continues each scenario's replicate range (seeds still by index, so common random
numbers hold); the experiment pipeline runs the rounds, this module decides them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

from kibs_mc.analysis.statistics import half_width, summarize
from kibs_mc.config import PrecisionConfig
from kibs_mc.run.plan import Scenario


def next_targets(
    rows: pl.DataFrame, scenarios: Sequence[Scenario], counts: dict[int, int],
    precision: PrecisionConfig, max_replicates: int, chunk_size: int,
) -> tuple[dict[int, int], list[dict]]:
    """Replicates each scenario should reach next, from its current CI half-width.

    A scenario short of its target gets n * (h / target)^2 replicates (the CI half-width
    shrinks as 1/sqrt(n)), at least one more chunk, at most four times as many as it has (a
    noisy early estimate must not launch a huge round), and never more than max_replicates.
    """
    # Only the replicates each scenario has reached so far count: a resumed run may find more
    # on disk, and must take the same decisions as the run it continues.
    reached_counts = {sc.name: counts[sc.index] for sc in scenarios}
    limit = pl.col("scenario").replace_strict(reached_counts, return_dtype=pl.Int64)
    rows = rows.filter(pl.col("replicate") < limit)
    assert precision.outcome is not None  # only adaptive runs come here
    summary = summarize(rows, [precision.outcome])
    targets = dict(counts)
    status = []
    for sc in scenarios:
        found = summary.filter(pl.col("scenario") == sc.name)
        n = counts[sc.index]
        if found.height == 0:  # every replicate so far failed: nothing to estimate from
            status.append({"scenario": sc.name, "n": n, "half_width": float("inf"),
                           "target": float("nan"), "reached": False})
            continue
        r = found.row(0, named=True)
        half = half_width(r) if r["n"] > 1 else float("inf")
        goal = precision.half_width * abs(r["mean"]) if precision.relative else precision.half_width
        reached = half <= goal
        if not reached and n < max_replicates:
            wanted = math.ceil(n * (half / goal) ** 2) if goal > 0 and math.isfinite(half) else 4 * n
            targets[sc.index] = min(max_replicates, max(wanted, n + chunk_size), 4 * n)
        status.append({"scenario": sc.name, "n": n, "half_width": half, "target": goal,
                       "reached": reached})
    return targets, status


def precision_notes(status: list[dict], precision: PrecisionConfig) -> list[str]:
    """Which scenarios reached the precision target and which stopped at max_replicates."""
    kind = "relative " if precision.relative else ""
    notes = []
    for s in status:
        verdict = "reached the target" if s["reached"] else "stopped at experiment.max_replicates"
        notes.append(f"`{s['scenario']}`: {verdict}: 95% CI half-width of `{precision.outcome}` "
                     f"{s['half_width']:.4g} vs {kind}target {s['target']:.4g} with n={s['n']}.")
    return notes
