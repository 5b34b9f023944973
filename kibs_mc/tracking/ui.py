"""``make ui`` (``python -m kibs_mc.tracking.ui``): the MLflow UI for the local store, light.

One MLflow server process with one worker and without MLflow's background job runner (which
serves GenAI evaluation jobs, not experiment runs), on 127.0.0.1. It prints the address of the
runs of the ``kibs-mc`` experiment once the server answers, and stops with Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

#: How long the server may take to answer before the command gives up (exit 1).
START_SECONDS = 240.0


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def experiment_page(base: str, uri: str, name: str) -> str:
    """The address of the experiment's runs view (the UI's home page if it has no runs yet)."""
    from kibs_mc.tracking.mlflow import EXPERIMENT_KIND, connect_uri, store_lock

    try:
        from mlflow.tracking import MlflowClient

        with store_lock(uri):
            client = MlflowClient(tracking_uri=connect_uri(uri))
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                return f"{base}/"
            client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)  # older stores
        return f"{base}/#/experiments/{experiment.experiment_id}/runs"
    except Exception:  # noqa: BLE001 - the page still works from its home
        return f"{base}/"


def server_command(uri: str, host: str, port: int) -> list[str]:
    mlflow = str(Path(sys.executable).parent / "mlflow")
    return [
        mlflow,
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make ui", description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="sqlite:///mlflow.db", help="the MLflow store")
    parser.add_argument("--experiment", default="kibs-mc", help="the experiment to open")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    host = "127.0.0.1"
    base = f"http://{host}:{args.port}"
    if answers(f"{base}/health"):
        print(f"make ui: something already answers on {base}; stop it or pass --port", file=sys.stderr)
        return 2
    for stop in (signal.SIGINT, signal.SIGTERM):  # also where the shell ignores Ctrl-C (a background job)
        signal.signal(stop, _stop)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"make ui: starting the MLflow UI for {args.uri} (about 10-60 s)...", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(server_command(args.uri, host, args.port), env=env, start_new_session=True)
    try:
        while not answers(f"{base}/health"):
            if proc.poll() is not None or time.monotonic() - started > START_SECONDS:
                print(
                    f"make ui: the MLflow server did not start (exit status {proc.poll()})", file=sys.stderr
                )
                return 1
            time.sleep(0.5)
        page = experiment_page(base, args.uri, args.experiment)
        print(
            f"make ui: ready after {time.monotonic() - started:.0f} s: {page}  (Ctrl-C stops it)", flush=True
        )
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
