"""``kibs-mc report``: the decision page of real runs (a hand-set comparison, a calibration,
a comparison at its posterior, a robustness experiment across it), checked as a reader sees it
in a headless browser (Chromium): its screenshot and its rendered text."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import polars as pl
import pytest

from kibs_mc.analysis.decision import ranking_changes, read_run
from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment

from .conftest import run_cli

FAST = ["cluster=small", "model.steps=20", "executor=serial", "tracking=none"]
CALIBRATE = [
    "experiment=calibrate",
    *FAST,
    "calibration.parameters=[{key: model.transfer_efficiency, low: 0.3, high: 0.8}]",
    "calibration.targets=synthetic",
    "calibration.template=recovery",
    "calibration.truth.model.transfer_efficiency=0.6",
    "calibration.population=20",
    "calibration.generations=1",
    "calibration.ppc_draws=10",
    "calibration.min_acceptance=0",
]
#: The browser: Debian's chromium-headless-shell (make browser-deps), else a full Chromium.
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
WIDTH, HEIGHT = 1280, 2000


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four small real runs, in the order a user makes them (about 40 s on 2 cores)."""
    root = tmp_path_factory.mktemp("decision")
    plans = {
        "hand": ["experiment=compare_governance", "replicates=4", *FAST, "calibration.use=hand_set"],
        "cal": CALIBRATE,
        "calibrated": [
            "experiment=compare_governance",
            "replicates=4",
            *FAST,
            f"calibration.use={root / 'cal'}",
        ],
        "posterior": [
            "experiment=robustness",
            "replicates=2",
            "robustness.worlds=2",
            *FAST,
            "uncertainty=posterior",
            f"uncertainty.posterior={root / 'cal'}",
        ],
    }
    for name, overrides in plans.items():
        run_experiment(load_config(overrides), overrides, root / name)
    return root


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    """``kibs-mc report`` of the four runs: the finished process and the page it wrote."""
    page = tmp_path_factory.mktemp("page") / "decision.html"
    proc = run_cli("report", "hand", "cal", "calibrated", "posterior", "-o", str(page), cwd=runs, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, page


@pytest.mark.slow
def test_the_decision_page_puts_the_runs_side_by_side(runs, report):
    proc, page = report
    assert f"decision page: {page}" in proc.stdout
    html = page.read_text()
    assert "src='http" not in html and 'src="http' not in html  # self-contained: figures embedded
    figures = len([p for d in ("hand", "cal", "calibrated", "posterior") for p in (runs / d).glob("*.png")])
    assert html.count("data:image/png;base64,") == figures > 0
    for label in ("hand-set", "calibration", "calibrated (cal)", "across the posterior"):
        assert f"<h3>{label}</h3>" in html, label
    # the answer of each run is its executive summary
    hand = (runs / "hand" / "report.md").read_text().split("## Executive summary\n", 1)[1]
    best = re.search(r"Best for `(\w+)` \(higher is better\): `(\w+)`", hand)
    assert best is not None
    ranks = pl.read_parquet(runs / "hand" / "ranks.parquet").filter(pl.col("outcome") == best.group(1))
    assert ranks.filter(pl.col("rank") == 1)["scenario"].to_list()[0] == best.group(2)
    # the ranking change is stated against the first run, as the terminal says it
    said = ranking_changes(read_run(runs / "hand"), read_run(runs / "calibrated"))
    assert said.replace("**", "").replace("`", "") in proc.stdout
    calibration = pl.read_parquet(runs / "cal" / "ppc.parquet")
    assert f"{int(calibration['reproduced'].sum())} of {calibration.height} targets reproduced" in html


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium: make browser-deps installs it")
def test_the_decision_page_renders_in_a_browser(report, tmp_path):
    _, page = report
    shot = tmp_path / "page.png"
    browser = [str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    subprocess.run(
        [*browser, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert png_size(shot) == (WIDTH, HEIGHT)
    assert shot.stat().st_size > 50_000  # text, tables and a figure, not a blank page
    dom = subprocess.run(
        [*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    text = re.sub(r"<[^>]+>", " ", dom)
    for words in (
        "Decision page: 4 runs side by side",
        "The answer of each run",
        "The ranking in each run",
        "Did the ranking change?",
        "Effect per unit of money",
        "Targets the calibration reproduced",
        "Figures",
    ):
        assert words in text, words
    assert dom.count("<img") == page.read_text().count("data:image/png;base64,")


def test_a_directory_that_is_no_run_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("report", "empty", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "empty is not a finished kibs-mc run directory" in message
    assert not (tmp_path / "decision.html").exists()
