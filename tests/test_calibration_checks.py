"""Checks of a calibration that can fail (docs/calibration.md): the predictive check's verdicts
and proper score on planted posteriors, identification, policy-response targets simulated on
common seeds, and simulation-based calibration's coverage (planted, then one tiny real run).

Kept small: planted draws for the statistics, the small cluster over 12-24 steps for the model.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import yaml

from kibs_mc.analysis.calibration import (
    COVERAGE_RANGE,
    MIN_ESS,
    calibration_summary,
    check_verdict,
    coverage_rule,
    coverage_table,
    crps,
    parameter_table,
    ppc_table,
    report_section,
    weighted_cdf,
)
from kibs_mc.analysis.targets import Target, parse_targets
from kibs_mc.config import CONF_DIR, UncertainParameter, load_config
from kibs_mc.errors import ConfigError
from kibs_mc.experiments.calibrate import Calibrate, Found, Simulator, _ess, resolve_targets
from kibs_mc.experiments.posterior import POINT_FILE
from kibs_mc.models import get_model


def _draws(values: dict[str, np.ndarray]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"draw": i, "target": name, "value": float(v)}
            for name, x in values.items()
            for i, v in enumerate(x)
        ]
    )


def test_the_predictive_check_fails_a_wide_posterior_that_covers_the_observed_value():
    """Three planted predictive distributions around the same observed value (10, scale 1):
    a good posterior (sd 0.5 scales), an unconverged one (sd 3 scales, centred: it 'covers'
    the value) and a biased one (sd 0.5, 3 scales off). Only the good one is reproduced; the
    wide one is reported as too wide, not as reproduced; the CRPS ranks them."""
    rng = np.random.default_rng(1)
    target = [Target("y", "y", 10.0, 1.0)]
    good = ppc_table(_draws({"y": rng.normal(10.0, 0.5, 400)}), target, 0.9).row(0, named=True)
    wide = ppc_table(_draws({"y": rng.normal(10.0, 3.0, 400)}), target, 0.9).row(0, named=True)
    biased = ppc_table(_draws({"y": rng.normal(13.0, 0.5, 400)}), target, 0.9).row(0, named=True)
    assert good["verdict"] == "reproduced" and good["reproduced"] and good["width"] < 2
    assert wide["inside"] and wide["verdict"] == "too wide" and not wide["reproduced"] and wide["width"] > 8
    assert not biased["inside"] and biased["verdict"] == "not reproduced" and biased["z"] > 2.5
    assert good["crps"] < wide["crps"] and good["crps"] < biased["crps"]
    # the same wide posterior passes once the stated width allows it: the threshold decides
    assert ppc_table(_draws({"y": rng.normal(10.0, 3.0, 400)}), target, 0.9, max_width=20)["reproduced"][0]


def test_crps_is_the_proper_score_of_an_ensemble():
    """The sorted-draws formula equals E|X - y| - E|X - X'|/2 by brute force, and for a normal
    ensemble it approaches the closed form sigma (z(2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi))
    (Gneiting & Raftery 2007, eq. 5 of the normal case)."""
    from scipy.stats import norm

    rng = np.random.default_rng(2)
    x = rng.normal(size=200)
    brute = np.mean(np.abs(x - 0.3)) - 0.5 * np.mean(np.abs(x[:, None] - x[None, :]))
    assert crps(x, 0.3) == pytest.approx(brute, rel=1e-12)
    big = rng.normal(size=200_000)
    z = 0.7
    closed = z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi)
    assert crps(big, z) == pytest.approx(closed, abs=0.005)
    assert crps(np.full(10, 2.0), 2.0) == 0.0


def _posterior(values: dict[str, np.ndarray]) -> pl.DataFrame:
    n = len(next(iter(values.values())))
    return pl.DataFrame({**values, "weight": np.full(n, 1.0 / n), "generation": np.zeros(n, dtype=np.int64)})


def test_a_parameter_barely_narrower_than_its_prior_is_not_identified():
    """A planted posterior: `a` 10x narrower than its prior, `b` spread over 80% of its prior
    (1.25x narrower). `b` is not identified in parameters.parquet's column, the terminal's
    lines and the report's sentence; it does not fail the predictive check by itself."""
    rng = np.random.default_rng(3)
    params = [UncertainParameter("model.a", 0.0, 1.0), UncertainParameter("model.b", 0.0, 1.0)]
    posterior = _posterior({"model.a": rng.normal(0.5, 0.027, 2000), "model.b": rng.uniform(0.1, 0.9, 2000)})
    table = parameter_table(posterior, params, 0.9, {})
    flags = dict(zip(table["parameter"], table["identified"], strict=True))
    assert flags == {"model.a": True, "model.b": False}
    assert 1.1 < table["narrowing"][1] < 1.4 and table["narrowing"][0] > 8
    ppc = ppc_table(_draws({"y": rng.normal(10.0, 0.5, 200)}), [Target("y", "y", 10.0, 1.0)], 0.9)
    generations = pl.DataFrame({"generation": [0], "epsilon": [1.0], "samples": [10], "ess": [9.0]})
    section, lines = report_section(table, ppc, generations, 0.9)
    assert any("model.b" in line and "NOT IDENTIFIED" in line for line in lines)
    assert not any("model.a" in line and "NOT IDENTIFIED" in line for line in lines)
    assert "Not identified (less than 2x narrower than the prior): `model.b`" in section
    assert check_verdict(table, ppc) == (True, [])


