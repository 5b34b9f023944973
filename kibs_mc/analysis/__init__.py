"""Analysis of finished replicates: summary statistics (``statistics``), paired effects
(``effects``), sensitivity designs and indices (``sensitivity``), figures (``plots``) and the
report (``report``)."""

from kibs_mc.analysis.effects import add_effects_to_summary, choose_baseline, paired_effects
from kibs_mc.analysis.plots import make_plots
from kibs_mc.analysis.report import write_report
from kibs_mc.analysis.statistics import RunningSummary, half_width, summarize

__all__ = [
    "RunningSummary",
    "add_effects_to_summary",
    "choose_baseline",
    "half_width",
    "make_plots",
    "paired_effects",
    "summarize",
    "write_report",
]
