"""``experiment.kind=compare`` (named scenarios with common random numbers, paired effects
against the baseline: ``compare_governance``, ``cj_docking``) and ``single`` (the composed
configuration as one scenario, named after the command line's overrides). Everything they
need is what every experiment does."""

from __future__ import annotations

from kibs_mc.config import Config
from kibs_mc.experiments.kind import ExperimentKind, name_unnamed, overrides_name
from kibs_mc.experiments.posterior import hand_set_words

__all__ = ["Compare", "Single", "name_unnamed", "overrides_name"]


class Compare(ExperimentKind):
    name = "compare"

    def parameters(self, config: Config) -> str | None:
        """The posterior point with ``calibration.use``, else the model's hand-set values: a
        comparison rests on them (the other kinds vary or fit the parameters themselves)."""
        return super().parameters(config) or hand_set_words(config)


class Single(Compare):
    name = "single"
