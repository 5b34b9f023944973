"""Hostile input: any override ends in a valid config or one clear ConfigError/UserError (exit 2),
never a traceback or a hang; an unreachable or locked MLflow store costs no results."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kibs_mc.config import Config, load_config
from kibs_mc.errors import UserError
from kibs_mc.experiments.pipeline import run_experiment

KEYS = [
    "replicates",
    "seed",
    "resume",
    "model.agents",
    "model.degree",
    "model.categories",
    "model.alpha",
    "model.tolerance",
    "model.rewire_p",
    "model.max_meetings",
    "model.initial_max",
    "executor.num_cpus",
    "executor.chunk_size",
    "executor.max_in_flight",
    "executor.max_retries",
    "executor.kind",
    "executor.address",
    "tracking.uri",
    "tracking.enabled",
    "experiment.name",
]
GROUPS = ["model", "executor", "tracking", "experiment", "nosuchgroup", "governance", "cluster"]

values = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "true",
            "false",
            "null",
            "",
            "[]",
            "[1,2]",
            "{a:1}",
            "${oops}",
            "${model.agents}",
            "'quoted'",
            "a b",
            "=",
            "0x10",
            "1_000",
            "serial",
            "ray",
            "cowan_jonard",
            "none",
            "mlflow",
            "cj_docking",
            "../../etc",
            "/nonexistent/dir",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
keys = st.one_of(
    st.sampled_from(KEYS), st.sampled_from(GROUPS), st.text(alphabet="abcxyz._", min_size=1, max_size=10)
)
overrides = st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=3).map(
    lambda ovs: ["model=cowan_jonard", *ovs]
)


def assert_clear(message: str) -> None:
    """One line of bounded length, no traceback."""
    assert message and "Traceback" not in message and "\n" not in message, message
    assert len(message) < 1500, message


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides)
def test_any_override_gives_a_valid_config_or_one_clear_error(ovs):
    try:
        config = load_config(ovs)
    except UserError as error:  # ConfigError is a UserError: the CLI exits 2 with it
        assert_clear(str(error))
        return
    assert isinstance(config, Config)
    assert 1 <= config.replicates <= 100_000_000
    for value in (config.model.alpha, config.model.rewire_p, config.model.tolerance):
        assert math.isfinite(value)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SMALL = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "replicates=4",
    "executor=serial",
]


def calibration_copy(source: Path, dest: Path, edit_point=None, edit_weights=None) -> Path:
    """A copy of a finished calibration run with its calibration.json or posterior weights edited."""
    shutil.copytree(source, dest)
    if edit_point is not None:
        path = dest / "calibration.json"
        saved = json.loads(path.read_text())
        edit_point(saved["mean"])
        path.write_text(json.dumps(saved))
    if edit_weights is not None:
        path = dest / "posterior.parquet"
        frame = pl.read_parquet(path)
        frame.with_columns(weight=pl.Series(edit_weights(frame["weight"].to_list()))).write_parquet(path)
    return dest


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """A finished calibration of model.tie_decay (prior 0.01-0.5): the other runs' files that
    calibration.use and uncertainty.posterior read."""
    run_dir = tmp_path_factory.mktemp("calibration") / "run"
    args = [
        "experiment=calibrate",
        *KIBS,
        "calibration.parameters=[{key: model.tie_decay, low: 0.01, high: 0.5}]",
        "calibration.targets=synthetic",
        "calibration.template=recovery",
        "calibration.truth.model.tie_decay=0.1",
        "calibration.population=8",
        "calibration.generations=1",
        "calibration.ppc_draws=4",
        "calibration.synthetic_replicates=2",
    ]
    run_experiment(load_config(args), args, run_dir)
    return run_dir


KIBS = ["cluster=small", "model.steps=12", "tracking=none", "executor=serial"]
USE = (*KIBS, "replicates=2", "calibration.use={cal}")
CJ = tuple(o for o in SMALL if not o.startswith("replicates="))
HEADER = "# @package _global_\n"
#: Eight lines of YAML that stand for 9**8 (43 million) values.
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 8)
)
POSTERIOR = ("experiment=robustness", "uncertainty=posterior", "uncertainty.posterior={cal}", *KIBS)


def point(**values):
    """An edit of calibration.json's posterior mean (None removes the key)."""

    def edit(mean: dict) -> None:
        for key, value in values.items():
            key = key.replace("__", ".")
            if value is None:
                mean.pop(key)
            else:
                mean[key] = value

    return edit


