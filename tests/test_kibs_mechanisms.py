"""Every governance interface works through what agents do with its money (docs/ODD.md
s.7.6): one family of tests per interface, each able to fail.

- its money at 0 with its response coefficients kept (even doubled) is the baseline, bit for bit;
- its coefficients at 0 with its money kept leave only the money's own accounting: the money is
  spent and booked, its mechanism delivers nothing, and with nothing else reading capital
  (finance off, capital far from the R&D and production thresholds) every outcome that is not
  money is the baseline's, bit for bit;
- its effect rises with the budget with diminishing returns once its reach is full, or the
  money it cannot place is not spent (information), and the outputs say which;
- strategic's effect falls with the resources put into joint projects; information's effect is
  nil without intermediaries to run the platform.
"""

from __future__ import annotations

import numpy as np
import pytest

from kibs_mc.config import load_config
from kibs_mc.experiments.robustness import check_parameter
from kibs_mc.models.kibs import replicate as cluster_model

FAST = ["executor=serial", "tracking=none", "cluster=small"]
SEEDS = np.arange(101, 121)  # 20 paired replicates
LEVERS = ("strategic", "management", "business", "information")

#: Each interface's response coefficients (docs/ODD.md s.7.6), at 0 ...
OFF = {
    "strategic": ["governance.effects.project_yield=0"],
    "management": ["governance.effects.consulting_effect=0"],
    "business": ["governance.effects.service_effect=0", "governance.effects.platform_transfer=0"],
    "information": ["governance.effects.codified_transfer=0", "governance.effects.match_candidates=0"],
}
#: ... and far from their defaults.
DOUBLED = {
    "strategic": ["governance.effects.project_yield=0.2", "governance.effects.project_rate=0.1"],
    "management": ["governance.effects.consulting_effect=0.3"],
    "business": ["governance.effects.service_effect=2", "governance.effects.platform_transfer=0.6"],
    "information": ["governance.effects.codified_transfer=0.6", "governance.effects.match_candidates=10"],
}
#: Outcomes that are money or count the contracts money buys; every other outcome is not money.
MONEY = {
    "kibs_revenue",
    "kibs_net_revenue",
    "bank_interest",
    "bank_defaults",
    "governance_cost",
    "kibs_fee_share",
    "partners_p_kibs",
    "partners_t_kibs",
}
#: Nothing reads capital: no finance, and capital far above the R&D and production thresholds.
NO_CAPITAL = ["model.finance=false", "cluster.capital=[40,40,40,40,40,50]"]


def rows(seeds, *overrides: str) -> dict[str, np.ndarray]:
    cfg = load_config([*FAST, *overrides])
    out = [cluster_model.simulate_replicate(cfg, int(s))[0] for s in seeds]
    return {k: np.array([r[k] for r in out], dtype=float) for k in out[0]}


def paired_t(a: np.ndarray, b: np.ndarray) -> float:
    d = b - a
    return float(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))


@pytest.fixture(scope="module")
def baseline():
    return rows(SEEDS)


@pytest.mark.parametrize("lever", LEVERS)
def test_money_at_zero_with_the_coefficients_kept_is_the_baseline(lever):
    base = rows(SEEDS[:4])
    zero = rows(SEEDS[:4], f"governance.{lever}=1", "governance.budget=0", *DOUBLED[lever])
    for name, values in zero.items():
        np.testing.assert_array_equal(values, base[name], err_msg=name)


@pytest.mark.parametrize("lever", LEVERS)
def test_coefficients_at_zero_with_the_money_kept_leave_only_its_accounting(lever):
    seeds = SEEDS[:6]
    base = rows(seeds, *NO_CAPITAL)
    money_only = rows(seeds, f"governance={lever}", *OFF[lever], *NO_CAPITAL)
    full = rows(seeds, f"governance={lever}", *NO_CAPITAL)
    assert np.all(money_only[f"money_at_work_{lever}"] > 0.9 * 600.0)  # the money is spent and booked
    assert np.all(money_only[f"delivered_{lever}"] == 0) and np.all(full[f"delivered_{lever}"] > 0)
    assert np.all(money_only["innovations_joint"] == 0) and np.all(money_only["matches_brokered"] == 0)
    assert np.all(np.abs(money_only["money_residual"]) < 1e-9 * money_only["money_costs_out"])
    for name in cluster_model.OUTCOMES:
        if name not in MONEY:
            np.testing.assert_array_equal(money_only[name], base[name], err_msg=name)
    assert not np.array_equal(full["hte_knowledge_mean"], base["hte_knowledge_mean"])


