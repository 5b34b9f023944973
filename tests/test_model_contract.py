"""The model contract (``kibs_mc.models.base.Model``, :class:`tests.contracts.ModelContract`)
over every registered model: each model is a subclass that gives a small configuration."""

from __future__ import annotations

import pytest

from kibs_mc.models import MODELS
from tests.contracts import ModelContract


class TestCowanJonard(ModelContract):
    @pytest.fixture(scope="class")
    def overrides(self):
        return ["model=cowan_jonard", "model.agents=60", "model.degree=4", "model.categories=5"]


class TestKibs(ModelContract):
    @pytest.fixture(scope="class")
    def overrides(self):
        return ["model=kibs", "cluster=small", "governance=all_four", "model.steps=13"]


def test_every_registered_model_is_under_the_contract():
    covered = {"cowan_jonard", "kibs"}
    assert set(MODELS) == covered, "a new model needs its subclass of ModelContract here"