def test_the_map_of_fewer_particles_than_parameters_is_the_heaviest_particle():
    """A last generation of 6 particles of 12 parameters (a KDE's covariance would be singular):
    the MAP is the particle of largest weight, not an error."""
    rng = np.random.default_rng(5)
    params = [UncertainParameter(f"model.p{j}", 0.0, 1.0) for j in range(12)]
    posterior = _posterior({p.key: rng.uniform(0, 1, 6) for p in params})
    weights = np.array([0.1, 0.1, 0.4, 0.2, 0.1, 0.1])
    posterior = posterior.with_columns(pl.Series("weight", weights))
    table = parameter_table(posterior, params, 0.9, {})
    assert table["map"].to_list() == [posterior[p.key][2] for p in params]


def test_a_check_undefined_at_a_truth_is_left_out_of_its_target_file(tmp_path):
    """Simulation-based calibration: a held-out statistic that is NaN at a truth (no entrant
    observed for two years, say) is left out of that truth's target file, which stays valid;
    a fitted one is kept."""
    from kibs_mc.experiments.sbc import _target_file

    targets = [Target("a", "a", 1.0, 1.0), Target("b", "b", 1.0, 1.0, fit=False)]
    path = _target_file(targets, {"a": 2.0, "b": float("nan")}, tmp_path / "t.yaml")
    parsed = parse_targets(yaml.safe_load(path.read_text()), str(path))
    assert [(t.name, t.observed) for t in parsed] == [("a", 2.0)]


@pytest.mark.parametrize(
    "item, key",
    [
        ({"effect": "relative"}, "targets[0].effect"),  # an effect needs a scenario
        ({"scenario": "management"}, "targets[0].effect"),
        ({"scenario": "management", "effect": "ratio"}, "targets[0].effect"),
        ({"scenario": "baseline", "effect": "difference"}, "targets[0].scenario"),
        ({"scenario": "management", "effect": "difference", "intensity": {"seed": 3}}, "intensity.seed"),
        (
            {"scenario": "management", "effect": "difference", "intensity": {"model.steps": "x"}},
            "model.steps",
        ),
        ({"scenario": "management", "effect": "difference", "replicates": 0}, "targets[0].replicates"),
    ],
)
def test_malformed_policy_response_targets_name_the_field(item, key):
    text = {"targets": [{"name": "a", "statistic": "hte_exits", "observed": 1, "scale": 1, **item}]}
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_targets(text, "f.yaml")


def _target_file(tmp_path, *items: dict) -> str:
    path = tmp_path / "targets.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "targets": list(items)}))
    return str(path)


