"""The experiment kind contract (``ExperimentKind``, :class:`tests.contracts.KindContract`) over
every registered kind: each kind is a subclass that gives a tiny experiment of it."""

from __future__ import annotations

import pytest

from kibs_mc.experiments import KINDS
from tests.contracts import KindContract, PlannedKindContract

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: Small and quick: the small cluster over a year, serial, no MLflow.
QUICK = ["cluster=small", "model.steps=12", "executor=serial", "tracking=none"]


class TestSingle(PlannedKindContract):
    @pytest.fixture(scope="class")
    def overrides(self):
        return [*QUICK, "replicates=3", "governance.information=0.5"]


class TestCompare(PlannedKindContract):
    @pytest.fixture(scope="class")
    def overrides(self):
        return ["experiment=compare_governance", *QUICK, "replicates=3"]


class TestSweep(PlannedKindContract):
    @pytest.fixture(scope="class")
    def overrides(self):
        sweep = [
            "experiment.sweep.samples=2",
            "experiment.sweep.max_samples=4",
            "experiment.sweep.tolerance=0.01",
        ]
        return ["experiment=lever_sweep", *QUICK, "replicates=1", *sweep]


class TestRobustness(PlannedKindContract):
    @pytest.fixture(scope="class")
    def overrides(self):
        return [
            "experiment=robustness",
            *QUICK,
            "replicates=2",
            "robustness.worlds=4",
            "robustness.bootstrap=100",
        ]


class TestMix(PlannedKindContract):
    @pytest.fixture(scope="class")
    def overrides(self):
        return [
            "experiment=mix",
            *QUICK,
            "replicates=2",
            "robustness.worlds=2",
            "robustness.bootstrap=100",
            "mix.candidates=2",
            "mix.generations=1",
            "mix.resolution=2",
            "mix.search_max=3",
            "mix.first_stage=2",
            "mix.confirm_max=4",
        ]


class TestCalibrate(KindContract):
    @pytest.fixture(scope="class")
    def overrides(self):
        return [
            "experiment=calibrate",
            *QUICK,
            "calibration.parameters=[{key: model.transfer_efficiency, low: 0.3, high: 0.8}]",
            "calibration.targets=synthetic",
            "calibration.template=recovery",
            "calibration.truth.model.transfer_efficiency=0.6",
            "calibration.synthetic_replicates=3",
            "calibration.population=6",
            "calibration.generations=1",
            "calibration.ppc_draws=3",
        ]


def test_every_registered_kind_is_under_the_contract():
    covered = {"single", "compare", "sweep", "robustness", "calibrate", "mix"}
    assert set(KINDS) == covered, "a new kind needs its subclass of KindContract here"
