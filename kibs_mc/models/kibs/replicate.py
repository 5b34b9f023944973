"""One replicate of the cluster model ``kibs``: build a cluster, run it, measure it.

docs/ODD.md; the kernels are in ``kibs_mc.kernels.kibs``, cluster generation in
``kibs_mc.models.kibs.build``, the governance mapping in ``kibs_mc.models.kibs.governance``;
``docs/ODD.md`` is the full description. :func:`simulate_replicate` is the unit that
``scripts/bench.py kibs`` times (agent-steps = agents x steps per replicate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import numpy as np
from scipy import special

from kibs_mc.kernels import kibs as kernel
from kibs_mc.kernels.kibs import HTE, P_KIBS, T_KIBS
from kibs_mc.kernels.rng import new_state
from kibs_mc.models.kibs.build import ClusterState, build_cluster
from kibs_mc.models.kibs.governance import kernel_parameters
from kibs_mc.models.kibs.schema import ClusterConfig, GovernanceConfig, KibsConfig

#: Outcome columns of ``replicates.parquet`` with their dtypes, in order (docs/ODD.md §9).
OUTCOMES: dict[str, type] = {
    "innovations_total": np.int64,
    "innovations_per_hte": np.float64,
    "innovations_imitation": np.int64,
    "innovations_independent": np.int64,
    "innovations_joint": np.int64,
    "hte_knowledge_mean": np.float64,
    "hte_knowledge_gini": np.float64,
    "kibs_knowledge_mean": np.float64,
    "kibs_revenue": np.float64,
    "kibs_net_revenue": np.float64,
    "kibs_exits": np.int64,
    "hte_exits": np.int64,
    "bank_exits": np.int64,
    "bank_interest": np.float64,
    "bank_defaults": np.float64,
    "partners_p_kibs": np.int64,
    "partners_t_kibs": np.int64,
    "diffusion_time": np.float64,
    "network_density": np.float64,
    "network_clustering": np.float64,
    "governance_cost": np.float64,
    "innovations_top10_share": np.float64,
    "innovation_tail_exponent": np.float64,
    "hte_young_exit_share": np.float64,
    "hte_innovator_share": np.float64,
    "kibs_fee_share": np.float64,
}

#: The money ledger, column -> account of ``Workspace.ledger`` (docs/ODD.md s.9): flows across
#: the cluster's boundary, the costs they are made of, and flows between balance sheets.
LEDGER_COLUMNS: dict[str, int] = {
    "money_gov_spent": kernel.GOV_SPENT,
    "money_market_in": kernel.MARKET_IN,
    "money_entry_in": kernel.ENTRY_IN,
    "money_costs_out": kernel.COSTS_OUT,
    "money_exit_out": kernel.EXIT_OUT,
    "money_fixed_costs": kernel.FIXED_COSTS,
    "money_rd_costs": kernel.RD_COSTS,
    "money_project_costs": kernel.PROJECT_COSTS,
    "money_platform_costs": kernel.PLATFORM_COSTS,
    "money_interest_out": kernel.INTEREST_OUT,
    "money_joint_value": kernel.JOINT_VALUE,
    "money_fees": kernel.FEES,
    "money_interest": kernel.INTEREST,
    "money_write_offs": kernel.DEFAULTS,
    "money_kibs_gross": kernel.KIBS_GROSS,
    "money_kibs_costs": kernel.KIBS_COSTS,
}
for _k, _lever in enumerate(kernel.INSTRUMENT_NAMES):
    LEDGER_COLUMNS[f"money_at_work_{_lever}"] = kernel.GOV_STRATEGIC + _k  # spent
    LEDGER_COLUMNS[f"money_unspent_{_lever}"] = kernel.GOV_UNSPENT + _k
    LEDGER_COLUMNS[f"money_depth_{_lever}"] = kernel.GOV_DEPTH + _k
    for _t, _type in enumerate(kernel.TYPE_NAMES):
        LEDGER_COLUMNS[f"money_{_lever}_to_{_type}"] = kernel.GOV_TO + _k * kernel.N_TYPES + _t

#: Records of ``replicates.parquet`` beside the outcomes (not compared between scenarios): the
#: money ledger, its conservation residual, and what each instrument's mechanism delivered.
ACCOUNTS: dict[str, type] = {
    **dict.fromkeys(LEDGER_COLUMNS, np.float64),
    "money_residual": np.float64,
    **{f"delivered_{lever}": np.float64 for lever in kernel.INSTRUMENT_NAMES},
    "matches_brokered": np.int64,
}

#: Fewest firms in the tail a power law is fitted to (:func:`power_law_exponent`).
TAIL_MIN = 50


class KibsScenario(Protocol):
    """What a replicate reads of a scenario's configuration: the three groups of the model."""

    @property
    def model(self) -> KibsConfig: ...
    @property
    def cluster(self) -> ClusterConfig: ...
    @property
    def governance(self) -> GovernanceConfig: ...