def test_a_policy_response_target_is_a_paired_effect_on_common_seeds(tmp_path):
    """A paired target simulates the scenario and the baseline on the particle's seeds, both at
    the stated intensity: management with no budget is the baseline bit for bit, so its effect
    is exactly 0; with a budget, the effect equals the one computed from the two arms by hand
    (relative, and per unit of extra money); `level` is the scenario's own statistic; the
    particle's values reach both arms."""
    common = {"statistic": "innovations_per_hte", "observed": 0.1, "scale": 0.05, "source": "test"}
    spec = _target_file(
        tmp_path,
        {
            "name": "none",
            "scenario": "management",
            "effect": "difference",
            "intensity": {"governance.budget": 0.0},
            **common,
        },
        {
            "name": "rel",
            "scenario": "management",
            "effect": "relative",
            "intensity": {"governance.budget": 0.1},
            **common,
        },
        {
            "name": "money",
            "scenario": "management",
            "effect": "per_money",
            "intensity": {"governance.budget": 0.1},
            **common,
        },
        {"name": "level", "statistic": "hte_exits", "observed": 1.0, "scale": 1.0, "fit": False},
        {
            "name": "spent",
            "scenario": "management",
            "effect": "level",
            "intensity": {"governance.budget": 0.1},
            **common,
        },
    )
    overrides = ["experiment=calibrate", "cluster=small", "model.steps=12", f"calibration.targets={spec}"]
    config = load_config(overrides)
    targets, arms = resolve_targets(config, overrides)
    # management at budget 0 and 0.1, and one baseline (it spends nothing, so its budget is moot)
    assert sorted(k for k, _ in arms) == [
        ("governance=baseline",),
        ("governance=management", "governance.budget=0.0"),
        ("governance=management", "governance.budget=0.1"),
    ]
    sim = Simulator(config, (), tuple(targets), 2, tuple(arms))
    got = sim.statistics({"model.transfer_efficiency": 0.3}, [11, 12])
    assert got["none"] == 0.0
    model = get_model("kibs")
    base_cfg = load_config([*overrides, "governance.budget=0.1", "model.transfer_efficiency=0.3"])
    scen_cfg = load_config(
        [*overrides, "governance=management", "governance.budget=0.1", "model.transfer_efficiency=0.3"]
    )
    base = [model.simulate(base_cfg, s)[0] for s in (11, 12)]
    scen = [model.simulate(scen_cfg, s)[0] for s in (11, 12)]
    b, m = (
        np.mean([r["innovations_per_hte"] for r in base]),
        np.mean([r["innovations_per_hte"] for r in scen]),
    )
    cost = np.mean([r["governance_cost"] for r in scen]) - np.mean([r["governance_cost"] for r in base])
    assert got["rel"] == pytest.approx(m / b - 1, rel=1e-12) and got["rel"] != 0
    assert got["money"] == pytest.approx((m - b) / cost, rel=1e-12) and cost > 0
    assert got["spent"] == pytest.approx(m, rel=1e-12)  # level: the scenario's own statistic
    plain = load_config([*overrides, "model.transfer_efficiency=0.3"])
    assert got["level"] == np.mean([model.simulate(plain, s)[0]["hte_exits"] for s in (11, 12)])


def test_a_policy_target_may_not_set_a_calibrated_parameter_or_name_an_unknown_scenario(tmp_path):
    common = {"name": "p", "statistic": "hte_exits", "observed": 0.1, "scale": 0.05, "effect": "difference"}
    params = "calibration.parameters=[{key: governance.budget, low: 0.01, high: 0.2}]"
    spec = _target_file(
        tmp_path, {**common, "scenario": "management", "intensity": {"governance.budget": 0.1}}
    )
    overrides = ["experiment=calibrate", "model.steps=12", params, f"calibration.targets={spec}"]
    with pytest.raises(ConfigError, match=r"intensity\.governance\.budget"):
        resolve_targets(load_config(overrides), overrides)
    spec = _target_file(tmp_path, {**common, "scenario": "managment"})
    overrides = ["experiment=calibrate", "model.steps=12", f"calibration.targets={spec}"]
    with pytest.raises(ConfigError, match="managment") as info:
        resolve_targets(load_config(overrides), overrides)
    assert "management" in str(info.value)


def test_coverage_is_judged_with_its_interval_on_planted_posteriors():
    """Planted normal-normal problems (truth ~ N(0, 1), data ~ N(truth, 1), 200 truths): the exact
    posterior's 90% interval covers about 0.9 and is 'calibrated'; an overconfident one (half
    as wide) covers about 0.6 and is 'miscalibrated'; the posterior CDF at the truth is uniform
    for the exact posterior only. Clopper-Pearson intervals contain the coverage."""
    from scipy.stats import norm

    rng = np.random.default_rng(4)
    truth = rng.normal(size=200)
    data = truth + rng.normal(size=200)
    mean, sd = data / 2, np.sqrt(0.5)
    rows = []
    for name, scale in (("exact", 1.0), ("overconfident", 0.5)):
        low, high = mean - 1.645 * sd * scale, mean + 1.645 * sd * scale
        for i in range(200):
            rows.append(
                {
                    "truth_index": i,
                    "parameter": name,
                    "truth": truth[i],
                    "covered": bool(low[i] <= truth[i] <= high[i]),
                    "identified": True,
                    "posterior_cdf": float(norm.cdf(truth[i], mean[i], sd * scale)),
                }
            )
    table = {r["parameter"]: r for r in coverage_table(pl.DataFrame(rows)).iter_rows(named=True)}
    exact, over = table["exact"], table["overconfident"]
    assert COVERAGE_RANGE[0] <= exact["coverage"] <= COVERAGE_RANGE[1] and exact["verdict"] == "calibrated"
    assert over["coverage"] < 0.7 and over["verdict"] == "miscalibrated"
    for r in (exact, over):
        assert r["coverage_low"] < r["coverage"] < r["coverage_high"] and r["truths"] == 200
    assert exact["uniformity_p"] > 0.01 and over["uniformity_p"] < 0.001
    assert weighted_cdf(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0]), 2.0) == pytest.approx(0.375)


