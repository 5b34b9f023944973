"""A wheel carries the configuration: built from the sources and installed in a fresh
environment, it runs an experiment in a directory far from the sources.

The fresh environment takes its dependencies (Ray, MLflow, ...) from the test environment
through a .pth file, so no index is needed; only kibs_mc comes from the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_environment_runs_an_experiment(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("kibs_mc", "kernels", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("kibs_mc-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for yaml in [*(REPO / "conf").rglob("*.yaml"), *(REPO / "conf").rglob("*.json")]:  # posteriors too
        assert f"kibs_mc/conf/{yaml.relative_to(REPO / 'conf')}" in shipped

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # The dependencies come from the test environment; its editable kibs_mc does not (a plain
    # path in a .pth file adds the directory, not the .pth files inside it).
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import kibs_mc; print(kibs_mc.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    proc = subprocess.run(
        [
            str(venv / "bin" / "kibs-mc"),
            "model=cowan_jonard",
            "model.agents=40",
            "model.degree=4",
            "model.categories=4",
            "replicates=2",
            "tracking=none",
            "executor=serial",
            "hydra.run.dir=run",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pl.read_parquet(work / "run" / "replicates.parquet").height == 2