def weights(first=None, every=None):
    """An edit of the last generation's posterior weights."""
    return lambda w: [every] * len(w) if every is not None else [first, *w[1:]]


@dataclass(frozen=True)
class Hostile:
    """One hostile input: the overrides (``{cal}``: a copy of the calibration run, edited by
    ``point``/``weights``; ``{tmp}``: the test's directory), what the one line must name, and
    whether it goes through the kibs-mc command (exit status 2) or the API (UserError)."""

    args: tuple[str, ...]
    says: str
    point: Callable | None = None
    weights: Callable | None = None
    cli: bool = False
    files: tuple[tuple[str, str], ...] = ()  # (path under the test's directory, text) written first


HOSTILE = {
    # the command line, through kibs-mc (exit status 2)
    "replicates not a number": Hostile((*SMALL, "replicates=abc"), "replicates", cli=True),
    "NaN alpha": Hostile((*SMALL, "model.alpha=nan"), "model.alpha", cli=True),
    "agents 1e400": Hostile((*SMALL, "model.agents=1e400"), "model.agents", cli=True),
    "unknown group": Hostile((*SMALL, "nosuchgroup=x"), "nosuchgroup", cli=True),
    "unknown executor": Hostile((*SMALL, "executor=nosuch"), "executor", cli=True),
    "executor kind of another option": Hostile(
        (*SMALL, "executor=serial", "executor.kind=ray"), "executor=ray or executor=serial", cli=True
    ),
    "run dir below a file": Hostile((*SMALL, "hydra.run.dir=/etc/hostname/run"), "hydra.run.dir", cli=True),
    "too many replicates": Hostile(
        (*SMALL, "experiment=cj_docking", "replicates=100000000"), "GiB", cli=True
    ),
    "too large a model": Hostile(
        (*SMALL, "model.agents=10000000", "model.categories=10000"), "GiB", cli=True
    ),
    # calibration.json of calibration.use: only the calibration's parameters, finite, in the prior
    "point sets the seed": Hostile(USE, "mean.seed=1", point(seed=1), cli=True),
    "point sets replicates": Hostile(USE, "mean.replicates=1", point(replicates=1)),
    "point outside the prior": Hostile(USE, "mean.model.tie_decay=0.9", point(model__tie_decay=0.9)),
    "point NaN": Hostile(USE, "mean.model.tie_decay=nan", point(model__tie_decay=math.nan)),
    "point not a number": Hostile(USE, "mean.model.tie_decay='abc'", point(model__tie_decay="abc")),
    "point missing": Hostile(USE, "every calibrated parameter", point(model__tie_decay=None)),
    "not a calibration": Hostile((*KIBS, "calibration.use={tmp}"), "calibration.use"),
    # posterior.parquet of uncertainty.posterior: weights finite, >= 0, of positive total
    "negative weight": Hostile(POSTERIOR, "weight[0]=-0.01", weights=weights(-0.01)),
    "infinite weight": Hostile(POSTERIOR, "weight[0]=inf", weights=weights(math.inf)),
    "NaN weight": Hostile(POSTERIOR, "weight[0]=nan", weights=weights(math.nan)),
    "zero weights": Hostile(POSTERIOR, "positive total", weights=weights(every=0.0)),
    # files of the user's: plain YAML of a sane size, read as data
    "python tag in an experiment file": Hostile(
        (*SMALL, "--config-dir={tmp}/conf", "experiment=evil"),
        "could not determine a constructor for the tag",
        files=(
            (
                "conf/experiment/evil.yaml",
                f"{HEADER}experiment:\n  name: !!python/object/apply:os.getcwd []\n",
            ),
        ),
        cli=True,
    ),
    "broken YAML in an experiment file": Hostile(
        (*SMALL, "hydra.searchpath=[file://{tmp}/conf]", "experiment=broken"),
        "line 4, column 1: expected ',' or ']'",
        files=(("conf/experiment/broken.yaml", f"{HEADER}experiment:\n  name: [unclosed\n"),),
    ),
    "alias bomb in an experiment file": Hostile(
        (*SMALL, "hydra.searchpath=[file://{tmp}/conf]", "experiment=bomb"),
        "alias bomb",
        files=(("conf/experiment/bomb.yaml", HEADER + BOMB + "experiment:\n  scenarios: *a7\n"),),
    ),
    "alias bomb in a targets file": Hostile(
        (*KIBS, "experiment=calibrate", "calibration.targets={tmp}/bomb.yaml"),
        "alias bomb",
        files=(("bomb.yaml", BOMB + "targets: [*a7]\n"),),
        cli=True,
    ),
    # where the run goes, and what the messages show
    "run directory outside outputs/": Hostile(
        (*SMALL, "experiment.name=../../../escaped"), "experiment.name", cli=True
    ),
    "environment value": Hostile(
        (*SMALL, "executor.kind=${oc.env:PATH}"), "executor.kind='${oc.env:PATH}'", cli=True
    ),
    "very long value": Hostile((*SMALL, "experiment.name=" + "x/" * 3000), "... (cut)"),
    # a multirun: each swept value checked up front, a refusal said once
    "bad sweep value": Hostile(("-m", *CJ, "replicates=4,abc"), "replicates='abc'", cli=True),
    "bad sweep value between good ones": Hostile(
        ("-m", *CJ, "model.alpha=0.1,2,0.3", "hydra.sweep.dir={tmp}/sweep"),
        "model.alpha=2.0 is not allowed",
        cli=True,
    ),
    "refusal common to every job": Hostile(
        ("-m", *CJ, "calibration.use={tmp}", "replicates=2,3"), "calibration.use", cli=True
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_ends_in_one_line_naming_it_before_any_work(name, request, tmp_path, cli):
    case = HOSTILE[name]
    cal = ""
    for name, text in case.files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    if case.point is not None or case.weights is not None:
        source = request.getfixturevalue("calibration")
        cal = str(calibration_copy(source, tmp_path / "cal", case.point, case.weights))
    args = [*(a.replace("{cal}", cal).replace("{tmp}", str(tmp_path)) for a in case.args), "tracking=none"]
    if case.cli:
        proc = cli(*args, "hydra.run.dir=run", timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        message = proc.stderr.strip()
    else:
        with pytest.raises(UserError) as error:
            run_experiment(load_config(args), args, tmp_path / "run")
        message = f"kibs-mc: {error.value}"
    assert case.says in message
    assert_clear(message)
    assert os.environ["PATH"] not in message
    assert not (tmp_path / "run" / "chunks").exists() or not any((tmp_path / "run" / "chunks").iterdir())
    assert not (tmp_path / "sweep").exists()  # a multirun's jobs: none ran


@pytest.mark.slow
def test_unreachable_mlflow_keeps_results_and_says_how_to_log_later(cli, tmp_path):
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    proc = cli(*SMALL, f"tracking.uri=http://127.0.0.1:{closed_port()}", "hydra.run.dir=run", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert pl.read_parquet(tmp_path / "run" / "replicates.parquet").height == 4
    assert "python -m kibs_mc.tracking" in proc.stderr and "Traceback" not in proc.stderr
    # ... and the later logging works once a store is there.
    import subprocess
    import sys

    later = subprocess.run(
        [
            sys.executable,
            "-m",
            "kibs_mc.tracking",
            str(tmp_path / "run"),
            f"tracking.uri=sqlite:///{tmp_path / 'later.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert later.returncode == 0, later.stderr[-2000:]
    assert "logged" in later.stdout


def test_locked_mlflow_store_keeps_results(tmp_path, monkeypatch, capsys):
    import mlflow

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(mlflow, "set_experiment", locked)
    args = [*SMALL, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"]
    result = run_experiment(load_config(args), args, tmp_path / "run")
    assert result.mlflow_run_id is None and result.rows.height == 4
    assert (tmp_path / "run" / "replicates.parquet").exists()
    err = capsys.readouterr().err
    assert "database is locked" in err and f"python -m kibs_mc.tracking {tmp_path / 'run'}" in err


def test_scientific_notation_is_a_number_wherever_a_number_is_read(tmp_path):
    from kibs_mc.analysis.targets import load_targets
    from kibs_mc.config import CONF_DIR

    assert load_config([*SMALL, "replicates=1e2"]).replicates == 100  # an integer setting
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "sci.yaml").write_text(f"{HEADER}model:\n  alpha: 2e-1\n")
    assert load_config([*SMALL, f"hydra.searchpath=[file://{tmp_path}]", "experiment=sci"]).model.alpha == 0.2
    recovery = (CONF_DIR / "targets" / "recovery.yaml").read_text()
    (tmp_path / "sci.yaml").write_text(re.sub(r"scale: [0-9.]+", "scale: 2e-1", recovery))
    assert {t.scale for t in load_targets(str(tmp_path / "sci.yaml"), CONF_DIR)} == {0.2}