def test_simulation_based_calibration_runs_a_calibration_per_prior_truth(tmp_path):
    """scripts/sbc.py's engine on a tiny problem (3 truths, 12 particles, 1 generation): one
    calibration per truth, drawn from the prior, whose observed values are the targets
    simulated at that truth; sbc.parquet holds a row per truth with its interval, and a rerun
    keeps the finished truths."""
    from kibs_mc.experiments.sbc import RESULTS, draw_truths, simulation_based_calibration

    overrides = [
        "cluster=small",
        "model.steps=24",
        "executor=serial",
        "calibration.targets=recovery",
        "calibration.parameters=[{key: model.transfer_efficiency, low: 0.3, high: 0.8}]",
        "calibration.population=12",
        "calibration.generations=1",
        "calibration.ppc_draws=4",
        "calibration.min_acceptance=0",
    ]
    rows = simulation_based_calibration(overrides, 3, tmp_path)
    truths = draw_truths(load_config(["experiment=calibrate", *overrides]), 3)
    assert rows["truth"].to_list() == [t["model.transfer_efficiency"] for t in truths]
    assert len({round(t, 9) for t in rows["truth"]}) == 3 and all(0.3 <= t <= 0.8 for t in rows["truth"])
    assert (rows["interval_low"] < rows["interval_high"]).all()
    assert pl.read_parquet(tmp_path / RESULTS).equals(rows)
    # each truth's observed values are its own simulation, not the recovery file's zeros
    observed = [yaml.safe_load((tmp_path / f"targets_{i:03d}.yaml").read_text()) for i in range(3)]
    first = [o["targets"][0]["observed"] for o in observed]
    assert len(set(first)) == 3 and all(v > 0 for v in first)
    assert json.loads((tmp_path / "truth_001" / "truth.json").read_text()) == truths[1]
    stamp = (tmp_path / "truth_000" / "parameters.parquet").stat().st_mtime_ns
    assert simulation_based_calibration(overrides, 3, tmp_path).equals(rows)
    assert (tmp_path / "truth_000" / "parameters.parquet").stat().st_mtime_ns == stamp
    table = coverage_table(rows)
    assert table["truths"].to_list() == [3]


def test_the_defensive_proposal_bounds_every_importance_weight():
    """The ABC proposal mixes pyabc's kernel around the last generation with the prior: inside
    the prior's box its density is at least share / volume, so prior / proposal is at most
    1 / share however the last generation's weights are; outside it is the kernel's alone; a
    share of 1 draws every proposal from the prior's box."""
    import pandas as pd
    from pyabc import MultivariateNormalTransition

    from kibs_mc.experiments.proposal import DefensiveTransition

    bounds = {"p0": (0.0, 1.0), "p1": (-3.0, 0.0)}
    rng = np.random.default_rng(2)
    # a degenerate last generation: one particle carries almost all the weight
    particles = pd.DataFrame({"p0": rng.uniform(0.4, 0.5, 20), "p1": rng.uniform(-1.2, -1.0, 20)})
    weights = np.full(20, 1e-6)
    weights[0] = 1.0
    weights /= weights.sum()
    mixed, kernel = DefensiveTransition(bounds, share=0.2), MultivariateNormalTransition()
    mixed.fit(particles, weights)
    kernel.fit(particles, weights)
    probe = pd.DataFrame({"p0": rng.uniform(0, 1, 500), "p1": rng.uniform(-3, 0, 500)})
    prior = 1.0 / 3.0
    assert (prior / mixed.pdf(probe)).max() <= 1 / 0.2 + 1e-9
    assert kernel.pdf(probe).min() < prior * 1e-3  # the kernel alone: weights without bound
    outside = pd.DataFrame({"p0": [1.5], "p1": [-1.0]})
    assert mixed.pdf(outside)[0] == pytest.approx(0.8 * kernel.pdf(outside)[0])
    np.random.seed(1)  # noqa: NPY002 - pyabc draws from the global generator
    everywhere = DefensiveTransition(bounds, share=1.0)
    everywhere.fit(particles, weights)
    draws = everywhere.rvs(400)
    assert draws["p0"].between(0, 1).all() and draws["p1"].between(-3, 0).all()
    assert draws["p0"].std() > 0.25  # spread over the box, not around the heavy particle


def _generation(weights: np.ndarray) -> pl.DataFrame:
    """A one-generation table whose ESS is that of ``weights`` (the calibration's own _ess)."""
    return pl.DataFrame(
        {
            "generation": [3],
            "epsilon": [0.5],
            "samples": [400],
            "particles": [weights.size],
            "acceptance": [weights.size / 400],
            "ess": [_ess(weights)],
        }
    )


