"""``experiment.kind=compare`` (named scenarios with common random numbers, paired effects
against the baseline: ``compare_governance``, ``cj_docking``) and ``single`` (the composed
configuration as one scenario, named after the command line's overrides). Everything they
need is what every experiment does."""

from __future__ import annotations

from collections.abc import Sequence

from kibs_mc.experiments.kind import ExperimentKind
from kibs_mc.run.plan import ScenarioSpec

#: The name of a scenario that ``conf/experiment/single.yaml`` leaves to the command line.
UNNAMED = "default"
#: Settings that change how a run is executed or recorded, not what it simulates: left out of
#: a scenario's name.
NOT_SIMULATED = ("replicates", "seed", "resume", "keep_parts", "experiment", "executor", "tracking", "hydra")


def overrides_name(overrides: Sequence[str]) -> str:
    """A scenario's name from the command line's overrides of what it simulates, e.g.
    ``governance=information governance.information=0.5``; ``default`` without any."""
    kept = [o for o in overrides if o.lstrip("+~").partition("=")[0].split(".")[0] not in NOT_SIMULATED]
    return " ".join(kept) or UNNAMED


def name_unnamed(specs: Sequence[ScenarioSpec], overrides: Sequence[str]) -> list[ScenarioSpec]:
    """The scenarios with the unnamed one (``default`` without overrides of its own, as in
    ``single``) named after the invocation's overrides: the three jobs of ``kibs-mc -m
    governance.information=0,0.5,1`` are then told apart in every table and in MLflow."""
    return [(overrides_name(overrides) if name == UNNAMED and not own else name, own) for name, own in specs]


class Compare(ExperimentKind):
    name = "compare"


class Single(ExperimentKind):
    name = "single"
