"""The README's own-experiment example, run as a user would (issue 17 item 4): a file in a
folder of their own, found with ``--config-dir``, and the message when its header is missing."""

from __future__ import annotations

import json
import re
import subprocess

import polars as pl
import pytest
import yaml

from .conftest import REPO, run_cli

FAST = ["cluster=small", "model.steps=10", "replicates=2", "executor=serial", "tracking=none"]


def readme_example() -> str:
    """The YAML block of the README's section "Your own experiments"."""
    section = REPO.joinpath("README.md").read_text().split("### Your own experiments", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


@pytest.mark.slow
def test_the_readme_example_runs_from_a_folder_of_your_own(tmp_path):
    text = readme_example()
    spec = yaml.safe_load(text)
    folder = tmp_path / "my_experiments" / "experiment"
    folder.mkdir(parents=True)
    (folder / f"{spec['experiment']['name']}.yaml").write_text(text)
    proc = run_cli(
        "--config-dir",
        "my_experiments",
        f"experiment={spec['experiment']['name']}",
        *FAST,
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pl.read_parquet(tmp_path / "run" / "replicates.parquet")
    assert rows["scenario"].unique(maintain_order=True).to_list() == [
        s["name"] for s in spec["experiment"]["scenarios"]
    ]
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert ["information_2x", ["governance=information", "governance.unit_cost.information=2"]] in plan[
        "scenarios"
    ]  # the file's overrides reached the plan


@pytest.mark.slow
def test_an_experiment_file_without_its_header_is_refused_with_a_message_that_says_so(tmp_path):
    text = readme_example()
    assert text.startswith("# @package _global_\n")
    folder = tmp_path / "mine" / "experiment"
    folder.mkdir(parents=True)
    (folder / "headless.yaml").write_text(text.split("\n", 1)[1])
    proc = run_cli("--config-dir", "mine", "experiment=headless", *FAST, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "# @package _global_" in message and str(folder / "headless.yaml") in message
    missing = run_cli("--config-dir", "mine", "experiment=nosuch", *FAST, cwd=tmp_path)
    assert missing.returncode == 2 and "headless" in missing.stderr  # the folder's files are choices


def test_make_ui_says_how_long_the_ui_takes_to_answer():
    dry = subprocess.run(["make", "-n", "ui"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "answers after" in dry.stdout
