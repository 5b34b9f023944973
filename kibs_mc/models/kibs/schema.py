"""The cluster model's schemas: who is in the cluster (``cluster``), its dynamics (``model``)
and the governance levers (``governance``), each a Hydra config group (docs/ODD.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from kibs_mc.errors import ConfigError
from kibs_mc.fields import setting

#: Agent types in the order of every per-type list of ``cluster`` (docs/ODD.md §2).
AGENT_TYPES = ("hte", "t_kibs", "p_kibs", "uni", "intermediaries", "fin")


def _check_per_type(
    path: str,
    key: str,
    values: Sequence[float],
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> None:
    full = f"{path}.{key}"
    allowed = f"allowed: a list of {len(AGENT_TYPES)} numbers, one per type ({', '.join(AGENT_TYPES)})"
    if len(values) != len(AGENT_TYPES):
        raise ConfigError(full, list(values), allowed)
    for v in values:
        bad = (
            not math.isfinite(v)
            or (ge is not None and v < ge)
            or (gt is not None and v <= gt)
            or (le is not None and v > le)
        )
        if bad:
            bounds = (
                (f"[{ge:g}" if ge is not None else f"({gt:g}" if gt is not None else "(-inf")
                + ", "
                + (f"{le:g}]" if le is not None else "inf)")
            )
            raise ConfigError(full, list(values), f"{allowed}, each in {bounds}")


@dataclass(frozen=True)
class ClusterConfig:
    """Who is in the cluster, where, what they know, and the initial network (docs/ODD.md §2, §5)."""

    name: str = "default"
    hte: int = setting(300, ge=1, le=10_000_000)
    t_kibs: int = setting(40, ge=0)
    p_kibs: int = setting(30, ge=0)
    uni: int = setting(6, ge=0)
    intermediaries: int = setting(8, ge=0)
    fin: int = setting(5, ge=0)
    fields: int = setting(8, ge=1, le=1000)
    network: str = setting("spatial", choices=("spatial", "watts_strogatz", "erdos_renyi", "barabasi_albert"))
    mean_degree: int = setting(8, ge=2)
    rewire_p: float = setting(0.1, ge=0.0, le=1.0)
    distance_scale: float = setting(0.15, gt=0.0)
    similarity_weight: float = setting(1.0, ge=0.0)
    initial_tie_weight: float = setting(0.5, gt=0.0, le=1.0)
    sociability: list[float] = field(default_factory=lambda: [1.0, 1.6, 1.3, 1.6, 2.0, 0.8])
    spread: list[float] = field(default_factory=lambda: [0.10, 0.15, 0.20, 0.25, 0.20, 0.25])
    knowledge_level: list[float] = field(default_factory=lambda: [2.0, 3.5, 2.0, 5.0, 1.5, 1.0])
    knowledge_spread: float = setting(0.5, ge=0.0, le=1.0)
    core_boost: float = setting(3.0, ge=1.0)
    management_mean: list[float] = field(default_factory=lambda: [0.3, 0.55, 0.8, 0.45, 0.6, 0.7])
    management_spread: float = setting(0.15, ge=0.0, le=1.0)
    absorptive_base: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.8, 0.8, 0.6, 0.4])
    capital: list[float] = field(default_factory=lambda: [10.0, 6.0, 6.0, 10.0, 10.0, 50.0])
    max_ties: list[int] = field(default_factory=lambda: [40, 120, 120, 200, 150, 200])

    @property
    def counts(self) -> list[int]:
        return [self.hte, self.t_kibs, self.p_kibs, self.uni, self.intermediaries, self.fin]

    def check(self, path: str) -> None:
        _check_per_type(path, "sociability", self.sociability, gt=0.0)
        _check_per_type(path, "spread", self.spread, ge=0.0)
        _check_per_type(path, "knowledge_level", self.knowledge_level, gt=0.0)
        _check_per_type(path, "management_mean", self.management_mean, ge=0.0, le=1.0)
        _check_per_type(path, "absorptive_base", self.absorptive_base, ge=0.0, le=1.0)
        _check_per_type(path, "capital", self.capital)
        _check_per_type(path, "max_ties", self.max_ties, ge=1)
        n = sum(self.counts)
        if self.mean_degree >= n:
            raise ConfigError(
                f"{path}.mean_degree", self.mean_degree, f"allowed: below the number of agents ({n})"
            )
        if self.network in ("watts_strogatz", "barabasi_albert") and self.mean_degree % 2:
            raise ConfigError(
                f"{path}.mean_degree", self.mean_degree, f"allowed: an even number for network={self.network}"
            )


@dataclass(frozen=True)
class KibsConfig:
    """Dynamics of the cluster model (docs/ODD.md §3, §7); switches reduce it to Cowan-Jonard."""

    name: str = setting("kibs", choices=("kibs",))  # names the model: choose it with model=<name>
    steps: int = setting(120, ge=1, le=1_000_000)
    record_every: int = setting(5, ge=1)
    schedule: str = setting("random_sequential", choices=("random_sequential", "random_draw"))
    barter: bool = False
    tolerance: float = setting(0.01, ge=0.0, lt=1.0)
    absorption: str = setting("adaptive", choices=("adaptive", "fixed"))
    fixed_absorption: float = setting(0.1, gt=0.0, le=1.0)
    knowledge_half: float = setting(3.0, gt=0.0)
    absorption_management_weight: float = setting(0.5, ge=0.0, le=1.0)
    distance_learning: bool = True
    optimum_base: float = setting(0.4, gt=0.0, le=2.0)
    optimum_slope: float = setting(0.6, ge=0.0, le=2.0)
    transfer_efficiency: float = setting(0.5, gt=0.0, le=1.0)
    trust_weight: float = setting(0.5, ge=0.0, le=1.0)  # psi: share of a transfer that needs trust
    tie_reinforcement: float = setting(0.1, ge=0.0, le=1.0)
    service_fee: float = setting(0.02, ge=0.0)
    consulting_rate: float = setting(0.02, ge=0.0, le=1.0)
    production: bool = True
    uni_rate: float = setting(0.05, ge=0.0)
    t_kibs_rate: float = setting(0.03, ge=0.0)
    rd_gain: float = setting(0.02, ge=0.0)
    rd_cost: float = setting(0.05, ge=0.0)
    t_kibs_cost: float = setting(0.01, ge=0.0)  # T-KIBS's cost of producing knowledge per step
    innovation: bool = True
    imitation_rate: float = setting(0.01, ge=0.0)  # lambda_I, per unit of knowledge absorbed
    imitation_reward: float = setting(2.0, ge=0.0)
    independent_rate: float = setting(0.1, ge=0.0)  # lambda_N, per unit of own R&D
    independent_reward: float = setting(4.0, ge=0.0)
    conversion_management_weight: float = setting(0.7, ge=0.0, le=1.0)
    innovation_knowledge: float = setting(0.3, ge=0.0)
    # a finite market (docs/ODD.md s.7.4): demand (1 + L / Q)^-epsilon in a field
    market_elasticity: float = setting(0.5, ge=0.0, le=2.0)  # epsilon
    market_size: float = setting(1.0, gt=0.0)  # Q as launches per initial HTE per year
    market_memory: float = setting(12.0, ge=1.0)  # months over which launches are counted
    finance: bool = True
    fixed_cost: float = setting(0.15, ge=0.0)  # HTE, per step
    kibs_fixed_cost: float = setting(0.07, ge=0.0)  # T- and P-KIBS operating cost per step
    credit_line: float = setting(5.0, ge=0.0)
    interest: float = setting(0.01, ge=0.0, le=1.0)
    startup_prob: float = setting(0.5, ge=0.0, le=1.0)
    startup_capital: float = setting(5.0)
    startup_search: int = setting(20, ge=0)
    network_dynamics: bool = True
    tie_decay: float = setting(0.05, ge=0.0, le=1.0)
    tie_floor: float = setting(0.05, ge=0.0, lt=1.0)
    new_tie_weight: float = setting(0.3, gt=0.0, le=1.0)
    triadic_p: float = setting(0.02, ge=0.0, le=1.0)
    proximity_p: float = setting(0.05, ge=0.0, le=1.0)
    broker_p: float = setting(0.3, ge=0.0, le=1.0)

    def check(self, path: str) -> None:
        if self.new_tie_weight < self.tie_floor:
            raise ConfigError(
                f"{path}.new_tie_weight",
                self.new_tie_weight,
                f"allowed: at least {path}.tie_floor={self.tie_floor:g}",
            )


@dataclass(frozen=True)
class LeverCosts:
    """Money per unit an instrument reaches per step: the matching grant per partnership
    (strategic), subsidised consulting per HTE (management), the service voucher per member HTE
    (business), the platform's upkeep per member (information). 0: reach all. Each one's source
    or plausible range: docs/ODD.md s.7.6, "Policy-response parameters"."""

    strategic: float = setting(0.1, ge=0.0)
    management: float = setting(0.1, ge=0.0)
    business: float = setting(0.1, ge=0.0)
    information: float = setting(0.02, ge=0.0)


@dataclass(frozen=True)
class LeverEffects:
    """What agents do with the instruments' money (``kernels/kibs/instruments.py``,
    ``projects.py``; docs/ODD.md s.7.3 and s.7.6, where each has its plausible range and source)."""

    # strategic: joint projects
    project_outlay: float = setting(0.05, ge=0.0)  # C_o: the partners' own outlay per project month
    project_yield: float = setting(0.1, ge=0.0)  # y_P: knowledge built per month per money^gamma
    project_elasticity: float = setting(0.5, ge=0.0, le=1.0)  # gamma: returns to resources
    project_rate: float = setting(0.05, ge=0.0)  # lambda_P: launch hazard per unit built
    joint_value: float = setting(4.0, ge=0.0)  # v_J: value per unit of knowledge launched
    benefit_share: float = setting(0.3, ge=0.0, le=1.0)  # beta: the KIBS partner's share of it
    risk_share: float = setting(0.3, ge=0.0, le=1.0)  # s_r: the KIBS partner's share of the outlay
    partner_cover: float = setting(24.0, ge=0.0)  # H: months of outlays a KIBS covers to take a partner
    opportunism: float = setting(0.4, ge=0.0, le=1.0)  # o: resources a misaligned partnership wastes
    alignment_start: float = setting(0.5, ge=0.0, le=1.0)  # g_0: a new partnership's alignment
    alignment_gain: float = setting(0.3, ge=0.0, le=1.0)  # a_g: share of 1 - g a launch closes
    alignment_wear: float = setting(0.01, ge=0.0, le=1.0)  # a_w: share of g a month without one wears
    # management: consulting
    consulting_effect: float = setting(0.15, ge=0.0)  # e_M: capability step per unit of money
    # business: services and the universities' platform
    service_effect: float = setting(1.0, ge=0.0)  # e_S: service depth per unit of money
    rd_cost_cut: float = setting(0.5, ge=0.0, le=1.0)  # x: R&D cost a full-depth service saves
    platform_fee_share: float = setting(0.3, ge=0.0, le=1.0)  # f: voucher share to the platform
    platform_transfer: float = setting(0.3, ge=0.0, le=1.0)  # pi: platform intensity, fully funded
    platform_effect: float = setting(30.0, ge=0.0)  # e_P: funding per unit of fee per member
    # information: the intermediaries' platform
    match_cost: float = setting(0.1, gt=0.0)  # c_m: money per brokered match
    match_candidates: int = setting(5, ge=0)  # firms the broker screens per match
    codified_transfer: float = setting(0.3, ge=0.0, le=1.0)  # kappa_I: learning from the codified pool
    search_draws: int = setting(3, ge=0)  # KIBS a firm off the platform screens per search


@dataclass(frozen=True)
class GovernanceConfig:
    """The four governance interfaces of the seed paper (s.IV) as instruments in money.

    ``budget`` is money per initial HTE per step; each interface's value in [0, 1] is the share
    of that budget it spends (docs/ODD.md §7.6). Equal shares summed = equal money.
    """

    name: str = "baseline"
    budget: float = setting(0.05, ge=0.0)
    strategic: float = setting(0.0, ge=0.0, le=1.0)
    management: float = setting(0.0, ge=0.0, le=1.0)
    business: float = setting(0.0, ge=0.0, le=1.0)
    information: float = setting(0.0, ge=0.0, le=1.0)
    unit_cost: LeverCosts = field(default_factory=LeverCosts)
    effects: LeverEffects = field(default_factory=LeverEffects)
