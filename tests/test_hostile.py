"""Hostile input: any override ends in a valid config or one clear ConfigError/UserError (exit 2),
never a traceback or a hang; an unreachable or locked MLflow store costs no results."""

from __future__ import annotations

import math
import socket
import sqlite3

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
    assert message and "Traceback" not in message and "\n\n" not in message, message
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,says",
    [
        (["replicates=abc"], "replicates"),
        (["model.alpha=nan"], "model.alpha"),
        (["model.agents=1e400"], "model.agents"),
        (["nosuchgroup=x"], "nosuchgroup"),
        (["executor=nosuch"], "executor"),
        (["hydra.run.dir=/etc/hostname/run"], "hydra.run.dir"),
        (["experiment=cj_docking", "replicates=100000000"], "GiB"),
        (["model.agents=10000000", "model.categories=10000"], "GiB"),
    ],
)
def test_cli_bad_input_exits_2_with_one_message(cli, args, says):
    proc = cli(*SMALL, "tracking=none", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert says in proc.stderr
    assert_clear(proc.stderr.strip())


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
