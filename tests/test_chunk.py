"""A chunk as a worker receives it: only what its model reads of the configuration, the same
rows as the driver's own copy, and neither the configuration package nor Hydra to import."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np

from kibs_mc.config import load_config
from kibs_mc.run.chunk import run_chunk
from kibs_mc.run.plan import Plan, build_scenarios
from tests.conftest import REPO

#: Unpickles a chunk (stdin) in a fresh interpreter, as a Ray worker does, runs it, and says
#: which of the configuration's modules that took.
WORKER = """
import pickle, sys
chunk = pickle.loads(sys.stdin.buffer.read())
from kibs_mc.run.chunk import run_chunk
result = run_chunk(chunk)
loaded = sorted(m for m in sys.modules if m.startswith(("kibs_mc.config", "hydra")))
sys.stdout.buffer.write(pickle.dumps((result, loaded, sorted(vars(chunk.config)))))
"""


def test_a_chunk_sent_to_a_worker_carries_its_models_groups_and_gives_the_same_rows():
    overrides = ["model=kibs", "cluster=small", "model.steps=12", "tracking=none", "replicates=3"]
    config = load_config(overrides)
    chunk = next(Plan(build_scenarios(config, overrides), 3, config.seed, 3).chunks())
    done = subprocess.run(
        [sys.executable, "-c", WORKER],
        input=pickle.dumps(chunk, protocol=5),
        capture_output=True,
        cwd=REPO,
        timeout=300,
        check=True,
    )
    result, loaded, groups = pickle.loads(done.stdout)
    assert loaded == []  # neither kibs_mc.config nor Hydra
    assert groups == ["cluster", "governance", "model"]
    here = run_chunk(chunk)
    assert result.key == here.key and not result.errors
    for name, values in here.rows.items():
        assert np.array_equal(result.rows[name], values, equal_nan=values.dtype.kind == "f"), name
    for name, values in here.timeseries.items():
        assert np.array_equal(result.timeseries[name], values), name
