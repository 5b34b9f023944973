"""The README as a user reads it: every command it shows composes into a valid configuration,
the quick ones run, its own-experiment example runs from a folder of the user's own (found with
``--config-dir``) and says what it claims, and a file without its header is refused with a
message that says so."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import polars as pl
import pytest
import yaml

from kibs_mc.config import load_config

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
    scenarios = dict((name, own) for name, own in plan["scenarios"])
    assert scenarios["information_2x"] == spec["experiment"]["scenarios"][2]["overrides"]  # reached the plan


def test_the_readme_example_costs_twice_the_default_as_it_says():
    """ "Twice as much" is twice the configured default unit cost, not a value picked by eye."""
    spec = yaml.safe_load(readme_example())
    scenario = next(s for s in spec["experiment"]["scenarios"] if s["name"] == "information_2x")
    value = next(o for o in scenario["overrides"] if o.startswith("governance.unit_cost.information="))
    default = load_config([]).governance.unit_cost.information
    assert float(value.partition("=")[2]) == pytest.approx(2 * default)
    assert f"its default is {default:g}" in REPO.joinpath("README.md").read_text()


def readme_commands() -> list[list[str]]:
    """Every ``kibs-mc`` command line of the README's bash blocks, as its arguments."""
    blocks = re.findall(r"```bash\n(.*?)```", REPO.joinpath("README.md").read_text(), re.S)
    blocks = [block.replace("\\\n", " ") for block in blocks]  # continued lines
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("kibs-mc ")]
    return [args for args in commands if args[0] != "report"]  # tested in test_decision_page


def as_overrides(args: list[str], folder) -> list[str]:
    """A README command's overrides as ``load_config`` takes them: placeholders such as
    ``<run dir>`` filled in, a sweep's first value, ``--config-dir`` as Hydra's search path."""
    out, it = [], iter(args)
    for arg in it:
        if arg == "--config-dir":
            out.append(f"hydra.searchpath=[file://{folder / next(it)}]")
        elif arg == "--cfg":
            next(it)  # its value: job, hydra or all
        elif arg.startswith("-"):
            continue  # -m, --cfg job, --help: run by Hydra, checked below
        elif not arg.startswith("hydra."):
            key, _, value = arg.partition("=")
            out.append(f"{key}={re.sub(r'<[^>]*>', 'x', value).split(',')[0]}")
    return out


def test_every_readme_command_composes_into_a_valid_configuration(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 10  # the blocks of examples were found
    experiment = tmp_path / "my_experiments" / "experiment"
    experiment.mkdir(parents=True)
    experiment.joinpath("my_costs.yaml").write_text(readme_example())
    for args in commands:
        config = load_config(as_overrides(args, tmp_path))  # a bad key or value raises here
        for arg in as_overrides(args, tmp_path):
            key, _, value = arg.partition("=")
            if key in ("experiment", "model", "cluster", "governance"):
                assert getattr(config, key).name == value, arg  # the group option took


@pytest.mark.parametrize("args", [["--cfg", "job"], ["--help"]])
def test_the_quick_readme_commands_run(args, tmp_path):
    assert args[0] in {a for command in readme_commands() for a in command} | {"--help"}
    proc = run_cli(*args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("replicates:" in proc.stdout) if args[0] == "--cfg" else ("experiment=" in proc.stdout)


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


def test_make_ui_starts_the_light_server_that_prints_its_address():
    dry = subprocess.run(["make", "-n", "ui"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "-m kibs_mc.tracking.ui" in dry.stdout  # tested against a real server in test_mlflow_server


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("replicate=3", "'replicates'"),
        ("governance.unit_cost.informaton=0.04", "'governance.unit_cost.information'"),
        ("governance=informaton", "'governance=information'"),
    ],
)
def test_a_mistyped_key_or_option_is_refused_naming_the_closest_one(override, suggestion, tmp_path):
    proc = run_cli(override, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and message.endswith(f"Did you mean {suggestion}?")


def test_help_explains_kibs_mc_before_hydras_list(tmp_path):
    proc = run_cli("--help", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for word in ("experiment=", "compare_governance", "calibrate", "robustness", "replicates=", "README.md"):
        assert word in out, word
    assert out.index("docs/ODD.md") < out.index("== Configuration groups ==")
    assert "kibs-mc is powered by Hydra" in out and "cli is powered" not in out
