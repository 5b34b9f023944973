"""``experiment.kind=compare`` (named scenarios with common random numbers, paired effects
against the baseline: ``compare_governance``, ``cj_docking``) and ``single`` (the composed
configuration as one scenario). Everything they need is what every experiment does."""

from __future__ import annotations

from kibs_mc.experiments.kind import ExperimentKind


class Compare(ExperimentKind):
    name = "compare"


class Single(ExperimentKind):
    name = "single"
