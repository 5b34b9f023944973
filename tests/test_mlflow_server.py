"""End to end against a real MLflow tracking server on 127.0.0.1, read back through its REST API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base: str, path: str, **params) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{base}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """One server for the module's tests (each logs to its own experiment): it takes a while
    to start."""
    tmp_path = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("mlflow server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.5)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_experiment_child_runs_tags_metrics_and_plots_reach_the_server(mlflow_server, cli):
    proc = cli(
        "model=cowan_jonard",
        "model.agents=80",
        "model.degree=4",
        "experiment=cj_docking",
        "replicates=6",
        "executor=serial",
        f"tracking.uri={mlflow_server}",
        "tracking.experiment_name=server-test",
        "hydra.run.dir=run",
    )
    assert proc.returncode == 0, proc.stderr
    experiment = get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="server-test")[
        "experiment"
    ]
    runs = post(
        mlflow_server,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment["experiment_id"]], "max_results": 100},
    )["runs"]

    def tags(run):
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    parents = [r for r in runs if "mlflow.parentRunId" not in tags(r)]
    assert len(parents) == 1
    parent_id = parents[0]["info"]["run_id"]
    children = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent_id]
    assert sorted(tags(c)["kibs_mc.scenario"] for c in children) == sorted(
        ["p=0", "p=0.01", "p=0.03", "p=0.1", "p=0.3", "p=1"]
    )
    p03 = next(c for c in children if tags(c)["kibs_mc.scenario"] == "p=0.3")
    assert tags(p03)["override.model.rewire_p"] == "0.3"
    metrics = {m["key"]: m["value"] for m in p03["data"]["metrics"]}
    low, mean, high = (metrics[f"knowledge_mean_{s}"] for s in ("ci_low", "mean", "ci_high"))
    assert low < mean < high
    assert "knowledge_mean_effect" in metrics  # paired effect against p=0
    files = {
        f["path"]
        for f in get(mlflow_server, "/api/2.0/mlflow/artifacts/list", run_id=parent_id).get("files", [])
    }
    assert {"effects.png", "distributions.png", "report.html", "replicates.parquet"} <= files


def test_credentials_in_the_tracking_uri_are_sent_but_never_written(mlflow_server, cli, tmp_path):
    """user:password in tracking.uri reach the server as basic auth (MLFLOW_TRACKING_USERNAME /
    _PASSWORD), not the run directory, Hydra's files, the terminal, params or artifacts."""
    secret = "s3cret-pw"
    authed = mlflow_server.replace("http://", f"http://ann:{secret}@")
    proc = cli(
        "model=cowan_jonard",
        "model.agents=60",
        "model.degree=4",
        "replicates=2",
        "executor=serial",
        f"tracking.uri={authed}",
        "tracking.experiment_name=secret-test",
        "hydra.run.dir=run",
    )
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not written
    experiment = get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="secret-test")[
        "experiment"
    ]
    runs = post(
        mlflow_server,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment["experiment_id"]], "max_results": 10},
    )["runs"]
    assert runs and secret not in json.dumps(runs)
    params = {p["key"]: p["value"] for r in runs for p in r["data"].get("params", [])}
    assert params["tracking.uri"] == mlflow_server
