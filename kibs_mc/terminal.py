"""Terminal tables of results, legible at 80 columns, in narrower terminals and in a log
without colour.

``kibs-mc`` (after a run or a multirun) and ``kibs-mc-compare show`` print the same table:
one block per outcome, one row per scenario, with the mean and its 95% CI half-width, the
paired effect against the baseline and its 95% CI half-width, and the word ``clear`` where
the analysis calls the effect clear (the ``clear`` column of ``effects.parquet``, or
``significant`` where there is no ``clear`` column). Colour only repeats what the words say.
Where the console is too narrow for the numbers' columns (beside scenario names folded to
``NAME_MIN`` characters), each scenario's numbers go on lines of their own instead: nothing is
cut. A leaf: it imports neither the run nor the analysis layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

__all__ = [
    "CLEAR",
    "half_width_text",
    "number",
    "results_table",
    "run_size",
    "signed",
    "size_text",
    "verdict_column",
    "with_verdict",
]

#: The text mark of an effect the analysis calls clear.
CLEAR = "clear"

#: Scenario names fold down to this many characters before the table stacks its numbers.
NAME_MIN = 14


def number(x: float | None, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits, without an exponent between 1e-3 and 1e6."""
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x) or x == 0:
        return str(x) if x else "0"
    if 1e-3 <= abs(x) < 1e6:
        text = f"{float(f'{x:.{digits}g}'):f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{x:.{digits}g}"


def signed(x: float | None, digits: int = 3) -> str:
    """``number`` with a ``+`` on positive values (effects and differences)."""
    text = number(x, digits)
    return "+" + text if x is not None and math.isfinite(x) and x > 0 else text


def half_width_text(low: float | None, high: float | None) -> str:
    """``± h`` for the interval [low, high] (two significant digits); "" without one."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"± {number((high - low) / 2, 2)}"


def size_text(scenarios: int, replicates: int | str) -> str:
    """``6 scenarios x 50 replicates``: replicates count per scenario, as the config means it."""
    return f"{scenarios} scenario{'s' if scenarios != 1 else ''} x {replicates} replicates"


def run_size(rows: pl.DataFrame, scenarios: Sequence[str]) -> str:
    """``size_text`` of the rows of ``scenarios``; a range (``50-200``) where adaptive rounds
    gave scenarios different replicate counts."""
    counts = rows.filter(pl.col("scenario").is_in(list(scenarios))).group_by("scenario").len()["len"]
    low, high = (int(counts.min()), int(counts.max())) if counts.len() else (0, 0)  # type: ignore[arg-type]
    return size_text(len(scenarios), high if low == high else f"{low}-{high}")


def verdict_column(frame: pl.DataFrame) -> str | None:
    """The column that holds the analysis's verdict on each effect."""
    return next((c for c in ("clear", "significant") if c in frame.columns), None)


def with_verdict(summary: pl.DataFrame, effects: pl.DataFrame | None) -> pl.DataFrame:
    """The summary (``summary.parquet``) with the analysis's verdict on each paired effect
    (``clear``, or ``significant``) joined in from the effects (``effects.parquet``)."""
    verdict = verdict_column(effects) if effects is not None and effects.height else None
    if verdict is None or verdict_column(summary) is not None:
        return summary
    assert effects is not None
    return summary.join(
        effects.select("scenario", "outcome", verdict), on=["scenario", "outcome"], how="left"
    )


class ResultsTable:
    """The results table laid out for the console's width: numbers in columns (the wide
    table) where they fit beside names folded to ``NAME_MIN`` characters, else stacked."""

    def __init__(self, wide: Table, stacked: Group, needed: int) -> None:
        self.wide, self.stacked, self.needed = wide, stacked, needed

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.wide if options.max_width >= self.needed else self.stacked


