"""End to end against a real MLflow tracking server on 127.0.0.1 (started as ``make ui`` starts
it), read back through its REST API."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

pytestmark = pytest.mark.slow  # an MLflow server of its own, runs through the CLI


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
def ui_server(tmp_path_factory):
    """One server for the module's tests (each logs to its own experiment), started as ``make
    ui`` starts it (``python -m kibs_mc.tracking.ui``): it takes a while to start. Yields its
    address, the line ``make ui`` printed once it answered, and the process."""
    tmp_path = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kibs_mc.tracking.ui",
            "--uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "server.log", "w"),
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    printed = []
    for line in proc.stdout:  # ends when the command does (it failed to start the server)
        printed.append(line)
        if "ready after" in line:
            break
    else:
        proc.kill()
        pytest.fail(
            "make ui did not start the server: "
            + "".join(printed)
            + (tmp_path / "server.log").read_text()[-2000:]
        )
    yield f"http://127.0.0.1:{port}", printed[-1], proc
    proc.send_signal(signal.SIGINT)  # as Ctrl-C: it stops its server
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def mlflow_server(ui_server):
    return ui_server[0]


def test_make_ui_prints_its_address_once_it_answers_and_runs_light(ui_server):
    import psutil

    base, line, proc = ui_server
    assert f"{base}/" in line
    with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
        assert r.status == 200
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert len(tree) <= 4  # the command, the server, one worker (no job runner)
    page = next(word for word in line.split() if word.startswith("http://"))
    with urllib.request.urlopen(page, timeout=10) as r:
        assert r.status == 200  # the page it names


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
    # As users expect: the experiment opens on its runs; the run is named after the experiment
    # and its overrides, described by its executive summary, and carries the decision.
    kind = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert kind.get("mlflow.experimentKind") == "custom_model_development"
    parent = parents[0]
    assert (
        parent["info"]["run_name"]
        == "cj_docking model=cowan_jonard model.agents=80 model.degree=4 replicates=6"
    )
    note = tags(parent)["mlflow.note.content"]
    assert note.startswith("- **Best for `knowledge_mean`") and "Results: `" in note
    decision = {m["key"] for m in parent["data"]["metrics"]}
    assert {f"knowledge_mean/rank/{p}" for p in ("p:0", "p:0.3", "p:1")} <= decision
    assert "knowledge_mean/effect/p:0.3" in decision and "wall_seconds" in decision


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
