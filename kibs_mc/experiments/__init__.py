"""Experiments: the kinds (which scenarios, what analysis) and the pipeline that runs any of
them (plan -> execute -> analyse -> report -> track)."""

from kibs_mc.experiments.kind import ExperimentKind, Finished, KindOutput
from kibs_mc.experiments.pipeline import ExperimentResult, run_experiment
from kibs_mc.experiments.registry import KINDS, get_kind

__all__ = [
    "KINDS",
    "ExperimentKind",
    "ExperimentResult",
    "Finished",
    "KindOutput",
    "get_kind",
    "run_experiment",
]
