"""Sweep factors from the uncertainty space, sampled on their scales: log
factors uniform in log, integer factors whole and equally often, Sobol indices of a planted
function recovered through the sweep's own sampling and analysis, bad spaces refused."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from kibs_mc.analysis.sensitivity import point_scenarios, points_frame, sensitivity
from kibs_mc.config import SweepConfig, SweepFactor, load_config
from kibs_mc.errors import ConfigError
from kibs_mc.experiments import get_kind
from kibs_mc.experiments.pipeline import run_experiment

SEED = 20261128


def scenario_values(sweep: SweepConfig, seed: int = SEED) -> tuple[list[str], dict[str, np.ndarray]]:
    """Each point's scenario name and, per factor, the values its overrides set (what the
    simulation of that scenario reads)."""
    points = point_scenarios(sweep, seed)
    values: dict[str, list[float]] = {f.key: [] for f in sweep.factors}
    for _, overrides in points:
        for text in overrides:
            key, _, value = text.partition("=")
            values[key].append(float(value))
    return [name for name, _ in points], {k: np.array(v) for k, v in values.items()}


@pytest.mark.parametrize("method", ["sobol", "lhs"])
def test_a_log_factor_is_uniform_in_log_space(method):
    sweep = SweepConfig(
        method=method,
        samples=256,
        factors=[
            SweepFactor(key="model.imitation_rate", low=0.001, high=1.0, scale="log"),
            SweepFactor(key="model.transfer_efficiency", low=0.3, high=0.8),
        ],
    )
    _, values = scenario_values(sweep)
    x = values["model.imitation_rate"]
    assert x.min() >= 0.001 and x.max() <= 1.0
    u = (np.log10(x) + 3) / 3  # uniform on [0, 1] if x is log-uniform on [0.001, 1]
    assert stats.kstest(u, "uniform").pvalue > 0.05
    # each decade holds a third of the points (a linear sampler puts 99.9% in the top one)
    share = np.histogram(np.log10(x), bins=3, range=(-3, 0))[0] / len(x)
    assert np.allclose(share, 1 / 3, atol=0.02)
    assert abs(np.median(x) - 10**-1.5) < 0.2 * 10**-1.5  # the geometric midpoint
    linear = values["model.transfer_efficiency"]
    assert stats.kstest((linear - 0.3) / 0.5, "uniform").pvalue > 0.05


def test_an_integer_factor_takes_every_whole_value_about_equally_often():
    sweep = SweepConfig(
        method="sobol",
        samples=64,
        factors=[
            SweepFactor(key="model.steps", low=60, high=63, integer=True),
            SweepFactor(key="model.transfer_efficiency", low=0.3, high=0.8),
        ],
    )
    _, values = scenario_values(sweep)
    steps = values["model.steps"]
    assert np.array_equal(steps, np.round(steps))
    counts = np.bincount(steps.astype(int) - 60)
    assert len(counts) == 4 and counts.min() >= 0.2 * len(steps)  # ends as often as the middle
    assert points_frame(sweep, SEED).schema["model.steps"] == pl.Int64


@pytest.mark.parametrize("method,samples,tolerance", [("sobol", 1024, 0.01), ("lhs", 2000, 0.03)])
def test_indices_of_a_planted_function_of_log_linear_and_integer_factors(method, samples, tolerance):
    """y = ln(a) + b x + c k with a log-uniform on [0.01, 1], x uniform on [0, 1] and k uniform
    on the integers 1..4: additive, so S1 = ST = V_i / V with V_ln(a) = ln(100)^2 / 12,
    V_x = b^2 / 12 and V_k = c^2 (4^2 - 1) / 12 (the discrete uniform's variance). b and c are
    chosen so that the indices are 0.5, 0.2 and 0.3 (Sobol: S1 and ST; lhs: RBD-FAST's S1)."""
    v_log = np.log(100.0) ** 2 / 12
    total = v_log / 0.5
    b = np.sqrt(0.2 * total * 12)
    c = np.sqrt(0.3 * total * 12 / 15)
    sweep = SweepConfig(
        method=method,
        samples=samples,
        factors=[
            SweepFactor(key="a", low=0.01, high=1.0, scale="log"),
            SweepFactor(key="x", low=0.0, high=1.0),
            SweepFactor(key="k", low=1, high=4, integer=True),
        ],
    )
    names, values = scenario_values(sweep)
    y = np.log(values["a"]) + b * values["x"] + c * values["k"]
    rows = pl.DataFrame({"scenario": names, "y": y})
    indices = sensitivity(rows, sweep, SEED, ["y"])
    assert indices["factor"].to_list() == ["a", "x", "k"]
    assert (indices["samples"] == samples).all()
    for r, truth in zip(indices.iter_rows(named=True), (0.5, 0.2, 0.3), strict=True):
        assert abs(r["S1"] - truth) < tolerance and r["S1_conf"] < 0.1, r
        if method == "sobol":
            assert abs(r["ST"] - truth) < tolerance and r["ST_conf"] < 0.1, r


QUICK = [
    "experiment=lever_sweep",
    "cluster=small",
    "executor=serial",
    "tracking=none",
    "replicates=1",
    "experiment.sweep.samples=8",
    "experiment.sweep.max_samples=0",
    "executor.chunk_size=16",
]
SPACE = (
    "uncertainty.parameters=[{key: model.imitation_rate, low: 0.005, high: 0.02, scale: log},"
    "{key: model.steps, low: 4, high: 7, integer: true}]"
)


def test_a_sweep_over_an_uncertainty_space_runs_each_factor_on_its_scale(tmp_path):
    overrides = [*QUICK, "uncertainty=test", "experiment.sweep.factors_from=uncertainty", SPACE]
    result = run_experiment(load_config(overrides), overrides, tmp_path / "run")
    points = pl.read_parquet(result.run_dir / "points.parquet")
    assert points.height == 8 * (2 + 2)
    assert points.schema["model.steps"] == pl.Int64
    assert set(points["model.steps"].to_list()) == {4, 5, 6, 7}
    rate = points["model.imitation_rate"]
    assert rate.min() >= 0.005 and rate.max() <= 0.02  # type: ignore[operator]
    configs = {sc.name: sc.config for sc in result.scenarios}
    for row in points.iter_rows(named=True):  # each point ran with the values the file lists
        assert configs[row["scenario"]].model.steps == row["model.steps"]
        assert configs[row["scenario"]].model.imitation_rate == row["model.imitation_rate"]
    assert "governance.strategic" not in points.columns  # only the space's parameters
    indices = pl.read_parquet(result.run_dir / "sensitivity.parquet")
    assert set(indices["factor"].to_list()) == {"model.imitation_rate", "model.steps"}
    assert any("<- `model.steps`" in n for n in result.notes)
    report = (result.run_dir / "report.md").read_text()
    assert "`model.imitation_rate` [0.005, 0.02] (uniform in log)" in report
    assert "`model.steps` [4, 7] (whole numbers, each equally likely)" in report


def test_both_sweeps_the_levers_then_the_space():
    config = load_config(["experiment=lever_sweep", "uncertainty=test", "experiment.sweep.factors_from=both"])
    get_kind(config)
    from kibs_mc.experiments.sweep import sweep_of

    assert [f.key for f in sweep_of(config).factors] == [
        "governance.strategic",
        "governance.management",
        "governance.business",
        "governance.information",
        "model.transfer_efficiency",
        "model.conversion_management_weight",
    ]


FROM_SPACE = ["experiment=lever_sweep", "uncertainty=test", "experiment.sweep.factors_from=uncertainty"]


@pytest.mark.parametrize(
    "overrides,key,allowed",
    [
        (
            [*FROM_SPACE, "uncertainty.parameters=[{key: model.no_such_key, low: 0.1, high: 0.2}]"],
            "uncertainty.parameters[0].key",
            "not a known key",
        ),
        (
            [
                *FROM_SPACE,
                "uncertainty.parameters=[{key: model.imitation_rate, low: 0.0, high: 0.1, scale: log}]",
            ],
            "uncertainty.parameters[0].low",
            "above 0 with scale=log",
        ),
        (
            [*FROM_SPACE, "uncertainty.parameters=[{key: model.transfer_efficiency, low: 0.3, high: 1.5}]"],
            "uncertainty.parameters[0].high",
            "allowed for model.transfer_efficiency",
        ),
        (
            [*FROM_SPACE, "uncertainty.parameters=[{key: model.steps, low: 4, high: 7.5, integer: true}]"],
            "uncertainty.parameters[0].high",
            "whole number",
        ),
        (
            [
                "experiment=lever_sweep",
                "experiment.sweep.factors=[{key: governance.strategic, low: -1, high: 0.5}]",
            ],
            "experiment.sweep.factors[0].low",
            "allowed for governance.strategic",
        ),
        (
            [
                "experiment=lever_sweep",
                "experiment.sweep.factors=[{key: governance.nothing, low: 0, high: 1}]",
            ],
            "experiment.sweep.factors[0].key",
            "not a known key",
        ),
        (
            ["experiment=lever_sweep", "uncertainty=test"],
            "experiment.sweep.factors_from",
            "'uncertainty' or 'both'",
        ),
        (
            ["experiment=lever_sweep", "experiment.sweep.factors_from=uncertainty"],
            "uncertainty.parameters",
            "uncertainty=default",
        ),
        (
            [
                "experiment=lever_sweep",
                "experiment.sweep.factors_from=both",
                "uncertainty=test",
                "uncertainty.parameters=[{key: governance.business, low: 0.1, high: 0.2}]",
            ],
            "uncertainty.parameters",
            "each key once",
        ),
        (
            [
                "experiment=lever_sweep",
                "experiment.sweep.factors_from=uncertainty",
                "uncertainty=posterior",
                "uncertainty.posterior=/tmp",
            ],
            "uncertainty.posterior",
            "experiment=robustness",
        ),
    ],
)
def test_bad_factors_are_refused_before_any_work(overrides, key, allowed):
    with pytest.raises(ConfigError) as error:
        get_kind(load_config(overrides))
    assert error.value.key == key and allowed in str(error.value)


def test_cli_exits_2_on_a_log_range_through_zero(cli):
    proc = cli(
        *FROM_SPACE,
        "tracking=none",
        "uncertainty.parameters=[{key: model.imitation_rate, low: 0, high: 0.02, scale: log}]",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "uncertainty.parameters[0].low=0" in lines[0] and "above 0 with scale=log" in lines[0]