@dataclass
class Run:
    """A finished replicate: final state and per-step series (index 0 = initial state)."""

    state: ClusterState
    hte_mean: np.ndarray
    innovations_cumulative: np.ndarray
    ties: np.ndarray
    initial_capital: float  # sum of capital over living agents before the first step


def run(config: KibsScenario, seed: int) -> Run:
    """Build and run one replicate. Stream order: cluster (see ``kibs_mc.models.kibs.build``), steps."""
    prm = kernel_parameters(config.model, config.cluster, config.governance)
    rng_state = new_state(seed)
    state = build_cluster(config.cluster, prm, rng_state)
    initial_capital = float(kernel.living_capital(state.agents))
    hte_mean, cumulative, ties = kernel.run_replicate(
        state.agents, state.ties, state.work, rng_state, prm, config.model.steps
    )
    return Run(state, hte_mean, cumulative, ties, initial_capital)


def money_residual(result: Run) -> float:
    """Change of the living agents' capital minus the booked external flows: 0 up to rounding
    when money is conserved (government in, market in, entrants in, costs out, exits out)."""
    ledger = result.state.work.ledger
    booked = (
        ledger[kernel.GOV_SPENT]
        + ledger[kernel.MARKET_IN]
        + ledger[kernel.ENTRY_IN]
        - ledger[kernel.COSTS_OUT]
        - ledger[kernel.EXIT_OUT]
    )
    return float(kernel.living_capital(result.state.agents) - result.initial_capital - booked)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: sum_ij |x_i - x_j| / (2 n^2 mean); 0 if empty."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.shape[0]
    if n == 0 or x.sum() <= 0.0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * x).sum()) / (n * x.sum()) - (n + 1.0) / n)


def diffusion_time(hte_mean: np.ndarray) -> float:
    """Steps until HTE mean knowledge first reaches half its final gain over the initial level
    (0 when there is no gain)."""
    gain = hte_mean - hte_mean[0]
    half = 0.5 * gain[-1]
    if half <= 0.0:
        return 0.0
    return float(np.argmax(gain >= half))


def innovation_counts(state: ClusterState) -> np.ndarray | None:
    """Innovations of every HTE that existed during the run: the living ones (since their
    entry) and the exited ones (``Workspace.exit_innovations``); None when an exited firm's
    count reached the histogram's open last bin (then the counts are not exact)."""
    s = state.agents
    hist = state.work.exit_innovations
    if hist[-1] > 0:
        return None
    living = s.innovations[s.alive & (s.agent_type == HTE)]
    return np.concatenate([living, np.repeat(np.arange(hist.shape[0], dtype=np.int64), hist)])


def top_share(counts: np.ndarray, share: float = 0.1) -> float:
    """Share of all innovations made by the top ``share`` of firms (the ceil(share x n) firms
    with most innovations, non-innovators included in n); NaN without any innovation."""
    x = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    total = x.sum()
    if x.size == 0 or total <= 0.0:
        return float("nan")
    k = max(1, int(np.ceil(share * x.size - 1e-9)))
    return float(x[:k].sum() / total)


def _discrete_power_law_mle(tail: np.ndarray, xmin: int) -> float:
    """alpha maximising the discrete power-law likelihood of ``tail`` (all >= xmin):
    L = -n ln zeta(alpha, xmin) - alpha sum ln x (Clauset, Shalizi & Newman 2009, eq. 3.5)."""
    n = tail.size
    log_sum = float(np.log(tail).sum())

    def nll(alpha: float) -> float:
        return n * float(np.log(special.zeta(alpha, xmin))) + alpha * log_sum

    # Imported here: scipy.optimize costs about a second to import, which every process that
    # imports the models (each CLI start, each Ray worker) would pay without fitting anything.
    from scipy.optimize import minimize_scalar

    fit = minimize_scalar(nll, bounds=(1.0 + 1e-6, 30.0), method="bounded", options={"xatol": 1e-6})
    return float(fit.x)


