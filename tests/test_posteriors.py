"""The calibrated posteriors that ship in conf/posterior/: current for the model and the targets
(else a failure with the command that makes them again), read like any file from elsewhere, the
starting point of every run unless the hand-set values are asked for by name, and the default
uncertainty space inside what the calibration allows."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from kibs_mc.config import load_config
from kibs_mc.errors import ConfigError
from kibs_mc.experiments import get_kind
from kibs_mc.run import shipped
from tests.conftest import REPO

SHIPPED = shipped.presets()


def stale_reasons(record: shipped.Shipped) -> list[str]:
    """Everything that changed since the file was made: the model's code and the targets
    (as a run checks them), the preset's configuration and the calibration's priors."""
    reasons = shipped.stale(record)
    config = load_config(["experiment=calibrate", f"cluster={record.preset}"])
    if shipped.configuration_digest(config) != record.provenance.get("configuration_sha256"):
        reasons.append(f"the configuration of model `{record.model}` on preset `{record.preset}` changed")
    priors = shipped.priors_of(list(config.calibration.parameters))
    if priors != shipped.priors_of(record.parameters):
        reasons.append("the calibrated parameters or their priors (conf/experiment/calibrate.yaml) changed")
    return reasons


def default_presets() -> dict[str, str]:
    """Preset -> an experiment that simulates the cluster model on it by default (docking's
    preset is the model reduced to Cowan & Jonard's: hand-set by design)."""
    found = {}
    for path in sorted((REPO / "conf" / "experiment").glob("*.yaml")):
        config = load_config([f"experiment={path.stem}"])
        if config.model.name == "kibs" and config.cluster.name != "docking":
            found.setdefault(config.cluster.name, path.stem)
    return found


@pytest.mark.parametrize("preset", SHIPPED)
def test_a_shipped_posterior_is_current_for_the_model_and_the_targets(preset):
    record = shipped.load(preset)
    assert record is not None
    reasons = stale_reasons(record)
    assert not reasons, (
        f"conf/posterior/{preset}.json is stale: {'; '.join(reasons)}. Make it again with "
        f"`{record.provenance['command']}` (every preset: `{shipped.COMMAND}`)"
    )


def test_every_preset_the_experiments_use_by_default_ships_a_posterior():
    missing = {p: e for p, e in default_presets().items() if p not in SHIPPED}
    assert not missing, (
        f"no shipped posterior for the presets {missing} (preset: an experiment that uses it); "
        f"make them with `{shipped.COMMAND}`"
    )


def test_a_change_of_the_model_or_the_targets_makes_it_stale():
    record = shipped.load("small")  # the preset of `make run`
    prov = record.provenance
    module = sorted(prov["model_code"])[0]
    edited = dataclasses.replace(
        record,
        provenance={
            **prov,
            "model_code": {**prov["model_code"], module: "0" * 16},
            "targets_sha256": "0" * 64,
        },
    )
    reasons = shipped.stale(edited)
    assert f"module {module.removeprefix('code:')} changed" in reasons
    assert f"targets {prov['targets_file']} changed" in reasons
    assert not shipped.stale(record)


def test_runs_start_from_the_posterior_point_and_the_hand_set_values_stay_by_name():
    record = shipped.load("small")
    config = load_config(["experiment=compare_governance", "cluster=small"])
    kind = get_kind(config)
    prepared, overrides = kind.prepare(config, ["cluster=small"])
    point = record.point["mean"]
    assert prepared.model.transfer_efficiency == point["model.transfer_efficiency"]
    assert f"model.transfer_efficiency={point['model.transfer_efficiency']!r}" in overrides
    assert kind.calibrated(prepared) and "conf/posterior/small.json" in kind.parameters(prepared)
    hand = load_config(["experiment=compare_governance", "cluster=small", "calibration.use=hand_set"])
    kept, same = kind.prepare(hand, ["cluster=small", "calibration.use=hand_set"])
    assert kept.model.transfer_efficiency == 0.5 and len(same) == 2
    assert not kind.calibrated(kept) and "hand-set values" in kind.parameters(kept)
    docking = load_config(["cluster=docking"])  # no calibration ships for it: hand-set, and said why
    assert "no calibration of the `docking` preset" in get_kind(docking).parameters(docking)


def test_a_key_the_user_sets_keeps_its_value_and_names_the_run():
    """The posterior point fills in what the invocation leaves to it: a calibrated key given on
    the command line keeps the given value (it was overwritten by the point, appended last), and
    a single run is still named after it."""
    point = shipped.load("small").point["mean"]
    given = ["experiment=single", "cluster=small", "model.transfer_efficiency=0.31"]
    config = load_config(given)
    kind = get_kind(config)
    prepared, overrides = kind.prepare(config, given[1:])
    assert point["model.transfer_efficiency"] != 0.31
    assert prepared.model.transfer_efficiency == 0.31
    assert prepared.model.fixed_cost == point["model.fixed_cost"]  # the rest from the posterior
    assert [name for name, _ in kind.scenario_specs(prepared, overrides)] == [
        "cluster=small model.transfer_efficiency=0.31"
    ]


def test_a_shipped_posterior_is_read_like_a_file_from_elsewhere(tmp_path):
    data = json.loads(shipped.path_of("small").read_text())
    key = data["parameters"][0]["key"]
    data["particles"][key][3] = data["parameters"][0]["high"] * 10
    bad = tmp_path / "small.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as refused:
        shipped.read(bad)
    assert f"particles.{key}[3]" in refused.value.key and "inside the prior" in refused.value.allowed


def test_the_default_uncertainty_space_holds_no_range_the_calibration_excludes():
    """experiment=robustness varies its space's parameters over ranges: none of them may be a
    parameter the calibration identifies (it comes from the posterior), and an unidentified
    one may not leave its prior."""
    config = load_config(["experiment=robustness"])
    record = shipped.load(config.cluster.name)
    assert record is not None
    priors = {p.key: p for p in record.parameters}
    for p in config.uncertainty.parameters:
        if p.key not in priors:
            continue
        assert not record.identified[p.key], (
            f"{p.key} is in conf/uncertainty/default.yaml, but the calibration identifies it: "
            "it comes from the posterior (uncertainty.posterior=shipped), not from a range"
        )
        prior = priors[p.key]
        assert prior.low <= p.low and p.high <= prior.high, f"{p.key}'s range leaves the calibration's prior"


@pytest.mark.parametrize(
    ("extra", "key"),
    [("model.steps=12", "model.steps"), ("calibration.targets=synthetic", "calibration.targets")],
)
def test_the_regeneration_command_refuses_settings_that_change_what_is_calibrated(extra, key):
    """`make posteriors` passes on only how a preset is calibrated (the sampler, the seed, the
    executor): a setting of the model or of the targets exits 2 naming it, before any work."""
    before = shipped.path_of("small").read_bytes()
    script = [sys.executable, str(REPO / "scripts" / "ship_posterior.py")]
    done = subprocess.run(
        [*script, "small", "--", "calibration.population=20", extra], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip()
    assert line.startswith("ship_posterior: ") and key in line and "\n" not in line
    assert shipped.path_of("small").read_bytes() == before


def test_a_comparison_at_hand_set_values_says_its_ranking_is_conditional_on_them(tmp_path):
    """The same comparison at the shipped posterior and at the hand-set values: only the latter
    says its ranking is conditional on hand-set values, and neither calls a setting 'certainly'
    first (a rank set of [1, 1] covers replicate noise only)."""
    from kibs_mc.analysis.report import read_summary
    from kibs_mc.experiments.pipeline import run_experiment

    quick = ["experiment=compare_governance", "cluster=small", "model.steps=12", "replicates=3"]
    quick += ["executor=serial", "tracking=none", "figures=false"]
    said = {}
    for use in ("shipped", "hand_set"):
        overrides = [*quick, f"calibration.use={use}"]
        result = run_experiment(load_config(overrides), overrides, tmp_path / use)
        said[use] = " ".join(read_summary(result.report))
    assert "conditional on the model's hand-set parameter values" in said["hand_set"]
    assert "conditional on the model's hand-set" not in said["shipped"]
    assert "conf/posterior/small.json" in said["shipped"]
    assert not any("certainly" in text for text in said.values())


def test_a_calibration_finished_with_resume_may_be_shipped():
    """A calibration stopped after a generation and completed with resume=true is the same
    calibration: its recorded resume=true does not refuse it; a model setting still does."""
    shipped.check_extra(["calibration.generations=5", "resume=true", "executor=ray"])
    with pytest.raises(ConfigError, match="model.steps"):
        shipped.check_extra(["model.steps=12"])
