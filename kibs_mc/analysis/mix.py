"""The best mix of budget shares (``experiment.kind=mix``, docs/mix.md): candidate splits on
a lattice of the simplex proposed in generations by NSGA-II (Optuna's sampler, ask and tell),
their robust objective across the worlds, the front of money against robust effect, and the
confirmation of the pick on fresh seeds by KN (:mod:`kibs_mc.analysis.selection`).

Pure functions of arrays and frames; the kind (:mod:`kibs_mc.experiments.mix`) plans the
scenarios and reads the rows.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import qmc

from kibs_mc.analysis.inference import t_interval
from kibs_mc.analysis.robustness import Outcomes, world_objective
from kibs_mc.analysis.selection import KNResult, kn

__all__ = [
    "Confirmation",
    "Search",
    "confirm",
    "front",
    "lattice",
    "mix_table",
    "propose",
    "simplex_design",
    "snap",
]


def simplex_design(count: int, dims: int, seed: int) -> np.ndarray:
    """``count`` points spread over the simplex of ``dims`` shares summing to 1: a scrambled
    Sobol sequence in ``dims - 1`` dimensions (scipy.stats.qmc), each point's sorted
    coordinates cut [0, 1] into ``dims`` spacings (uniform on the simplex for uniform points;
    Devroye 1986, s.V.2.2). Deterministic in ``seed``."""
    if dims < 2:
        raise ValueError("a split needs at least two shares")
    sobol = qmc.Sobol(d=dims - 1, scramble=True, seed=np.random.default_rng([seed, 0x313]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance needs a power of 2; any count is fine
        u = np.sort(sobol.random(count), axis=1)
    cuts = np.hstack([np.zeros((count, 1)), u, np.ones((count, 1))])
    return np.diff(cuts, axis=1)


def lattice(dims: int, resolution: int) -> list[tuple[int, ...]]:
    """Every split of a budget into ``dims`` shares in steps of 1/``resolution``: the counts
    (non-negative, summing to ``resolution``), the first share's largest first."""
    points = []
    for bars in itertools.combinations(range(resolution + dims - 1), dims - 1):
        edges = (-1, *bars, resolution + dims - 1)
        points.append(tuple(edges[i + 1] - edges[i] - 1 for i in range(dims)))
    return sorted(points, reverse=True)


def snap(shares: Sequence[float] | np.ndarray, resolution: int) -> tuple[int, ...]:
    """The lattice point (counts of 1/``resolution``) nearest ``shares`` (summing to 1):
    largest remainders, ties to the earlier share."""
    x = np.round(np.asarray(shares, dtype=float) * resolution, 9)
    k = np.floor(x).astype(np.int64)
    rest = resolution - int(k.sum())
    if rest > 0:
        k[np.argsort(-(x - k), kind="stable")[:rest]] += 1
    while k.sum() > resolution:  # rounding pushed a share over: take from the largest
        k[int(np.argmax(k))] -= 1
    return tuple(int(v) for v in k)


#: A candidate for the optimiser: its lattice counts and the index of its budget.
Point = tuple[tuple[int, ...], int]


@dataclass(frozen=True)
class Search:
    """NSGA-II over the splits (Deb et al. 2002; Optuna's ``NSGAIISampler``, ask and tell):
    generation 0 is the points given, then ``generations`` more of as many proposals each. A
    proposal is ``dims`` weights in [0, 1] (the shares are the weights over their sum, snapped
    to the lattice of 1/``resolution``) and, with ``budgets`` > 1, the index of a budget."""

    dims: int
    resolution: int
    budgets: int  # how many budgets the search chooses among
    generations: int  # after generation 0
    seed: int


def _ask(study: Any, search: Search) -> tuple[Any, Point]:
    trial = study.ask()
    w = np.array([trial.suggest_float(f"w{i}", 0.0, 1.0) for i in range(search.dims)])
    shares = w / w.sum() if w.sum() > 0 else np.full(search.dims, 1.0 / search.dims)
    budget = trial.suggest_int("budget", 0, search.budgets - 1) if search.budgets > 1 else 0
    return trial, (snap(shares, search.resolution), budget)