def power_law_exponent(counts: np.ndarray, min_tail: int = TAIL_MIN) -> tuple[float, int]:
    """Exponent alpha of a discrete power law p(x) ~ x^-alpha fitted to the upper tail of
    ``counts`` (Clauset, Shalizi & Newman 2009, SIAM Review 51:661): for each candidate xmin
    (an observed count >= 1 with at least ``min_tail`` firms at or above it) alpha is the
    discrete maximum-likelihood estimate on x >= xmin, and the xmin whose fit has the smallest
    Kolmogorov-Smirnov distance to the tail's empirical CDF is kept (the smallest on ties).
    Returns (alpha, xmin); (NaN, 0) when fewer than ``min_tail`` firms innovated or no
    candidate tail holds two distinct counts."""
    x = np.asarray(counts, dtype=np.int64)
    x = np.sort(x[x >= 1])
    best = (float("nan"), 0)
    best_d = np.inf
    if x.size < min_tail:
        return best
    values = np.unique(x)
    for xmin in values[values <= x[x.size - min_tail]]:
        tail = x[x >= xmin].astype(np.float64)
        if tail[-1] == tail[0]:
            continue
        alpha = _discrete_power_law_mle(tail, int(xmin))
        seen, at = np.unique(tail, return_counts=True)
        empirical = np.cumsum(at) / tail.size
        fitted = 1.0 - special.zeta(alpha, seen + 1.0) / special.zeta(alpha, float(xmin))
        d = float(np.max(np.abs(empirical - fitted)))
        if d < best_d:
            best_d = d
            best = (alpha, int(xmin))
    return best


def innovator_share(state: ClusterState) -> float:
    """Share of the HTEs that existed during the run (the living since their entry and the
    exited ones) with at least one innovation; exact even where an exited firm's count reached
    the open last bin of ``Workspace.exit_innovations``, which still counts as an innovator."""
    s = state.agents
    hist = state.work.exit_innovations
    living = s.innovations[s.alive & (s.agent_type == HTE)]
    firms = living.size + int(hist.sum())
    return float((living > 0).sum() + hist[1:].sum()) / firms if firms else float("nan")


def young_exit_share(tally: np.ndarray) -> float:
    """Share of HTE entrants observed for ``kernel.YOUNG_WINDOW`` steps before the run ended
    that exited within that window; NaN without such entrants."""
    entrants = int(tally[kernel.YOUNG_ENTRANTS])
    return float(tally[kernel.YOUNG_EXITS]) / entrants if entrants > 0 else float("nan")


def outcomes(config: KibsScenario, result: Run) -> dict:
    """The row of a finished replicate: its outcomes (docs/ODD.md §9), then its records
    (:func:`accounts`)."""
    s = result.state.agents
    living = s.alive
    hte = living & (s.agent_type == HTE)
    kibs = living & ((s.agent_type == T_KIBS) | (s.agent_type == P_KIBS))
    hte_levels = s.knowledge[hte].mean(axis=1)
    n_alive = int(living.sum())
    ties = result.state.tie_count()
    total = int(result.innovations_cumulative[-1])
    ledger = result.state.work.ledger
    tally = result.state.work.tally
    counts = innovation_counts(result.state)
    spending = ledger[kernel.HTE_SPENDING]
    fee_share = float(ledger[kernel.HTE_KIBS_SERVICES] / spending) if spending > 0 else float("nan")
    return {
        "innovations_total": total,
        "innovations_per_hte": total / config.cluster.hte,
        "innovations_imitation": int(tally[kernel.IMITATIONS]),
        "innovations_independent": int(tally[kernel.INDEPENDENT]),
        "innovations_joint": int(tally[kernel.JOINT]),
        "hte_knowledge_mean": float(hte_levels.mean()) if hte_levels.size else 0.0,
        "hte_knowledge_gini": gini(hte_levels),
        "kibs_knowledge_mean": float(s.knowledge[kibs].mean()) if kibs.any() else 0.0,
        "kibs_revenue": float(ledger[kernel.KIBS_GROSS]),
        "kibs_net_revenue": float(ledger[kernel.KIBS_GROSS] - ledger[kernel.KIBS_COSTS]),
        "kibs_exits": int(tally[kernel.KIBS_EXITS]),
        "hte_exits": int(tally[kernel.HTE_EXITS]),
        "bank_exits": int(tally[kernel.FIN_EXITS]),
        "bank_interest": float(ledger[kernel.INTEREST]),
        "bank_defaults": float(ledger[kernel.DEFAULTS]),
        "partners_p_kibs": int(tally[kernel.P_PARTNERS]),
        "partners_t_kibs": int(tally[kernel.T_PARTNERS]),
        "diffusion_time": diffusion_time(result.hte_mean),
        "network_density": 2.0 * ties / (n_alive * (n_alive - 1)) if n_alive > 1 else 0.0,
        "network_clustering": float(kernel.average_clustering(result.state.ties, s.alive)),
        "governance_cost": float(ledger[kernel.GOV_SPENT]),
        "innovations_top10_share": top_share(counts) if counts is not None else float("nan"),
        "innovation_tail_exponent": power_law_exponent(counts)[0] if counts is not None else float("nan"),
        "hte_young_exit_share": young_exit_share(tally),
        "hte_innovator_share": innovator_share(result.state),
        "kibs_fee_share": fee_share,
        **accounts(result),
    }


