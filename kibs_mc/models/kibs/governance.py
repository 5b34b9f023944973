"""Governance instruments -> kernel parameters, in one place (docs/ODD.md §7.6).

A governance scenario spends money. ``governance.budget`` is money per initial HTE per step;
each interface of the seed paper (section IV: strategic, management, business, information)
gets the share of it named by its value in [0, 1], so its money per step is
M_X = share_X x budget x (initial HTEs). An instrument's reach follows from its money and its
unit cost (money per unit reached per step): the probability that an eligible agent is reached
is min(1, M_X / (unit_cost_X x eligible_X)) (HTEs for strategic, management and business, every
agent for information; a unit cost of 0 reaches everyone). The kernel then splits M_X equally
among the agents reached each step and books every unit where it lands and what it bought;
money it cannot place is not spent and is booked as such. Every share at 0 is the baseline: no
money, no reach, nothing changes.
"""

from __future__ import annotations

from kibs_mc.kernels.kibs import HTE_ONLY, INSTRUMENT_NAMES, KibsParams
from kibs_mc.models.kibs.build import type_traits
from kibs_mc.models.kibs.schema import ClusterConfig, GovernanceConfig, KibsConfig

#: The four levers, in the kernels' instrument order.
LEVERS = INSTRUMENT_NAMES


def instrument_money(governance: GovernanceConfig, cluster: ClusterConfig) -> dict[str, float]:
    """Money per step of each instrument: share x budget x initial HTEs."""
    return {lever: float(getattr(governance, lever) * governance.budget * cluster.hte) for lever in LEVERS}


def market_capacity(model: KibsConfig, cluster: ClusterConfig) -> float:
    """Q of the finite market (docs/ODD.md s.7.4): the launches per field over the market's
    memory that halve demand at elasticity 1, ``market_size`` launches per initial HTE per year."""
    return float(model.market_size * cluster.hte * model.market_memory / (12.0 * cluster.fields))


def _reach(money: float, unit_cost: float, eligible: int) -> float:
    if money <= 0.0 or eligible <= 0:
        return 0.0
    if unit_cost <= 0.0:
        return 1.0
    return float(min(1.0, money / (unit_cost * eligible)))


def kernel_parameters(model: KibsConfig, cluster: ClusterConfig, governance: GovernanceConfig) -> KibsParams:
    """The kernel's parameter tuple for one scenario (instruments: see the module docstring;
    what each one's money does: ``kernels/kibs/instruments.py`` and ``projects.py``)."""
    fx = governance.effects
    cost = governance.unit_cost
    money = instrument_money(governance, cluster)
    agents = sum(cluster.counts)
    return KibsParams(
        absorptive_base=tuple(float(a) for a in cluster.absorptive_base),
        random_draw=model.schedule == "random_draw",
        barter=model.barter,
        tolerance=float(model.tolerance),
        adaptive_absorption=model.absorption == "adaptive",
        fixed_absorption=float(model.fixed_absorption),
        knowledge_half=float(model.knowledge_half),
        absorption_management_weight=float(model.absorption_management_weight),
        distance_learning=model.distance_learning,
        optimum_base=float(model.optimum_base),
        optimum_slope=float(model.optimum_slope),
        transfer_efficiency=float(model.transfer_efficiency),
        trust_weight=float(model.trust_weight),
        tie_reinforcement=float(model.tie_reinforcement),
        service_fee=float(model.service_fee),
        consulting_rate=float(model.consulting_rate),
        production=model.production,
        uni_rate=float(model.uni_rate),
        t_kibs_rate=float(model.t_kibs_rate),
        t_kibs_cost=float(model.t_kibs_cost),
        rd_gain=float(model.rd_gain),
        rd_cost=float(model.rd_cost),
        rd_cost_cut=float(fx.rd_cost_cut),
        innovation=model.innovation,
        imitation_rate=float(model.imitation_rate),
        imitation_reward=float(model.imitation_reward),
        independent_rate=float(model.independent_rate),
        independent_reward=float(model.independent_reward),
        market_elasticity=float(model.market_elasticity),
        market_capacity=float(
            model.market_size * cluster.hte * model.market_memory / (12.0 * cluster.fields)
        ),
        market_keep=float(1.0 - 1.0 / model.market_memory),
        innovation_knowledge=float(model.innovation_knowledge),
        conversion_management_weight=float(model.conversion_management_weight),
        finance=model.finance,
        fixed_cost=float(model.fixed_cost),
        kibs_fixed_cost=float(model.kibs_fixed_cost),
        credit_line=float(model.credit_line),
        interest=float(model.interest),
        startup_prob=float(model.startup_prob),
        startup_capital=float(model.startup_capital),
        startup_search=int(model.startup_search),
        network_dynamics=model.network_dynamics,
        tie_decay=float(model.tie_decay),
        tie_floor=float(model.tie_floor),
        new_tie_weight=float(model.new_tie_weight),
        triadic_p=float(model.triadic_p),
        proximity_p=float(model.proximity_p),
        distance_scale=float(cluster.distance_scale),
        broker_p=float(model.broker_p),
        money=tuple(money[lever] for lever in LEVERS),
        reach=tuple(
            _reach(money[lever], float(getattr(cost, lever)), cluster.hte if HTE_ONLY[k] else agents)
            for k, lever in enumerate(LEVERS)
        ),
        unit_cost=tuple(float(getattr(cost, lever)) for lever in LEVERS),
        project_outlay=float(fx.project_outlay),
        project_yield=float(fx.project_yield),
        project_elasticity=float(fx.project_elasticity),
        project_rate=float(fx.project_rate),
        joint_value=float(fx.joint_value),
        benefit_share=float(fx.benefit_share),
        risk_share=float(fx.risk_share),
        partner_cover=float(fx.partner_cover),
        opportunism=float(fx.opportunism),
        alignment_start=float(fx.alignment_start),
        alignment_gain=float(fx.alignment_gain),
        alignment_wear=float(fx.alignment_wear),
        consulting_effect=float(fx.consulting_effect),
        service_effect=float(fx.service_effect),
        platform_fee_share=float(fx.platform_fee_share),
        platform_transfer=float(fx.platform_transfer),
        platform_effect=float(fx.platform_effect),
        match_cost=float(fx.match_cost),
        match_candidates=int(fx.match_candidates),
        codified_transfer=float(fx.codified_transfer),
        search_draws=int(fx.search_draws),
        traits=type_traits(cluster),
    )