def propose(
    search: Search, first: Sequence[Point], value: Callable[[Point], Sequence[float] | None]
) -> tuple[int, list[Point]]:
    """The first generation not yet evaluated and its points: generation 0 is ``first``, each
    later one NSGA-II's proposals once it has been told the values of every earlier one.

    ``value``: a point's objectives (each larger is better; a NaN fails the point), None while
    it has not been evaluated. The optimiser is replayed from its seed and the values every
    time, so each generation is a function of the seed and the results alone: a resumed
    search proposes what the search it continues proposed. Returns
    (``search.generations + 1``, []) once every generation is evaluated."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study: Any = None
    for g in range(search.generations + 1):
        if g == 0:
            asked: list[tuple[Any, Point]] = [(None, p) for p in first]
        else:
            asked = [_ask(study, search) for _ in first]
        values = [value(p) for _, p in asked]
        if any(v is None for v in values):
            return g, [p for _, p in asked]
        if study is None:  # generation 0: the given points, enqueued so the sampler counts them
            sampler = optuna.samplers.NSGAIISampler(population_size=max(len(first), 2), seed=search.seed)
            study = optuna.create_study(directions=["maximize"] * len(values[0] or [0.0]), sampler=sampler)
            for counts, budget in first:
                params = {f"w{i}": k / search.resolution for i, k in enumerate(counts)}
                study.enqueue_trial({**params, "budget": budget} if search.budgets > 1 else params)
            asked = [_ask(study, search) for _ in first]
        for (trial, _), v in zip(asked, values, strict=True):
            assert v is not None
            if all(np.isfinite(v)):
                study.tell(trial, list(v))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return search.generations + 1, []


def mix_table(
    data: Outcomes, baseline: int, per_money: bool, maximize: bool, confidence: float = 0.95
) -> pl.DataFrame:
    """Per policy, across the worlds: ``objective`` (the mean over worlds of each world's
    objective: the paired effect against the baseline per unit of extra money with
    ``per_money``, else the outcome) with its t interval over the worlds, ``effect`` (the mean
    paired effect against the baseline, outcome units) with its t interval, and ``money``
    (the mean spending above the baseline's)."""
    j = world_objective(data, baseline, per_money)[0]  # (W, P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        effect = np.nanmean(data.y - data.y[:, baseline : baseline + 1, :], axis=2)  # (W, P)
        money = np.nanmean(data.cost - data.cost[:, baseline : baseline + 1, :], axis=2)
    records = []
    for p, policy in enumerate(data.policies):
        jp, ep = j[:, p][np.isfinite(j[:, p])], effect[:, p][np.isfinite(effect[:, p])]
        j_low, j_high = t_interval(jp, confidence) if jp.size else (np.nan, np.nan)
        e_low, e_high = t_interval(ep, confidence) if ep.size else (np.nan, np.nan)
        records.append(
            {
                "policy": policy,
                "objective": float(jp.mean()) if jp.size else np.nan,
                "objective_ci_low": j_low,
                "objective_ci_high": j_high,
                "effect": float(ep.mean()) if ep.size else np.nan,
                "effect_ci_low": e_low,
                "effect_ci_high": e_high,
                "money": float(np.nanmean(money[:, p])),
            }
        )
    return ranked(pl.DataFrame(records), maximize)


def ranked(table: pl.DataFrame, maximize: bool) -> pl.DataFrame:
    """``table`` with each policy's ``rank`` by ``objective`` and whether it is ``on_front``."""
    table = table.drop("rank", "on_front", strict=False)
    score = table["objective"].to_numpy() * (1 if maximize else -1)
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return table.with_columns(pl.Series("rank", rank), pl.Series("on_front", front(table, maximize)))


#: Spending within this share of another's counts as the same money for the front (splits of one
#: budget differ only by what an interface leaves unspent).
SAME_MONEY = 0.02


def front(table: pl.DataFrame, maximize: bool, same_money: float = SAME_MONEY) -> np.ndarray:
    """Which policies no other dominates: none spends at most as much (within ``same_money``
    of it) and has a better ``effect``. The Pareto front of money against robust effect (a
    policy without a finite effect is off it)."""
    money = table["money"].to_numpy()
    effect = table["effect"].to_numpy() * (1 if maximize else -1)
    ok = np.isfinite(money) & np.isfinite(effect)
    on = np.zeros(len(money), dtype=bool)
    for i in np.flatnonzero(ok):
        cheaper = money[ok] <= money[i] + same_money * abs(money[i])
        better = (effect[ok] > effect[i]) | ((effect[ok] == effect[i]) & (money[ok] < money[i]))
        on[i] = not (cheaper & better).any()
    return on


@dataclass(frozen=True)
class Confirmation:
    """KN among the pick, the runner-up and the equal split on fresh seeds."""

    systems: list[str]  # the pick first
    roles: list[str]  # pick | runner_up | equal_split (joined with '+' when one system plays two)
    observations: list[np.ndarray]  # per system: the fresh replicates' mean over worlds
    result: KNResult
    delta: float
    alpha: float

    @property
    def selected(self) -> str | None:
        """The certified best system (within ``delta`` with probability >= 1 - alpha)."""
        chosen = self.result.selected
        return None if chosen is None else self.systems[chosen]

    def lead(self, i: int, confidence: float = 0.95) -> tuple[float, float, float]:
        """The pick's lead over system ``i`` on the fresh replicates both ran (paired: the same
        seeds), with its t interval; NaN for the pick itself or below two shared replicates.
        Fresh seeds: free of the search's winner's curse."""
        n = min(len(self.observations[0]), len(self.observations[i]))
        if i == 0 or n < 2:
            return float("nan"), float("nan"), float("nan")
        d = self.observations[0][:n] - self.observations[i][:n]
        low, high = t_interval(d, confidence)
        return float(d.mean()), low, high

    def frame(self) -> pl.DataFrame:
        """confirmation.parquet: one row per system."""
        leads = [self.lead(i) for i in range(len(self.systems))]
        return pl.DataFrame(
            {
                "policy": self.systems,
                "role": self.roles,
                "replicates": [len(x) for x in self.observations],
                "mean": [float(np.mean(x)) if len(x) else None for x in self.observations],
                "pick_lead": [x[0] for x in leads],
                "pick_lead_ci_low": [x[1] for x in leads],
                "pick_lead_ci_high": [x[2] for x in leads],
                "eliminated_at": [self.result.eliminated_at.get(i) for i in range(len(self.systems))],
                "selected": [self.selected == s for s in self.systems],
            },
            schema_overrides={"eliminated_at": pl.Int64, "mean": pl.Float64},
        )


def contenders(
    table: pl.DataFrame, candidates: Sequence[str], equal: Callable[[str], str], same_money: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The systems KN confirms among: the candidate ranked first, the best other candidate at
    the same money (``same_money``: policy -> its budget's label), and the equal split at that
    money (``equal``: label -> its policy). Returns (systems, roles)."""
    ranked = table.filter(pl.col("policy").is_in(list(candidates))).sort("rank")["policy"].to_list()
    pick = ranked[0]
    level = same_money[pick]
    runner = next((p for p in ranked[1:] if same_money[p] == level), None)
    equal_here = equal(level)
    systems, roles = [pick], ["pick"]
    for system, role in ((runner, "runner_up"), (equal_here, "equal_split")):
        if system is None:
            continue
        if system in systems:
            roles[systems.index(system)] += "+" + role
        else:
            systems.append(system)
            roles.append(role)
    return systems, roles


def confirm(
    systems: Sequence[str],
    roles: Sequence[str],
    observations: Sequence[np.ndarray],
    delta: float,
    alpha: float,
    n0: int,
    larger_better: bool,
) -> Confirmation:
    """KN (Kim & Nelson 2001) over the systems' fresh observations (element r of each from the
    same seeds: common random numbers)."""
    if len(systems) < 2:  # one contender: nothing to confirm against
        result = KNResult(survivors=[0], stage=0, done=True)
    else:
        result = kn(observations, delta, alpha, n0, larger_better)
    return Confirmation(
        list(systems), list(roles), [np.asarray(x) for x in observations], result, delta, alpha
    )
