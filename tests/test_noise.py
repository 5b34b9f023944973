"""No noise around the results: no Ray token warning, no urllib3 retry
warnings and a log-later hint with the real URI, effect plots whose axis labels do not overlap."""

from __future__ import annotations

import os
import socket

import polars as pl
import pytest

from kibs_mc.analysis import plots

from .conftest import run_cli

SMALL = ["model=cowan_jonard", "model.agents=40", "model.degree=4", "model.categories=4", "replicates=2"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_an_unreachable_store_fails_at_once_and_the_hint_names_its_uri(tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    proc = run_cli(*SMALL, "executor=serial", f"tracking.uri={uri}", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Retrying" not in proc.stderr + proc.stdout
    assert "cannot connect to 127.0.0.1" in proc.stderr
    assert f"python -m kibs_mc.tracking {tmp_path / 'run'} tracking.uri={uri}" in proc.stderr


@pytest.mark.slow
def test_a_local_ray_cluster_starts_without_the_token_warning(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    proc = run_cli(*SMALL, "executor=ray", "executor.num_cpus=1", "tracking=none", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Token authentication" not in proc.stderr


def test_effect_plot_axis_labels_do_not_overlap(tmp_path, monkeypatch):
    overlaps = []

    def check(fig, title, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
            boxes.sort(key=lambda b: b.x0)
            overlaps.extend(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:], strict=False))
        plots.plt.close(fig)
        return path

    monkeypatch.setattr(plots, "_save", check)
    # network density effects of the default cluster: small, of both signs (these overlapped
    # with matplotlib's default of up to 9 ticks: -0.002, 0.000, ..., 0.012 in 4 inches)
    for scale in (3e-5, 3e-4, 3e-3):
        effect = [-1.42 * scale, 1.28 * scale, 1.2 * scale, 42.6 * scale, 11.4 * scale]
        effects = pl.DataFrame(
            {
                "scenario": ["strategic", "management", "business", "information", "all_four"],
                "outcome": ["network_density"] * 5,
                "baseline": ["baseline"] * 5,
                "effect": effect,
                "ci_low": [x - 0.9 * scale for x in effect],
                "ci_high": [x + 0.9 * scale for x in effect],
                "significant": [True] * 5,
            }
        )
        plots.forest_plot(effects, ["network_density"], tmp_path / "effects.png")
    assert len(overlaps) > 3 and not any(overlaps)
