"""Figures a reader can read: no title, panel title, axis label or tick label drawn over
another, in the figures of a comparison and of a calibration; the outcome the decision is
made on comes first, in a larger panel."""

from __future__ import annotations

import itertools

import matplotlib
import pytest
from matplotlib.figure import Figure

from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment

from .test_decision_page import CALIBRATE, FAST


def texts(fig: Figure) -> list:
    """Every visible, non-empty text of the figure with the name of what it is."""
    found = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        found.append(("suptitle", fig._suptitle))
    for k, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        for name, text in (("title", ax.title), ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)):
            found.append((f"axes {k} {name}", text))
        for axis in (ax.xaxis, ax.yaxis) if ax.axison else ():  # an axes turned off draws no ticks
            for tick in axis._update_ticks():  # the ticks drawn: those inside the view
                for label in (tick.label1, tick.label2):
                    found.append((f"axes {k} tick {label.get_text()}", label))
    return [(n, t) for n, t in found if t.get_visible() and t.get_text().strip()]


def overlaps(fig: Figure) -> list[str]:
    fig.draw_without_rendering()  # runs the layout, as saving does
    renderer = fig.canvas.get_renderer()
    boxes = [(name, text.get_window_extent(renderer).padded(-1)) for name, text in texts(fig)]
    return [f"{a} / {b}" for (a, x), (b, y) in itertools.combinations(boxes, 2) if x.overlaps(y)]


@pytest.fixture
def saved(monkeypatch):
    """Every figure saved while the test runs, checked for overlapping texts as it is saved."""
    found: dict[str, list[str]] = {}
    save = Figure.savefig

    def checked(fig, path, *args, **kwargs):
        found[str(path).rsplit("/", 1)[-1]] = overlaps(fig)
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    return found


@pytest.mark.slow
def test_the_figures_of_a_comparison_and_a_calibration_have_no_overlapping_text(saved, tmp_path):
    assert matplotlib.get_backend().lower() == "agg"
    compare = ["experiment=compare_governance", "replicates=4", *FAST]
    run_experiment(load_config(compare), compare, tmp_path / "compare")
    calibrate = [o for o in CALIBRATE if not o.startswith("calibration.parameters")]  # all five
    run_experiment(load_config(calibrate), calibrate, tmp_path / "calibrate")
    names = set(saved)
    assert {"effects.png", "distributions.png", "timeseries.png", "posterior.png", "ppc.png"} <= names
    assert {name: found for name, found in saved.items() if found} == {}