def accounts(result: Run) -> dict:
    """The records of a finished replicate (:data:`ACCOUNTS`)."""
    work = result.state.work
    row: dict = {name: float(work.ledger[index]) for name, index in LEDGER_COLUMNS.items()}
    row["money_residual"] = money_residual(result)
    for k, lever in enumerate(kernel.INSTRUMENT_NAMES):
        row[f"delivered_{lever}"] = float(work.delivered[k])
    row["matches_brokered"] = int(work.tally[kernel.MATCHES])
    return row


def simulate_replicate(config: KibsScenario, seed: int) -> tuple[dict, dict]:
    """One replicate: the outcome row and the time series (every ``record_every`` steps)."""
    result = run(config, seed)
    steps = np.arange(0, config.model.steps + 1, config.model.record_every, dtype=np.int64)
    series = {
        "step": steps,
        "hte_knowledge_mean": result.hte_mean[steps],
        "innovations_cumulative": result.innovations_cumulative[steps].astype(np.int64),
        "ties": result.ties[steps].astype(np.int64),
    }
    return outcomes(config, result), series


def replicate_bytes(config: KibsScenario) -> int:
    """Peak memory of one replicate, with 50% slack: knowledge (agents x fields), the padded
    tie slots (``max_ties`` per agent of each type: index, weight, partnership flag, mirror slot), about
    twenty per-agent state and workspace arrays, and the edge list the initial network is built from."""
    cluster = config.cluster
    counts = list(cluster.counts)
    agents = sum(counts)
    slots = sum(c * t for c, t in zip(counts, cluster.max_ties, strict=False))
    state = agents * cluster.fields * 8 + slots * (8 + 8 + 8 + 1) + agents * 20 * 8
    edges = agents * cluster.mean_degree * 8 * 2
    return int(1.5 * (state + edges))


class Kibs:
    """The model's entry in the registry (:class:`kibs_mc.models.base.Model`)."""

    name: str = "kibs"
    schema: type = KibsConfig
    outcomes: Mapping[str, type] = OUTCOMES
    headline: tuple[str, ...] = (
        "innovations_total",
        "hte_knowledge_mean",
        "diffusion_time",
        "kibs_net_revenue",
        "hte_exits",
        "kibs_exits",
        "innovations_independent",
        "innovations_joint",
        "governance_cost",
    )
    #: Slower diffusion, more exits (young firms' too), more unequal knowledge, more defaults
    #: and more public money are worse.
    lower_is_better: tuple[str, ...] = (
        "diffusion_time",
        "hte_exits",
        "kibs_exits",
        "bank_exits",
        "hte_young_exit_share",
        "bank_defaults",
        "hte_knowledge_gini",
        "governance_cost",
    )
    accounts: Mapping[str, type] = ACCOUNTS
    #: Further config groups the model reads, with their schemas (registered with Hydra).
    groups: Mapping[str, type] = MappingProxyType({"cluster": ClusterConfig, "governance": GovernanceConfig})
    #: Public money spent on the interfaces: effects are also reported per unit of it.
    cost: str | None = "governance_cost"
    #: The levers: each scenario's MLflow run is tagged with their values.
    tags: tuple[str, ...] = ("governance",)

    def simulate(self, config: KibsScenario, seed: int) -> tuple[dict, dict]:
        return simulate_replicate(config, seed)

    def replicate_bytes(self, config: KibsScenario) -> int:
        return replicate_bytes(config)

    def timeseries_rows(self, config: KibsScenario) -> int:
        return config.model.steps // config.model.record_every + 1  # steps 0, k, 2k, ...


MODEL = Kibs()
