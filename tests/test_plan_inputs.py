"""A plan proves its inputs: scenarios cannot set what is common to all of them, and every
setting that decides the results (adaptive precision included) is in the fingerprint."""

from __future__ import annotations

import pytest

from kibs_mc.config import load_config
from kibs_mc.errors import ConfigError, UserError
from kibs_mc.experiments.pipeline import run_experiment
from kibs_mc.run.plan import COMMON_KEYS, Plan, adaptive_settings, build_scenarios

SMALL = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "tracking=none",
    "executor=serial",
]


@pytest.mark.parametrize(
    "override",
    [
        "seed=5",
        "replicates=1",
        "resume=true",
        "executor=serial",
        "executor.chunk_size=3",
        "tracking.uri=sqlite:///x.db",
        "experiment.baseline=a",
        "calibration.use=/some/calibration",
        "calibration.point=map",
        "uncertainty.posterior=/some/calibration",
        "uncertainty=default",
        "robustness.worlds=2",
    ],
)
def test_a_scenario_may_not_set_what_every_scenario_shares(override):
    args = [*SMALL, f"experiment.scenarios=[{{name: a, overrides: ['{override}']}}]"]
    with pytest.raises(ConfigError, match=r"experiment.scenarios\[a\].overrides=") as error:
        build_scenarios(load_config(args), args)
    assert override.split("=")[0].split(".")[0] in COMMON_KEYS
    assert "common to every scenario" in str(error.value)


def test_a_scenario_may_set_its_model_settings():
    args = [*SMALL, "experiment.scenarios=[{name: a, overrides: ['model.alpha=0.5']}]"]
    assert build_scenarios(load_config(args), args)[0].config.model.alpha == 0.5


def test_resuming_an_adaptive_run_without_its_precision_settings_is_refused(tmp_path):
    adaptive = [
        *SMALL,
        "replicates=4",
        "executor.chunk_size=4",
        "experiment.max_replicates=12",
        "experiment.precision.outcome=knowledge_mean",
        "experiment.precision.half_width=1e-9",
    ]
    first = run_experiment(load_config(adaptive), adaptive, tmp_path / "run")
    assert first.rows.height == 12  # ran on to max_replicates
    fixed = [*SMALL, "replicates=4", "executor.chunk_size=4", "resume=true"]
    with pytest.raises(UserError, match="experiment.precision.outcome"):
        run_experiment(load_config(fixed), fixed, tmp_path / "run")
    looser = [*adaptive[:-1], "experiment.precision.half_width=0.5", "resume=true"]
    with pytest.raises(UserError, match=r"experiment.precision.half_width \(recorded 1e-09, now 0.5\)"):
        run_experiment(load_config(looser), looser, tmp_path / "run")
    again = [*adaptive, "resume=true"]
    same = run_experiment(load_config(again), again, tmp_path / "run")
    assert same.computed_chunks == 0 and same.rows.equals(first.rows)


@pytest.mark.parametrize(
    "rule,changes",
    [
        (
            "experiment.precision.outcome=knowledge_mean",
            [
                "experiment.precision.half_width=0.5",
                "experiment.precision.relative=false",
                "experiment.precision.on=mean",
                "experiment.max_replicates=99",
                "experiment.baseline=default",
            ],
        ),
        (
            "experiment.selection.outcome=knowledge_mean",
            [
                "experiment.selection.delta=0.5",
                "experiment.selection.alpha=0.1",
                "experiment.selection.first_stage=3",
                "experiment.max_replicates=99",
            ],
        ),
    ],
)
def test_every_setting_of_an_adaptive_rule_is_in_the_fingerprint(rule, changes):
    def fingerprint(*extra):
        args = [*SMALL, "replicates=4", rule, *extra]
        config = load_config(args)
        return Plan(build_scenarios(config, args), 4, config.seed, 2, adaptive_settings(config)).fingerprint()

    plain = fingerprint()
    assert len({plain, *(fingerprint(change) for change in changes)}) == 1 + len(changes)