def test_the_check_fails_a_collapsed_posterior_however_good_its_predictions_look(tmp_path):
    """Two planted last generations of 100 particles with the same narrow, centred predictive
    draws (every target reproduced) and an identified parameter: one carried by a single
    particle's weight (ESS ~1.2, a collapsed importance sampler), one with even weights (ESS
    ~100). The collapsed one fails the check, and says why (its ESS against 20% of its
    particles) in calibration.json, the terminal's lines and the report's section and summary;
    the even one passes. With the gate off (min_ess 0) the collapsed one would pass: the gate
    alone decides."""
    rng = np.random.default_rng(7)
    params = [UncertainParameter("model.transfer_efficiency", 0.0, 1.0)]
    target = [Target("y", "y", 10.0, 1.0)]
    draws = _draws({"y": rng.normal(10.0, 0.5, 100)})
    ppc = ppc_table(draws, target, 0.9)
    collapsed = np.r_[0.9, np.full(99, 0.1 / 99)]
    even = rng.uniform(0.9, 1.1, 100)
    config = load_config(["experiment=calibrate", "cluster=small", "tracking=none"])
    assert config.calibration.min_ess == MIN_ESS == 0.2
    said = {}
    for name, w in (("collapsed", collapsed), ("even", even)):
        x = rng.normal(0.5, 0.02, 100)
        posterior = pl.DataFrame(
            {"model.transfer_efficiency": x, "weight": w / w.sum(), "generation": np.full(100, 3)}
        )
        generations = _generation(w)
        table = parameter_table(posterior, params, 0.9, {})
        assert table["identified"].all()
        found = Found(params, target, posterior, draws, generations)
        (tmp_path / name).mkdir()
        Calibrate._write_tables(config, tmp_path / name, found, {})
        said[name] = json.loads((tmp_path / name / POINT_FILE).read_text())["check"]
        section, lines = report_section(table, ppc, generations, 0.9, 4.0, MIN_ESS)
        summary = calibration_summary(
            table, ppc, 0.9, tmp_path / name, 4.0, generations=generations, min_ess=MIN_ESS
        )
        if name == "collapsed":
            assert generations["ess"][0] < 1.5
            assert check_verdict(table, ppc, generations, 0.0) == (True, [])  # the gate off
            ok, reasons = check_verdict(table, ppc, generations, MIN_ESS)
            assert not ok and len(reasons) == 1 and "effective sample size 1.2 of 100" in reasons[0]
            assert "below 20% of them (20)" in reasons[0]
            for text in (section, lines[-1], summary[1]):
                assert "FAILS" in text and "effective sample size 1.2 of 100" in text
        else:
            assert generations["ess"][0] > 95
            assert check_verdict(table, ppc, generations, MIN_ESS) == (True, [])
            for text in (section, lines[-1], summary[1]):
                assert "passes" in text and "FAILS" not in text
    assert said["collapsed"]["passes"] is False and said["collapsed"]["ess"] < 1.5
    assert "effective sample size" in said["collapsed"]["failures"][0]
    assert said["collapsed"]["min_ess"] == 0.2
    assert said["even"]["passes"] is True and said["even"]["failures"] == [] and said["even"]["ess"] > 95


def _toy_sbc(shrink: float, truths: int = 100) -> pl.DataFrame:
    """Simulation-based calibration of a toy simulator: two parameters with uniform priors on
    [0, 1], `model.a` observed through y ~ N(a, 0.05), `model.b` not observed at all. Each
    truth's posterior is 400 draws of its exact posterior (a normal around y truncated to the
    prior; b's prior), as a converged ABC generation would hold; ``shrink`` < 1 plants an
    overconfident posterior (its sd times ``shrink``). Rows through the same functions as
    scripts/sbc.py: parameter_table, posterior_rows."""
    from scipy.stats import truncnorm

    from kibs_mc.experiments.sbc import posterior_rows

    rng = np.random.default_rng(11)
    params = [UncertainParameter("model.a", 0.0, 1.0), UncertainParameter("model.b", 0.0, 1.0)]
    rows = []
    for i in range(truths):
        truth = {"model.a": float(rng.uniform()), "model.b": float(rng.uniform())}
        y, sd = truth["model.a"] + 0.05 * rng.normal(), 0.05 * shrink
        a = truncnorm.rvs(-y / sd, (1 - y) / sd, loc=y, scale=sd, size=400, random_state=rng)
        posterior = pl.DataFrame(
            {
                "model.a": a,
                "model.b": rng.uniform(size=400),
                "weight": np.full(400, 1 / 400),
                "generation": np.zeros(400, dtype=np.int64),
            }
        )
        rows += posterior_rows(i, truth, parameter_table(posterior, params, 0.9, {}), posterior)
    return pl.DataFrame(rows)