@pytest.mark.parametrize("lever", ["strategic", "management", "business"])
def test_effect_rises_with_the_budget_with_diminishing_returns_once_reach_is_full(lever, baseline):
    """Budgets 0.1 to 0.8 per HTE-month: the unit cost is 0.1, so every HTE is reached and more
    money deepens the treatment (grant per project, consulting per HTE, voucher per member)."""
    budgets = [0.1, 0.2, 0.4, 0.8]
    treated = [rows(SEEDS, f"governance={lever}", f"governance.budget={b}") for b in budgets]
    effects = [float(np.mean(t["innovations_total"] - baseline["innovations_total"])) for t in treated]
    slopes = np.diff(effects) / np.diff(budgets)
    assert effects[0] > 0 and np.all(slopes > 0), effects
    assert np.all(np.diff(slopes) < 0), slopes  # diminishing returns to money
    assert paired_t(treated[0]["innovations_total"], treated[-1]["innovations_total"]) > 3
    # the outputs say so: ever more money is spent beyond the unit cost of what is reached (a
    # little may find no KIBS with room and stay unspent)
    depth = [float(np.mean(t[f"money_depth_{lever}"])) for t in treated]
    assert np.all(np.diff(depth) > 0), depth
    assert all(np.all(t[f"money_unspent_{lever}"] < 0.05 * t[f"money_at_work_{lever}"]) for t in treated)


def test_the_information_platform_buys_matches_until_each_member_has_one_then_money_is_not_spent(
    baseline,
):
    """Upkeep first, then brokered matches (at most one per member and month): beyond that the
    money is not spent, so more of it changes nothing but the unspent account."""
    budgets = [0.05, 0.1, 0.2, 0.4]
    treated = [rows(SEEDS, "governance=information", f"governance.budget={b}") for b in budgets]
    density = [float(np.mean(t["network_density"] - baseline["network_density"])) for t in treated]
    assert 0 < density[0] < density[1] < density[2] and np.all(np.diff(np.diff(density[:3])) < 0)
    for name in cluster_model.OUTCOMES:
        if name != "governance_cost":
            np.testing.assert_array_equal(treated[3][name], treated[2][name], err_msg=name)
    extra = (0.4 - 0.2) * 100 * 120  # budget x HTEs x steps
    unspent = treated[3]["money_unspent_information"] - treated[2]["money_unspent_information"]
    np.testing.assert_allclose(unspent, extra, rtol=1e-9)


def test_strategic_effect_falls_when_the_resources_put_into_projects_fall(baseline):
    """Joint projects build knowledge from the grant and the partners' outlays, with
    diminishing returns: partners that put in nothing build less and launch fewer joint
    innovations, the route strategic works through (the grant alone still has an effect)."""
    full = rows(SEEDS, "governance=strategic")
    poor = rows(SEEDS, "governance=strategic", "governance.effects.project_outlay=0")
    assert paired_t(poor["innovations_joint"], full["innovations_joint"]) > 2.5
    assert paired_t(poor["delivered_strategic"], full["delivered_strategic"]) > 2.5
    assert paired_t(baseline["innovations_total"], poor["innovations_total"]) > 2.5


def test_information_does_nothing_without_intermediaries():
    """No intermediaries, no platform: the information scenario is the baseline, bit for bit,
    and its money is booked as not spent."""
    none = ["cluster.intermediaries=0"]
    base = rows(SEEDS[:4], *none)
    info = rows(SEEDS[:4], "governance=information", *none)
    for name in cluster_model.OUTCOMES:
        np.testing.assert_array_equal(info[name], base[name], err_msg=name)
    np.testing.assert_allclose(info["money_unspent_information"], 0.05 * 100 * 120, rtol=1e-9)
    with_them = rows(SEEDS[:4], "governance=information")
    assert np.all(with_them["matches_brokered"] > 0) and np.all(with_them["delivered_information"] > 0)


def test_every_policy_response_parameter_has_one_range_in_the_docs_and_the_uncertainty_space():
    """docs/ODD.md s.7.6's table and conf/uncertainty/policy.yaml name the same parameters with
    the same ranges; each default lies inside its range and both ends are valid settings."""
    from tests.conftest import REPO

    text = (REPO / "docs" / "ODD.md").read_text()
    section = text.split("#### Policy-response parameters", 1)[1].split("\n#", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            low, high = (float(x) for x in cells[3].split("–"))
            table[cells[0].strip("`")] = (float(cells[2]), low, high)
    config = load_config(["experiment=robustness", "uncertainty=policy"])
    space = {p.key: p for p in config.uncertainty.parameters}
    assert len(table) >= 25 and set(table) == set(space)
    for key, (default, low, high) in table.items():
        assert (space[key].low, space[key].high) == (low, high), key
        group, *path = key.split(".")
        value = getattr(config, group)
        for part in path:
            value = getattr(value, part)
        assert value == pytest.approx(default) and low <= value <= high, key
        check_parameter(config, key, space[key])  # both ends are valid settings (else ConfigError)
