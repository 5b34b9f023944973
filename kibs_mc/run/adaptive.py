"""Adaptive replicate counts: rounds of replicates until what is decided reaches the precision
``experiment.precision`` asks for (:func:`next_targets`), or until ``experiment.selection``
has certified a best scenario (:func:`selection_targets`), or ``experiment.max_replicates``.

Each round continues each scenario's replicate range (seeds still by index, so common random
numbers hold); the experiment pipeline runs the rounds, this module decides them. Decisions use
only the replicates each scenario had reached when the round was decided (a resumed run may
find more on disk), so a resumed run takes the same decisions as the run it continues.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.special import stdtrit  # t quantiles; far lighter to import than scipy.stats

from kibs_mc.analysis.inference import paired_matrix
from kibs_mc.analysis.selection import KNResult, kn, next_count
from kibs_mc.config import PrecisionConfig, SelectionConfig
from kibs_mc.run.plan import Scenario


def reached_rows(rows: pl.DataFrame, scenarios: Sequence[Scenario], counts: dict[int, int]) -> pl.DataFrame:
    """The rows of the replicates each scenario had reached."""
    reached = {sc.name: counts[sc.index] for sc in scenarios}
    limit = pl.col("scenario").replace_strict(reached, default=0, return_dtype=pl.Int64)
    return rows.filter(pl.col("replicate") < limit)


def _half(values: np.ndarray) -> float:
    """95% t-interval half-width of the mean of ``values`` (inf below two values)."""
    n = len(values)
    if n < 2:
        return float("inf")
    return float(stdtrit(n - 1, 0.975)) * float(values.std(ddof=1)) / math.sqrt(n)


def precision_cells(
    rows: pl.DataFrame, names: Sequence[str], baseline: str, precision: PrecisionConfig
) -> dict[str, tuple[float, float]]:
    """Per scenario: (95% CI half-width of the estimate it decides, the goal for it).

    ``on=mean``: the scenario's mean, goal a share of |mean| when relative. ``effect``: its
    paired effect against the baseline (for the baseline itself, the widest effect), goal a
    share of |baseline mean|. ``contrast``: the widest of its paired differences with every
    other scenario, goal as for effects. Paired estimates use the replicates all scenarios
    have."""
    assert precision.outcome is not None  # only adaptive runs come here
    out: dict[str, tuple[float, float]] = {}
    if precision.on == "mean" or len(names) < 2:  # one scenario: nothing to compare, its mean decides
        for s in names:
            part = rows.filter(pl.col("scenario") == s)[precision.outcome]
            y = part.cast(pl.Float64).drop_nulls().to_numpy()
            goal = (
                precision.half_width * abs(float(y.mean()))
                if precision.relative and len(y)
                else precision.half_width
            )
            out[s] = (_half(y), goal if len(y) else float("nan"))
        return out
    y = paired_matrix(rows, precision.outcome, names)
    if y.shape[0] == 0:
        return {s: (float("inf"), float("nan")) for s in names}
    b = list(names).index(baseline)
    reference = abs(float(y[:, b].mean())) or abs(float(y.mean()))
    goal = precision.half_width * reference if precision.relative else precision.half_width
    k = len(names)
    for i, s in enumerate(names):
        if precision.on == "effect":
            pairs = [(i, b)] if i != b else [(j, b) for j in range(k) if j != b]
        else:
            pairs = [(i, j) for j in range(k) if j != i]
        out[s] = (max((_half(y[:, a] - y[:, c]) for a, c in pairs), default=0.0), goal)
    return out


def next_targets(
    rows: pl.DataFrame,
    scenarios: Sequence[Scenario],
    counts: dict[int, int],
    precision: PrecisionConfig,
    max_replicates: int,
    chunk_size: int,
    baseline: str | None = None,
) -> tuple[dict[int, int], list[dict]]:
    """Replicates each scenario should reach next, from the CI half-width of what it decides.

    A scenario short of its goal wants n * (h / goal)^2 replicates (the CI half-width shrinks
    as 1/sqrt(n)), at least one more chunk, at most four times as many as it has (a noisy early
    estimate must not launch a huge round), and never more than max_replicates. Paired
    estimates (``on=effect``/``contrast``) need common replicates: every scenario then goes to
    the largest count wanted."""
    names = [sc.name for sc in scenarios]
    cells = precision_cells(reached_rows(rows, scenarios, counts), names, baseline or names[0], precision)
    targets = dict(counts)
    status = []
    for sc in scenarios:
        half, goal = cells[sc.name]
        n = counts[sc.index]
        reached = half <= goal
        if not reached and n < max_replicates:
            wanted = math.ceil(n * (half / goal) ** 2) if goal > 0 and math.isfinite(half) else 4 * n
            targets[sc.index] = min(max_replicates, max(wanted, n + chunk_size), 4 * n)
        status.append({"scenario": sc.name, "n": n, "half_width": half, "target": goal, "reached": reached})
    if precision.on != "mean" and len(scenarios) > 1:
        most = max(targets.values())
        targets = {i: max(most, counts[i]) for i in targets}
    return targets, status


def precision_notes(status: list[dict], precision: PrecisionConfig) -> list[str]:
    """Which scenarios reached the precision target and which stopped at max_replicates."""
    kind = "relative " if precision.relative else ""
    what = {
        "mean": "mean",
        "effect": "paired effect against the baseline",
        "contrast": "widest paired difference with another scenario",
    }[precision.on]
    notes = []
    for s in status:
        verdict = "reached the target" if s["reached"] else "stopped at experiment.max_replicates"
        notes.append(
            f"`{s['scenario']}`: {verdict}: 95% CI half-width of the {what} on "
            f"`{precision.outcome}` {s['half_width']:.4g} vs {kind}target {s['target']:.4g} "
            f"with n={s['n']}."
        )
    return notes


@dataclass(frozen=True)
class Selection:
    """The state of a KN selection after a round: who is in contention, and at which
    replicate the others were eliminated."""

    outcome: str
    candidates: list[str]
    delta: float  # absolute indifference zone
    alpha: float
    larger_is_better: bool
    result: KNResult
    replicates: dict[str, int]  # replicates each candidate received
    capped: bool  # stopped at max_replicates with more than one in contention

    @property
    def selected(self) -> str | None:
        i = self.result.selected
        return None if i is None else self.candidates[i]

    def frame(self, means: dict[str, float]) -> pl.DataFrame:
        """One row per candidate: replicates, mean, eliminated at, selected."""
        survivors = {self.candidates[i] for i in self.result.survivors}
        return pl.DataFrame(
            {
                "scenario": self.candidates,
                "outcome": [self.outcome] * len(self.candidates),
                "replicates": [self.replicates[c] for c in self.candidates],
                "mean": [means.get(c, float("nan")) for c in self.candidates],
                "eliminated_after": [self.result.eliminated_at.get(i) for i in range(len(self.candidates))],
                "in_contention": [c in survivors for c in self.candidates],
                "selected": [c == self.selected for c in self.candidates],
                "delta": [self.delta] * len(self.candidates),
                "alpha": [self.alpha] * len(self.candidates),
            },
            schema_overrides={"eliminated_after": pl.Int64},
        )


def selection_first_round(scenarios: Sequence[Scenario], selection: SelectionConfig) -> dict[int, int]:
    """KN's first stage: ``first_stage`` replicates of every scenario. With a selection,
    ``replicates`` sets nothing: KN decides how many each contender runs."""
    return {sc.index: selection.first_stage for sc in scenarios}


@dataclass(frozen=True)
class Contest:
    """What KN selects among: ``candidates`` on ``selection.outcome``, larger or smaller better."""

    selection: SelectionConfig
    candidates: Sequence[str]
    larger_is_better: bool


def selection_targets(
    rows: pl.DataFrame,
    scenarios: Sequence[Scenario],
    counts: dict[int, int],
    contest: Contest,
    max_replicates: int,
    chunk_size: int,
) -> tuple[dict[int, int], Selection]:
    """Replay KN over the replicates reached and give the contenders one more round.

    The indifference zone is ``selection.delta`` or, when relative, that share of the largest
    |mean| over the candidates' first ``first_stage`` replicates (fixed by those replicates, so
    a resumed run finds the same). Scenarios that do not compete (the baseline) run along with
    the contenders, so that the selected one's effect against them uses all its replicates."""
    selection, candidates, larger_is_better = contest.selection, contest.candidates, contest.larger_is_better
    assert selection.outcome is not None
    rows = reached_rows(rows, scenarios, counts)
    index = {sc.name: sc.index for sc in scenarios}
    observations = []
    for c in candidates:
        part = rows.filter(pl.col("scenario") == c).sort("replicate")
        observations.append(part[selection.outcome].cast(pl.Float64).fill_null(float("nan")).to_numpy())
    n0 = selection.first_stage
    delta = selection.delta
    if selection.relative:
        first = [abs(float(np.nanmean(o[:n0]))) for o in observations if len(o) >= n0]
        delta = selection.delta * max(first, default=0.0) if first else float("nan")
    result = (
        kn(observations, delta, selection.alpha, n0, larger_is_better)
        if delta > 0
        else KNResult(survivors=list(range(len(candidates))), done=len(candidates) == 1)
    )
    targets = dict(counts)
    reached = min(counts[index[candidates[i]]] for i in result.survivors)
    capped = False
    if not result.done:
        if reached >= max_replicates:
            capped = True
        else:
            want = (
                next_count(result, reached, chunk_size, max_replicates) if result.stage else max(reached, n0)
            )
            for i in result.survivors:
                targets[index[candidates[i]]] = max(want, counts[index[candidates[i]]])
            for sc in scenarios:
                if sc.name not in candidates:
                    targets[sc.index] = max(want, counts[sc.index])
    state = Selection(
        selection.outcome,
        list(candidates),
        delta,
        selection.alpha,
        larger_is_better,
        result,
        {c: counts[index[c]] for c in candidates},
        capped,
    )
    return targets, state


def selection_notes(state: Selection) -> list[str]:
    """The selection's outcome in a sentence or two."""
    n = ", ".join(f"`{c}` {state.replicates[c]}" for c in state.candidates)
    gone = sorted(((r, state.candidates[i]) for i, r in state.result.eliminated_at.items()))
    dropped = "; ".join(f"`{c}` eliminated after {r}" for r, c in gone) or "none eliminated"
    if state.selected is not None:
        return [
            f"Selection (Kim & Nelson 2001, KN): `{state.selected}` is best on `{state.outcome}` "
            f"with probability >= {1 - state.alpha:.2f} when it leads by at least delta = "
            f"{state.delta:.4g} (otherwise it is within delta of the best with that probability); "
            f"replicates per candidate: {n} ({dropped})."
        ]
    left = ", ".join(f"`{state.candidates[i]}`" for i in state.result.survivors)
    return [
        f"Selection (KN) not certified: {left} still in contention on `{state.outcome}` at "
        f"experiment.max_replicates (delta = {state.delta:.4g}; {dropped})."
    ]