def test_the_coverage_rule_fails_an_overconfident_posterior_of_an_identified_parameter():
    """SBC's rule (every identified parameter covers its truth in [0.80, 0.97] of the truths)
    on a toy simulator over 100 prior truths: with the exact posterior, `model.a` (identified)
    covers within the range and the rule holds; with a posterior three times too narrow it
    covers far less and the rule fails, naming `model.a` and its coverage. `model.b`, which no
    data inform, is not identified either way and is left out of the rule (its interval is the
    prior's whatever it covers)."""
    exact = coverage_table(_toy_sbc(1.0))
    over = coverage_table(_toy_sbc(1 / 3))
    for table in (exact, over):
        verdicts = dict(zip(table["parameter"], table["verdict"], strict=True))
        assert verdicts["model.b"] == "not identified"
    a = exact.filter(pl.col("parameter") == "model.a").row(0, named=True)
    assert COVERAGE_RANGE[0] <= a["coverage"] <= COVERAGE_RANGE[1] and a["identified_share"] == 1.0
    assert coverage_rule(exact) == (True, [], ["model.a"])
    passes, failures, tested = coverage_rule(over)
    low = over.filter(pl.col("parameter") == "model.a")["coverage"][0]
    assert not passes and tested == ["model.a"] and low < 0.6
    assert len(failures) == 1 and failures[0].startswith(f"`model.a` covers the truth in {low:.2f} of 100")
    # no identified parameter: the rule has nothing to test and says so by an empty list
    assert coverage_rule(exact.filter(pl.col("parameter") == "model.b")) == (True, [], [])


def _toy_table(rng: np.random.Generator, n: int, noise: float) -> pl.DataFrame:
    """Prior draws of the toy simulator (`model.a`, `model.b` uniform on [0, 1]; y ~ N(a, noise))."""
    a, b = rng.uniform(size=n), rng.uniform(size=n)
    return pl.DataFrame(
        {"row": np.arange(n), "model.a": a, "model.b": b, "y": a + noise * rng.normal(size=n)}
    )


@pytest.mark.parametrize("adjust", [False, True], ids=["rejection", "regression-adjusted"])
def test_the_amortised_sbc_passes_a_near_exact_posterior_and_fails_an_overconfident_one(adjust):
    """The amortised path of scripts/sbc.py (one reference table, a posterior per truth by
    rejection at a tolerance, optionally regression-adjusted) on the toy simulator of the SBC
    tests: 8 000 prior draws with y ~ N(a, 0.05) and 100 fresh truths. Truths simulated as the
    table was: `model.a` is identified and covers within [0.80, 0.97], the rule holds; truths
    observed three times as noisily as the table simulates (a planted overconfident posterior:
    the reference model is surer than the data) cover far less and the rule fails naming
    `model.a`. `model.b`, which y does not inform, is not identified and is left out. A truth
    left out of the table by its row is not among its own accepted draws."""
    from kibs_mc.experiments.sbc import Rejection, amortised_rows

    rng = np.random.default_rng(5)
    params = [UncertainParameter("model.a", 0.0, 1.0), UncertainParameter("model.b", 0.0, 1.0)]
    target = [Target("y", "y", 0.0, 0.05)]
    table = _toy_table(rng, 8_000, 0.05)
    how = Rejection(epsilon=0.5, accept=20, adjust=adjust)  # within half a scale: ~400 rows
    verdicts = {}
    for name, noise in (("near exact", 0.05), ("overconfident", 0.15)):
        truths = _toy_table(rng, 100, noise).drop("row")
        rows = amortised_rows(params, table, target, truths, how)
        if noise == 0.05:
            assert rows["accepted"].min() > 150 and rows["tolerance"].max() <= 0.5
        coverage = coverage_table(rows)
        by = {r["parameter"]: r for r in coverage.iter_rows(named=True)}
        assert by["model.b"]["verdict"] == "not identified"
        verdicts[name] = (by["model.a"], coverage_rule(coverage))
    a, (passes, failures, tested) = verdicts["near exact"]
    assert COVERAGE_RANGE[0] <= a["coverage"] <= COVERAGE_RANGE[1] and a["identified_share"] == 1.0
    assert passes and tested == ["model.a"] and failures == []
    a, (passes, failures, tested) = verdicts["overconfident"]
    assert a["coverage"] < 0.6 and not passes and failures[0].startswith("`model.a` covers the truth in")
    # leave-one-out: a truth that is row 7 of the table is not its own nearest draw
    own = amortised_rows(params, table, target, table.slice(7, 1), Rejection(epsilon=None, accept=1))
    alone = table.filter(pl.col("row") != 7)
    nearest = alone.row(int(np.argmin(np.abs(alone["y"].to_numpy() - table["y"][7]))), named=True)
    assert own.filter(pl.col("parameter") == "model.a")["interval_low"][0] == pytest.approx(
        nearest["model.a"]
    )


