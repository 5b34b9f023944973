"""The MLflow store survives runs started at once, and kibs-mc-compare answers a store it cannot
read with one line and exit 2; credentials in a tracking URI are never written."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from kibs_mc.config import load_config
from kibs_mc.experiments.pipeline import run_experiment
from kibs_mc.tracking.compare import main as compare
from kibs_mc.tracking.mlflow import connect_uri, hide_credentials

SMALL = [
    "model=cowan_jonard",
    "model.agents=60",
    "model.degree=4",
    "model.categories=5",
    "tracking=none",
    "executor=serial",
    "replicates=2",
    "figures=false",
]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_three_runs_logged_at_once_into_a_new_store_all_land_and_it_stays_readable(tmp_path, capsys):
    run_experiment(load_config(SMALL), SMALL, tmp_path / "run")
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kibs_mc.tracking", str(tmp_path / "run"), f"tracking.uri={uri}"],
            cwd=tmp_path,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-1500:] for _, err in outputs]
    assert compare(["--uri", uri, "list"]) == 0
    listed = capsys.readouterr().out
    run_ids = [out.split()[-1] for out, _ in outputs]
    assert all(run_id[:12] in listed for run_id in run_ids)
    assert compare(["--uri", uri, "show", run_ids[0], "--outcome", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'bogus'" in err and "knowledge_mean" in err


def test_compare_on_a_file_that_is_no_store_says_so_in_one_line(tmp_path, capsys):
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    assert compare(["--uri", f"sqlite:///{tmp_path / 'garbage.db'}", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kibs-mc-compare: cannot read the MLflow store") and "\n" not in err


def test_compare_on_an_unreachable_server_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert compare(["--uri", f"http://127.0.0.1:{closed_port()}", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kibs-mc-compare: cannot read the MLflow store") and "\n" not in err


def test_credentials_leave_the_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert hide_credentials("https://ann:p%40ss@mlflow.example:5000/x") == "https://mlflow.example:5000/x"
    import os

    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("ann", "p@ss")
    db = "postgresql://ann:secret@db.example/mlflow"
    assert hide_credentials(db) == "postgresql://ann:***@db.example/mlflow"
    assert connect_uri(hide_credentials(db)) == db
    assert hide_credentials("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
