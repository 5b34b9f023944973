"""The cluster model's distribution and share outcomes for calibration (docs/ODD.md s.9):
the tail of innovations per firm, young firms' exits, the KIBS share of HTEs' spending.
Statistics recover planted values; the bookkeeping behind them agrees with the Python twin
and with the model's other counts; each reacts as its mechanism says."""

from __future__ import annotations

import numpy as np
import pytest
from kibs_mc.kernels import kibs as kernel
from scipy import stats

from kibs_mc.models.kibs import replicate as cluster_model
from tests.test_kibs_model import ALL_LEVERS, TURBULENT, config, paired_t, run_both


@pytest.mark.parametrize("alpha", [1.7, 2.0, 2.4])
def test_tail_exponent_recovers_a_planted_discrete_power_law(alpha):
    """400 firms with zeta(alpha) innovation counts (x >= 1) and 100 without: the estimate is
    within 0.25 of alpha in each of 5 samples (the MLE's sd at n = 400 is (alpha - 1)/20)."""
    rng = np.random.default_rng(11)
    for _ in range(5):
        counts = np.concatenate([stats.zipf.rvs(alpha, size=400, random_state=rng), np.zeros(100, np.int64)])
        estimate, xmin = cluster_model.power_law_exponent(counts)
        assert abs(estimate - alpha) < 0.25, (estimate, xmin)
        assert (counts >= xmin).sum() >= cluster_model.TAIL_MIN


def test_tail_exponent_tells_a_thin_tail_and_refuses_too_few_innovators():
    rng = np.random.default_rng(3)
    poisson = rng.poisson(7.0, size=400)  # every firm alike: no heavy tail
    assert cluster_model.power_law_exponent(poisson)[0] > 5.0
    few = np.concatenate([np.arange(1, cluster_model.TAIL_MIN), np.zeros(300, np.int64)])
    assert np.isnan(cluster_model.power_law_exponent(few)[0])  # 49 innovators
    assert np.isnan(cluster_model.power_law_exponent(np.full(200, 3))[0])  # one count only


def test_top_share_of_planted_counts():
    counts = np.array([9] * 10 + [1] * 90)  # the top 10 firms make 90 of 180
    assert cluster_model.top_share(counts) == pytest.approx(0.5)
    assert cluster_model.top_share(np.ones(95)) == pytest.approx(10 / 95)  # ceil(9.5) firms
    assert np.isnan(cluster_model.top_share(np.zeros(50)))


def test_per_firm_counts_add_up_to_the_total_over_exits_and_entries():
    """Every HTE that existed is counted once (initial HTEs and entrants), and its innovations
    add up to innovations_total: an entrant starts from zero, an exited firm is kept."""
    cfg = config(*ALL_LEVERS, *TURBULENT, "model.steps=40")
    result = cluster_model.run(cfg, 5)
    counts = cluster_model.innovation_counts(result.state)
    tally = result.state.work.tally
    assert tally[kernel.HTE_EXITS] > 50
    hte = result.state.agents.agent_type == kernel.HTE
    entrants = tally[kernel.HTE_EXITS] - int((~result.state.agents.alive[hte]).sum())
    assert counts.size == cfg.cluster.hte + entrants
    assert counts.sum() == result.innovations_cumulative[-1]


def test_young_exit_bookkeeping_matches_the_twin_past_the_two_year_window():
    """40 months, turbulent: entrants of months 1-16 are observed for two full years; with a
    larger start-up capital some of them survive those two years."""
    cluster, twin, _, _ = run_both([*ALL_LEVERS, *TURBULENT, "model.startup_capital=25"], seed=7, steps=40)
    tally = cluster.work.tally
    assert 0 < tally[kernel.YOUNG_EXITS] < tally[kernel.YOUNG_ENTRANTS]
    assert [tally[kernel.YOUNG_ENTRANTS], tally[kernel.YOUNG_EXITS]] == [
        twin.young_entrants,
        twin.young_exits,
    ]
    assert cluster.work.born.tolist() == twin.born


@pytest.mark.parametrize(
    "overrides, observed",
    [(["model.startup_prob=0"], False), (["model.steps=24"], False), (["model.steps=48"], True)],
    ids=["no-entry", "no-entrant-observed-for-24-months", "48-months"],
)
def test_young_exit_share_is_nan_without_fully_observed_entrants(overrides, observed):
    row, _ = cluster_model.simulate_replicate(config("model.fixed_cost=0.5", *overrides), 1)
    assert row["hte_exits"] > 0
    assert np.isnan(row["hte_young_exit_share"]) != observed


def test_innovator_share_counts_each_firm_that_existed_once_as_the_twin_does():
    """40 turbulent months (many exits and entrants): the kernel's share of HTEs with an
    innovation equals the one counted from the Python twin's living firms and its record of
    exited firms' innovations; with a firm's last innovation lost to its exit it would not."""
    cluster, twin, _, _ = run_both([*ALL_LEVERS, *TURBULENT], seed=7, steps=40)
    assert sum(twin.exited_innovations.values()) > 10
    hte = [i for i in range(len(twin.t)) if twin.alive[i] and twin.t[i] == kernel.HTE]
    firms = len(hte) + sum(twin.exited_innovations.values())
    innovators = sum(twin.innov[i] > 0 for i in hte) + sum(
        n for count, n in twin.exited_innovations.items() if count > 0
    )
    share = cluster_model.innovator_share(cluster)
    assert 0.0 < share < 1.0
    assert share == pytest.approx(innovators / firms)


def shares(outcome: str, seeds, *overrides: str) -> np.ndarray:
    cfg = config(*overrides)
    return np.array([cluster_model.simulate_replicate(cfg, s)[0][outcome] for s in seeds])


def test_young_exit_share_rises_with_the_fixed_cost():
    """Entrants start with less capital than incumbents: a higher fixed cost kills more of
    them within two years (paired seeds)."""
    low = shares("hte_young_exit_share", range(1, 7))
    high = shares("hte_young_exit_share", range(1, 7), "model.fixed_cost=0.25")
    assert 0.0 < np.mean(low) < 1.0
    assert paired_t(low, high) > 2.5


def test_kibs_fee_share_counts_only_kibs_services_and_rises_with_the_business_interface():
    base = shares("kibs_fee_share", range(1, 5), "model.steps=60")
    business = shares("kibs_fee_share", range(1, 5), "model.steps=60", "governance=business")
    free = shares("kibs_fee_share", [1], "model.steps=60", "model.service_fee=0")
    assert np.all((0.0 < base) & (base < 0.5))
    assert paired_t(base, business) > 2.5
    assert free[0] == 0.0  # without governance, fees are the only KIBS service HTEs buy


def test_innovator_share_rises_with_the_information_platform_in_a_year():
    """The information interface (every agent a member, the default budget) brokers ties and
    opens the codified pool: more HTEs make an innovation in the first year (paired seeds), as
    a cluster programme that stimulated cooperation did (docs/calibration.md)."""
    base = shares("hte_innovator_share", range(1, 9), "model.steps=12")
    platform = shares("hte_innovator_share", range(1, 9), "model.steps=12", "governance=information")
    assert np.all((0.0 < base) & (base < 1.0))
    assert paired_t(base, platform) > 2.5
