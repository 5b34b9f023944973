"""The run's report: ``report.md`` and ``report.html`` in the run directory.

It holds the configuration, the effects table, the figures and a plain-language reading of
which scenarios move which outcomes and how sure we are (does the 95% CI exclude zero?).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.4g}"


#: Headline outcomes read out in sentences (the tables show every headline outcome).
READ_OUT = 5


def reading(effects: pl.DataFrame, headline: Sequence[str]) -> list[str]:
    """One sentence per scenario and each of the first READ_OUT headline outcomes."""
    lines = []
    for outcome in headline[:READ_OUT]:
        for r in effects.filter(pl.col("outcome") == outcome).iter_rows(named=True):
            base = r["baseline_mean"]
            rel = f" ({100 * r['effect'] / base:+.1f}%)" if base not in (0, None) and base == base else ""
            ci = f"95% CI {_num(r['ci_low'])} to {_num(r['ci_high'])}, n={r['n']} paired replicates"
            if r["significant"]:
                verb = "raises" if r["effect"] > 0 else "lowers"
                lines.append(f"- **{r['scenario']}** {verb} `{outcome}` by {_num(abs(r['effect']))}{rel} "
                             f"against `{r['baseline']}` ({ci}): a clear effect.")
            else:
                lines.append(f"- **{r['scenario']}**: no clear effect on `{outcome}` "
                             f"({_num(r['effect'])}{rel}; {ci} includes zero).")
    return lines


def markdown_table(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_num(v) if isinstance(v, float) else str(v) for v in row) + " |"
            for row in frame.iter_rows()]
    return "\n".join([head, rule, *body])


def write_report(
    run_dir: Path,
    title: str,
    config_yaml: str,
    summary: pl.DataFrame,
    effects: pl.DataFrame,
    headline: Sequence[str],
    figures: Sequence[Path],
    notes: Sequence[str] = (),
    sections: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write report.md and report.html; returns both paths.

    Args:
        headline: the outcomes the text reads out and the tables show, in order (the model's
            headline outcomes, :func:`kibs_mc.models.headline`).
        sections: Markdown sections of the experiment kind (e.g. a sweep's sensitivity
            indices), placed after the effects.
    """
    import markdown

    run_dir = Path(run_dir)
    shown = list(headline)
    parts = [f"# {title}", ""]
    if notes:
        parts += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    if effects.height:
        parts += ["## What the scenarios do", "", *reading(effects, shown), ""]
        eff = effects.filter(pl.col("outcome").is_in(shown)).select(
            "scenario", "outcome", "baseline_mean", "scenario_mean", "effect", "ci_low", "ci_high",
            "effect_size", "effect_per_cost")
        parts += ["## Paired effects against the baseline", "",
                  "Mean paired difference over common-random-number replicates, 95% percentile "
                  "bootstrap CI; `effect_size` is Glass's delta (effect / baseline sd); "
                  "`effect_per_cost` divides by the extra governance cost.", "", markdown_table(eff), ""]
    for section in sections:
        parts += [section.rstrip(), ""]
    summ = summary.filter(pl.col("outcome").is_in(shown)).select(
        "scenario", "outcome", "n", "mean", "sd", "ci_low", "ci_high")
    parts += ["## Outcomes per scenario", "", "Mean across replicates with the 95% t interval.", "",
              markdown_table(summ), ""]
    if figures:
        parts += ["## Figures", ""] + [f"![{f.stem}]({f.name})\n" for f in figures]
    parts += ["## Configuration", "", "```yaml", config_yaml.rstrip(), "```", ""]
    text = "\n".join(parts)
    md_path = run_dir / "report.md"
    md_path.write_text(text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + title + "</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
        "text-align:right}th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f6f6;padding:1em;"
        "overflow:auto}</style></head><body>" + body + "</body></html>"
    )
    html_path = run_dir / "report.html"
    html_path.write_text(html)
    return md_path, html_path
