"""Governance levers -> kernel parameters, in one place (MODEL.md s.3, docs/ODD.md s.7.6).

A governance scenario is a setting of the four levers of the seed paper's interface framework
(section IV: strategic, management, business, information), each in [0, 1], and its budget
``governance_cost = sum of lever x unit cost``. Every lever at 0 is the baseline: each
mechanism below vanishes at lever 0, so a lever at 0 changes nothing.
"""

from __future__ import annotations

from kibs_mc.kernels.kibs import KibsParams
from kibs_mc.models.kibs.schema import ClusterConfig, GovernanceConfig, KibsConfig

LEVERS = ("strategic", "management", "business", "information")


def governance_cost(governance: GovernanceConfig) -> float:
    """Budget of a governance setting: sum over levers of lever x unit cost."""
    return float(sum(getattr(governance, lever) * getattr(governance.unit_cost, lever) for lever in LEVERS))


def kernel_parameters(model: KibsConfig, cluster: ClusterConfig, governance: GovernanceConfig) -> KibsParams:
    """The kernel's parameter tuple for one scenario.

    Levers (L_S, L_M, L_B, L_I in [0, 1]) act as follows (effects: ``governance.effects``):

    - strategic: a share L_S * partnership_reach of HTEs is partnered with its most
      complementary KIBS; partners' cognitive distance shrinks by ``goal_alignment``; a
      ``benefit_share`` of rewards and a ``risk_share`` of losses pass between partners (these
      act only on partnerships, of which there are none at L_S = 0);
    - management: consulting rate c = consulting_rate + L_M * consulting_boost;
    - business: a share L_B * platform_reach of HTEs joins the common technology platform,
      whose members pay R&D cost C_RD (1 - rd_cost_cut) and learn from the pooled UNI knowledge
      with intensity L_B * platform_transfer;
    - information: tau = tau_0 + L_I * information_gain * (1 - tau_0) on every tie, and
      long-range search with probability L_I * long_range_search per agent-step.
    """
    fx = governance.effects
    tau0 = model.transfer_efficiency
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
        transfer_efficiency=float(tau0 + governance.information * fx.information_gain * (1.0 - tau0)),
        goal_alignment=float(fx.goal_alignment),
        tie_reinforcement=float(model.tie_reinforcement),
        service_fee=float(model.service_fee),
        consulting_rate=float(min(1.0, model.consulting_rate + governance.management * fx.consulting_boost)),
        production=model.production,
        uni_rate=float(model.uni_rate),
        t_kibs_rate=float(model.t_kibs_rate),
        rd_gain=float(model.rd_gain),
        rd_cost=float(model.rd_cost),
        rd_cost_member=float(model.rd_cost * (1.0 - fx.rd_cost_cut)),
        platform_transfer=float(governance.business * fx.platform_transfer),
        innovation=model.innovation,
        innovation_rate=float(model.innovation_rate),
        conversion_management_weight=float(model.conversion_management_weight),
        innovation_reward=float(model.innovation_reward),
        innovation_knowledge=float(model.innovation_knowledge),
        benefit_share=float(fx.benefit_share),
        finance=model.finance,
        fixed_cost=float(model.fixed_cost),
        credit_line=float(model.credit_line),
        interest=float(model.interest),
        risk_share=float(fx.risk_share),
        startup_prob=float(model.startup_prob),
        startup_capital=float(model.startup_capital),
        startup_search=int(model.startup_search),
        partnership_share=float(governance.strategic * fx.partnership_reach),
        platform_share=float(governance.business * fx.platform_reach),
        network_dynamics=model.network_dynamics,
        tie_decay=float(model.tie_decay),
        tie_floor=float(model.tie_floor),
        new_tie_weight=float(model.new_tie_weight),
        triadic_p=float(model.triadic_p),
        proximity_p=float(model.proximity_p),
        distance_scale=float(cluster.distance_scale),
        broker_p=float(model.broker_p),
        long_range_p=float(governance.information * fx.long_range_search),
    )