def test_the_reference_table_is_the_calibrations_own_simulation_and_grows_without_recomputing(tmp_path):
    """scripts/sbc.py --amortised's reference table on a tiny calibration (small cluster, 24
    months, the recovery targets): each row is a prior draw with the fitted targets simulated as
    a particle simulates them (Simulator.statistics at its values and seeds); growing the table
    from 4 to 7 rows keeps the finished part files and gives the same rows as a fresh table of
    7; a table of other settings in the same folder is refused. The amortised SBC reads it with
    each truth left out of the table."""
    from kibs_mc.errors import UserError
    from kibs_mc.experiments.sbc import (
        AMORTISED,
        TABLE,
        Rejection,
        _row_draw,
        amortised_sbc,
        reference_table,
    )

    overrides = [
        "experiment=calibrate",
        "cluster=small",
        "model.steps=24",
        "executor=serial",
        "calibration.targets=recovery",
        "calibration.parameters=[{key: model.transfer_efficiency, low: 0.3, high: 0.8}]",
    ]
    config = load_config(overrides)
    first = reference_table(config, overrides, 4, tmp_path / "a")
    parts = sorted((tmp_path / "a" / TABLE).glob("part_*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in parts]
    grown = reference_table(config, overrides, 7, tmp_path / "a")
    assert [f.stat().st_mtime_ns for f in parts] == stamps and grown.head(4).equals(first)
    assert grown.equals(reference_table(config, overrides, 7, tmp_path / "b"))
    targets, arms = resolve_targets(config, overrides)
    fitted = tuple(t for t in targets if t.fit)
    params = tuple(config.calibration.parameters)
    simulator = Simulator(config, params, fitted, 1, tuple(arms))
    values, seeds = _row_draw(config.seed, 5, params, simulator.seeds_needed)
    row = grown.row(5, named=True)
    assert (
        0.3 <= values["model.transfer_efficiency"] <= 0.8
        and row["model.transfer_efficiency"] == values["model.transfer_efficiency"]
    )
    assert {t.name: row[t.name] for t in fitted} == simulator.statistics(values, seeds)
    with pytest.raises(UserError, match="other parameters, targets or settings"):
        reference_table(load_config([*overrides, "model.steps=36"]), overrides, 7, tmp_path / "a")
    rows = amortised_sbc(overrides[1:], 7, 3, tmp_path / "a", Rejection(accept=3))
    assert rows["truth"].to_list() == grown["model.transfer_efficiency"].head(3).to_list()
    assert (rows["accepted"] == 3).all() and pl.read_parquet(tmp_path / "a" / AMORTISED).equals(rows)


def test_a_reference_table_with_a_gap_in_its_parts_resumes_without_overwriting_one(tmp_path, monkeypatch):
    """An interrupted table's parts need not be contiguous (chunks finish in any order): resuming
    one whose middle part is missing keeps the later part and ends equal to a fresh table."""
    from kibs_mc.experiments import sbc

    monkeypatch.setattr(sbc, "CHUNK", 2)
    overrides = [
        "experiment=calibrate",
        "cluster=small",
        "model.steps=12",
        "executor=serial",
        "calibration.targets=recovery",
        "calibration.parameters=[{key: model.transfer_efficiency, low: 0.3, high: 0.8}]",
    ]
    config = load_config(overrides)
    sbc.reference_table(config, overrides, 6, tmp_path / "a")
    folder = tmp_path / "a" / sbc.TABLE
    (folder / "part_00001.parquet").unlink()  # rows 2-3 were in flight when the run stopped
    later = (folder / "part_00002.parquet").stat().st_mtime_ns
    resumed = sbc.reference_table(config, overrides, 8, tmp_path / "a")
    assert (folder / "part_00002.parquet").stat().st_mtime_ns == later
    assert resumed.equals(sbc.reference_table(config, overrides, 8, tmp_path / "b"))


def test_a_reference_table_of_more_fitted_targets_is_reused_for_a_calibration_holding_some_out(tmp_path):
    """A calibration that holds out a target it once fitted reads the same prior draws and seeds:
    its reference table is the one recorded with every target fitted (descriptive fields such as
    a note may differ). Growing it simulates the held-out statistic as before (equal to a fresh
    table of the first file), and the finished parts are kept; a file with a fitted target the
    table lacks, or with another observed value, is refused."""
    from kibs_mc.errors import UserError
    from kibs_mc.experiments.sbc import TABLE, reference_table

    base = [
        "experiment=calibrate",
        "cluster=small",
        "model.steps=12",
        "executor=serial",
        "calibration.parameters=[{key: model.transfer_efficiency, low: 0.3, high: 0.8}]",
    ]
    full = [*base, "calibration.targets=recovery"]
    reference_table(load_config(full), full, 4, tmp_path / "a")
    parts = sorted((tmp_path / "a" / TABLE).glob("part_*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in parts]
    text = (CONF_DIR / "targets" / "recovery.yaml").read_text()
    held = text.replace(
        "{name: knowledge_gini, statistic: hte_knowledge_gini, observed: 0, scale: 1, source: synthetic}",
        "{name: knowledge_gini, statistic: hte_knowledge_gini, observed: 0, scale: 1, source: synthetic,"
        " fit: false, note: held out now}",
    )
    assert held != text
    (tmp_path / "held.yaml").write_text(held)
    fewer = [*base, f"calibration.targets={tmp_path / 'held.yaml'}"]
    grown = reference_table(load_config(fewer), fewer, 6, tmp_path / "a")
    assert [f.stat().st_mtime_ns for f in parts] == stamps
    assert grown.equals(reference_table(load_config(full), full, 6, tmp_path / "b"))
    assert grown["knowledge_gini"].is_not_nan().all()
    for name, changed in (
        (
            "extra",
            text.rstrip()
            + "\n  - {name: degree, statistic: network_density, observed: 0, scale: 1, source: synthetic}\n",
        ),
        (
            "observed",
            held.replace("innovations_per_hte, observed: 0,", "innovations_per_hte, observed: 0.5,"),
        ),
    ):
        (tmp_path / f"{name}.yaml").write_text(changed)
        other = [*base, f"calibration.targets={tmp_path / f'{name}.yaml'}"]
        with pytest.raises(UserError, match="other parameters, targets or settings"):
            reference_table(load_config(other), other, 6, tmp_path / "a")


def test_leaving_one_target_out_finds_the_informative_target_and_whether_the_others_predict_it():
    """The leave-one-target-out analysis of a reference table (scripts/sbc.py --leave-one-out) on
    a toy simulator with a planted truth: y1 ~ N(a, 0.05) informs `model.a`; y2 = y1 plus noise
    of sd 0.05 is a second reading of it; y3 ~ N(0, 1) is pure noise, informing nothing. Left
    out, y3 costs no narrowing and y1 little (y2 still reads `model.a`); `model.b` is never
    read. The others predict y2 observed where y1 is (reproduced), not a y2 observed far from
    it (not reproduced)."""
    from kibs_mc.experiments.sbc import Rejection, leave_one_target_out

    rng = np.random.default_rng(11)
    n = 20_000
    a, b = rng.uniform(size=n), rng.uniform(size=n)
    y1 = a + 0.05 * rng.normal(size=n)
    table = pl.DataFrame(
        {
            "row": np.arange(n),
            "model.a": a,
            "model.b": b,
            "y1": y1,
            "y2": y1 + 0.05 * rng.normal(size=n),
            "y3": rng.normal(size=n),
        }
    )
    params = [UncertainParameter("model.a", 0.0, 1.0), UncertainParameter("model.b", 0.0, 1.0)]

    def left_out(y2: float) -> dict:
        targets = [Target("y1", "y1", 0.4, 0.05), Target("y2", "y2", y2, 0.07), Target("y3", "y3", 0.0, 1.0)]
        rows = leave_one_target_out(params, table, targets, Rejection(accept=300))
        assert (rows["accepted"] == 300).all()
        return {(r["left_out"], r["parameter"]): r for r in rows.iter_rows(named=True)}

    at = left_out(0.4)
    with_all = at[("y3", "model.a")]["narrowing_all"]
    assert with_all > 3  # every target: `model.a` read closely
    assert at[("y3", "model.a")]["narrowing_without"] > 0.8 * with_all  # the noise told nothing
    assert at[("y1", "model.a")]["narrowing_without"] > 2  # y2 still reads `model.a`
    assert all(at[(t, "model.b")]["narrowing_without"] < 1.5 for t in ("y1", "y2", "y3"))
    y2 = at[("y2", "model.a")]
    assert y2["verdict"] == "reproduced" and abs(y2["median"] - 0.4) < 0.05
    far = left_out(0.9)[("y2", "model.a")]
    assert far["verdict"] == "not reproduced" and far["z"] < -3


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--leave-one-out"], "--leave-one-out: allowed: with --amortised N"),
        (["--amortised", "100", "--leave-one-out", "--adjust"], "--adjust: allowed: without --leave-one-out"),
        (["--amortised", "20", "--truths", "30"], "--amortised=20: allowed: more rows than --truths (30)"),
    ],
)
def test_scripts_sbc_refuses_options_that_do_not_go_together_in_one_line(argv, says):
    """scripts/sbc.py checks its options before any simulation: exit 2 and one line naming the
    option, the value and what is allowed."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sbc.py"), *argv], capture_output=True, text=True
    )
    assert (
        out.returncode == 2
        and out.stderr.strip().startswith(says)
        and len(out.stderr.strip().splitlines()) == 1
    )