def _row(r: dict, scenario: str, baseline: str | None, verdict: str | None) -> tuple[list[str], list[Text]]:
    """One scenario's cells of the wide table and its lines of the stacked one; with a
    ``baseline``, the effect columns too (empty for the baseline itself)."""
    cells = [f"  {scenario}", number(r["mean"]), half_width_text(r["ci_low"], r["ci_high"])]
    lines = [
        Text(f"   {scenario}", overflow="fold"),
        Text(f"     mean {cells[1]} {cells[2]}".rstrip(), overflow="fold"),
    ]
    if baseline is None:
        return cells, lines
    effect = r.get("effect")
    if scenario == baseline or effect is None or math.isnan(effect):
        return [*cells, "", "", ""], lines
    clear = bool(verdict and r.get(verdict))
    style = ("green" if effect > 0 else "red") if clear else "default"
    cells += [
        f"[{style}]{signed(effect)}[/]",
        half_width_text(r.get("effect_ci_low"), r.get("effect_ci_high")),
        f"[{style}]{CLEAR}[/]" if clear else "",
    ]
    lines.append(Text.from_markup(f"     effect {cells[3]} {cells[4]} {cells[5]}".rstrip(), overflow="fold"))
    return cells, lines


def results_table(
    frame: pl.DataFrame,
    outcomes: Sequence[str],
    scenarios: Sequence[str],
    baseline: str | None,
    title: str,
) -> ResultsTable:
    """One block per outcome, one row per scenario (or, in a narrow console, a few lines).

    Args:
        frame: one row per (scenario, outcome) with ``mean``, ``ci_low``, ``ci_high`` and,
            for paired effects, ``effect``, ``effect_ci_low``, ``effect_ci_high`` and the
            verdict ``clear`` (or ``significant``).
        outcomes: the outcomes, in the order shown.
        scenarios: the scenarios, in the order shown.
        baseline: the scenario effects are measured against (None: no effect columns).
        title: printed above the table.
    """
    verdict = verdict_column(frame)
    with_effects = (
        baseline is not None
        and "effect" in frame.columns
        and frame.filter(pl.col("scenario") != baseline)["effect"].is_not_null().any()
    )
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    longest = max([len(o) for o in outcomes] + [len(s) + 2 for s in scenarios] + [12])
    table.add_column("outcome / scenario", overflow="fold", min_width=min(longest, NAME_MIN))
    headers = ["mean", "± 95% CI"] + (["effect", "± 95% CI", ""] if with_effects else [])
    table.add_column("mean", justify="right", no_wrap=True)
    table.add_column("± 95% CI", no_wrap=True)
    if with_effects:
        table.add_column("effect", justify="right", no_wrap=True)
        table.add_column("± 95% CI", no_wrap=True)
        table.add_column("", no_wrap=True, min_width=len(CLEAR))
    widths = [len(h) for h in headers]
    stacked: list[Text] = [Text(title), Text("")]
    rows = {(r["outcome"], r["scenario"]): r for r in frame.iter_rows(named=True)}
    shown = [o for o in outcomes if any((o, s) in rows for s in scenarios)]
    for i, outcome in enumerate(shown):
        table.add_row(f"[bold]{outcome}[/]")
        stacked.append(Text.from_markup(f" [bold]{outcome}[/]", overflow="fold"))
        listed = [s for s in scenarios if (outcome, s) in rows]
        for j, scenario in enumerate(listed):
            cells, lines = _row(
                rows[(outcome, scenario)], scenario, baseline if with_effects else None, verdict
            )
            stacked += lines
            widths = [max(w, Text.from_markup(c).cell_len) for w, c in zip(widths, cells[1:], strict=True)]
            table.add_row(*cells, end_section=j == len(listed) - 1 and i < len(shown) - 1)
        if i < len(shown) - 1:
            stacked.append(Text(""))
    # the wide table's width with names folded to NAME_MIN: the columns, a 2-character gap
    # before each number column, and a space at each edge
    needed = min(longest, NAME_MIN) + sum(widths) + 2 * len(widths) + 2
    return ResultsTable(table, Group(*stacked), needed)
