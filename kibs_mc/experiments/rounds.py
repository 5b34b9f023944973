"""What an experiment runs next: its rounds of replicates.

Every experiment runs in rounds. A round brings each scenario to a target number of
replicates; then a rule reads the rows reached and sets the next targets, until no target is
above what was reached. The rule is one of three, chosen once when the experiment is planned
(:func:`choose_rounds`):

- the kind's own rounds (:meth:`ExperimentKind.rounds
  <kibs_mc.experiments.kind.ExperimentKind.rounds>`): one round of ``replicates`` each by
  default; a Sobol sweep doubles its sample until its indices are precise;
- :class:`PrecisionRounds` (``experiment.precision``): until what is decided is as precise as
  asked (:func:`kibs_mc.run.adaptive.next_targets`);
- :class:`SelectionRounds` (``experiment.selection``): until KN has certified a best scenario
  (:func:`kibs_mc.run.adaptive.selection_targets`).

A rule decides from the rows each scenario had reached when the round ended, never from more
(a resumed run may find more on disk), so a resumed run takes the same decisions as the run it
continues. Rows are read only when a rule asks for them: merging the results costs a write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from kibs_mc.config import PrecisionConfig
from kibs_mc.models import Model
from kibs_mc.run.adaptive import (
    Contest,
    Selection,
    next_targets,
    precision_notes,
    selection_notes,
    selection_targets,
)
from kibs_mc.run.plan import Scenario

#: The rows of every replicate run so far, merged when called (a rule that needs none never
#: pays for the merge).
Rows = Callable[[], pl.DataFrame]


@dataclass(frozen=True)
class Round:
    """The next round: each scenario's target replicate count, and notes for the report once
    the rule stops (targets no higher than the counts reached)."""

    targets: dict[int, int]
    notes: list[str] = field(default_factory=list)
    #: The state of a KN selection after this round (``experiment.selection``).
    selection: Selection | None = None

    def left(self, counts: Mapping[int, int]) -> bool:
        """Whether any scenario is to run more replicates than it has reached."""
        return any(self.targets[i] > counts[i] for i in counts)


class Rounds(Protocol):
    """A rule for what to run next. Call order: :meth:`first` once, then :meth:`after` after
    every round, until the round it returns has nothing :meth:`Round.left`."""

    def first(self) -> dict[int, int]:
        """Each scenario's replicate count in the first round (scenario index -> count)."""
        ...

    def after(self, rows: Rows, counts: Mapping[int, int]) -> Round:
        """The next round, from the rows of the replicates reached (``counts``)."""
        ...


@dataclass(frozen=True)
class OneRound:
    """A single round: ``targets`` replicates of each scenario, then stop."""

    targets: dict[int, int]

    def first(self) -> dict[int, int]:
        return dict(self.targets)

    def after(self, rows: Rows, counts: Mapping[int, int]) -> Round:
        return Round(dict(counts))


@dataclass(frozen=True)
class PrecisionRounds:
    """Rounds until the 95% CI of what ``experiment.precision`` decides is narrow enough in
    every scenario, or ``experiment.max_replicates``."""

    targets: dict[int, int]  # the first round's
    scenarios: Sequence[Scenario]
    precision: PrecisionConfig
    max_replicates: int
    chunk_size: int
    baseline: str

    def first(self) -> dict[int, int]:
        return dict(self.targets)

    def after(self, rows: Rows, counts: Mapping[int, int]) -> Round:
        targets, status = next_targets(
            rows(),
            self.scenarios,
            dict(counts),
            self.precision,
            self.max_replicates,
            self.chunk_size,
            self.baseline,
        )
        return Round(targets, precision_notes(status, self.precision))


@dataclass(frozen=True)
class SelectionRounds:
    """Rounds for the candidates still in contention until KN certifies a best one
    (``experiment.selection``), or ``experiment.max_replicates``."""

    targets: dict[int, int]  # the first round's
    scenarios: Sequence[Scenario]
    contest: Contest
    max_replicates: int
    chunk_size: int

    def first(self) -> dict[int, int]:
        return dict(self.targets)

    def after(self, rows: Rows, counts: Mapping[int, int]) -> Round:
        targets, state = selection_targets(
            rows(),
            self.scenarios,
            dict(counts),
            self.contest,
            self.max_replicates,
            self.chunk_size,
        )
        return Round(targets, selection_notes(state), selection=state)


def larger_is_better(model: Model, outcome: str, declared: bool | None = None) -> bool:
    """The direction of ``outcome``: as declared, else as the model says (higher by default)."""
    if declared is not None:
        return declared
    return outcome not in model.lower_is_better
