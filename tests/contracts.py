"""The contract suites of the three extension points, as Optuna's ``StorageTestCase``: a class
of tests per contract, whose tests take a fixture that the concrete class gives. Each
implementation is a subclass of a few lines in its test module:

- :class:`ExecutorContract` (``kibs_mc.run.executor.base.Executor``): fixture ``settings``,
  the executor's settings as a dict (``kind`` and its ``executor`` group's fields);
- :class:`ModelContract` (``kibs_mc.models.base.Model``): fixture ``overrides``, a small
  configuration of the model;
- :class:`KindContract` and :class:`PlannedKindContract` (``ExperimentKind``): fixture
  ``overrides``, a tiny experiment of the kind.

Checks that need a process of their own run importable functions of this module in a fresh
interpreter (:func:`tests.fresh.call_fresh`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from kibs_mc.config import EXECUTOR_SCHEMAS, SIMULATION, keys_of, load_config
from kibs_mc.errors import ExecutionError
from tests.fresh import call_fresh

# ------------------------------------------------------------------ executors


def square(i: int) -> int:
    time.sleep(0.01)
    return i * i


def fails_at_7(i: int) -> int:
    if i == 7:
        raise ValueError("item 7 is bad")
    time.sleep(0.01)
    return i


def executor_from(settings: dict) -> Any:
    """The executor of ``settings`` (``kind`` and its settings' fields), as the pipeline makes it."""
    from kibs_mc.run.executor import make_executor

    return make_executor(EXECUTOR_SCHEMAS[settings["kind"]](**settings))


def _ray_running() -> bool:
    import ray

    return ray.is_initialized()


def executor_streams(settings: dict) -> dict:
    """The contract's checks in one fresh interpreter: an executor given nothing to do, then
    the stream checks one after another on ONE executor (as a pipeline uses it: many streams,
    some abandoned, one failing; the failing stream comes last), then that executor closed
    (twice): what it started must be gone."""
    taken: list[int] = []

    def items():
        for i in range(10_000):
            taken.append(i)
            yield i

    got: dict[str, Any] = {}
    with executor_from(settings) as ex:  # first, in a process where nothing has started yet
        got["empty"] = list(ex.map_unordered(square, []))
        got["empty_started"] = settings["kind"] != "serial" and _ray_running()
    got["attaching"] = "RAY_ADDRESS" in os.environ

    with executor_from(settings) as ex:
        computed: list[int] = []
        ex.on_computed = computed.append  # may be called from another thread: list.append is atomic
        pairs, late = [], []
        for item, result in ex.map_unordered(square, range(60)):
            pairs.append((item, result))
            if item not in computed:
                late.append(item)
        ex.on_computed = None
        got.update(items=[i for i, _ in pairs], results=[r for _, r in pairs], workers=ex.workers)
        got.update(computed=sorted(computed), reported_late=late)

        stream = ex.map_unordered(square, items())
        got["first"] = next(stream)
        got["drawn"] = len(taken)
        stream.close()

        rounds = []
        for _ in range(3):
            stream = ex.map_unordered(square, range(200))
            next(stream)
            stream.close()
            rounds.append(sorted(i for i, _ in ex.map_unordered(square, range(30))))
        got["rounds"] = rounds

        seen, error = [], None
        try:
            for i, _ in ex.map_unordered(fails_at_7, range(20)):
                seen.append(i)
        except ExecutionError as exc:
            error = ["ExecutionError", str(exc)]
        except ValueError as exc:
            error = ["ValueError", str(exc)]
        got.update(seen=seen, error=error)
    ex.close()  # again: closing is idempotent
    if settings["kind"] != "serial":
        from kibs_mc.run.executor.ray import wait_for_shutdown

        wait_for_shutdown()
    got["running"] = settings["kind"] != "serial" and _ray_running()
    return got


class ExecutorContract:
    """The executor contract (``kibs_mc.run.executor.base.Executor``), checked against its
    promises and the serial oracle's results. A subclass gives ``settings``; ``env`` (the fresh
    interpreter's environment) and ``cluster`` (a cluster it attaches to) where needed.

    The checks run in one fresh interpreter per executor (:func:`executor_streams`), where no
    Ray cluster runs before the executor starts one."""

    #: Where ``fn``'s own exception surfaces: ``ValueError`` as is (the item ran in this
    #: process), or ``ExecutionError`` naming the cause (it ran, or may run, elsewhere).
    failure = "ExecutionError"

    @pytest.fixture(scope="class")
    def settings(self) -> dict:
        raise NotImplementedError("a subclass gives the executor's settings")

    @pytest.fixture(scope="class")
    def cluster(self) -> Any:
        return None  # no cluster to attach to

    @pytest.fixture(scope="class")
    def env(self, cluster: Any) -> dict[str, str]:
        if cluster is None:
            return {}
        return {
            **{k: v for k, v in cluster.client_env().items() if k.startswith("RAY_")},
            "RAY_ADDRESS": cluster.address,
        }

    @pytest.fixture(scope="class")
    def streams(self, settings: dict, env: dict[str, str]) -> dict:
        return call_fresh(executor_streams, settings, env=env)

    def test_every_item_is_yielded_exactly_once_with_its_own_result(self, streams):
        assert sorted(streams["items"]) == list(range(60))
        assert all(r == i * i for i, r in zip(streams["items"], streams["results"], strict=True))
        assert streams["workers"] >= 1

    def test_progress_hears_of_every_item_once_and_before_it_is_yielded(self, streams):
        assert streams["computed"] == list(range(60)), "on_computed missed or repeated an item"
        assert streams["reported_late"] == [], "on_computed was called after its item was yielded"

    def test_items_are_taken_lazily(self, streams):
        assert streams["first"][1] == streams["first"][0] ** 2
        assert streams["drawn"] < 10_000 // 2, "the executor drew the whole iterable before the first result"

    def test_an_abandoned_stream_leaves_the_executor_usable_again(self, streams):
        # Three rounds: a forced cancel could kill a worker Ray had just handed the next
        # stream's task (on an attached cluster that failed every time within five rounds), and
        # a cooperative one could end the driver in Ray's "Tried to complete task that was not
        # pending" (ray.py _forget).
        assert streams["rounds"] == [list(range(30))] * 3

    def test_a_failing_item_raises_after_the_other_results_it_holds(self, streams):
        assert streams["error"] is not None, "the failure of item 7 was swallowed"
        assert 7 not in streams["seen"]
        if self.failure == "ValueError":  # the function's own error, let through
            assert streams["error"] == ["ValueError", "item 7 is bad"]
        else:  # remote (or driver-side) failures are the executor's error, naming the cause
            assert streams["error"][0] == "ExecutionError" and "item 7 is bad" in streams["error"][1]

    def test_an_empty_iterable_yields_nothing_and_starts_nothing(self, streams):
        assert streams["empty"] == []
        # A local cluster is not started for nothing (attaching connects at construction).
        assert not streams["empty_started"] or streams["attaching"]

    def test_close_releases_only_what_the_executor_started(self, streams, cluster):
        assert not streams["running"], "the cluster the executor started still runs after close"
        if cluster is not None:  # the cluster it attached to still runs, with all its CPUs
            cluster.wait_for_cpus(2, timeout=30)

    def test_the_executor_is_registered_with_its_settings(self, settings):
        from kibs_mc.run.executor import EXECUTORS

        registered = EXECUTORS[settings["kind"]]
        assert registered.name == settings["kind"]
        assert registered.schema is EXECUTOR_SCHEMAS[settings["kind"]]
        assert registered.local_workers(registered.schema(**settings)) >= 0
        config = load_config([f"executor={settings['kind']}"])
        assert isinstance(config.executor, registered.schema)


# ------------------------------------------------------------------ models

#: The seed of the contract's replicates.
SEED = 12345


def _plain(value: Any) -> Any:
    """A JSON value of a replicate's outcome (NumPy scalars as Python numbers)."""
    return value.item() if isinstance(value, np.generic) else value


def simulated_row(overrides: list[str], seed: int) -> dict:
    """One replicate's outcome row, computed in this interpreter."""
    from kibs_mc.models import get_model

    config = load_config(overrides)
    row, _ = get_model(config.model.name).simulate(config, seed)
    return {k: _plain(v) for k, v in row.items()}


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


class ModelContract:
    """A model's promises (``kibs_mc.models.base.Model``). A subclass gives ``overrides``: a
    configuration of the model small enough for a replicate to take about a second."""

    @pytest.fixture(scope="class")
    def overrides(self) -> list[str]:
        raise NotImplementedError("a subclass gives a small configuration of its model")

    @pytest.fixture(scope="class")
    def config(self, overrides: list[str]) -> Any:
        return load_config(overrides)

    @pytest.fixture(scope="class")
    def model(self, config: Any) -> Any:
        from kibs_mc.models import get_model

        return get_model(config.model.name)

    @pytest.fixture(scope="class")
    def replicate(self, model: Any, config: Any) -> tuple[dict, Any]:
        return model.simulate(config, SEED)

    def test_the_model_is_registered_under_its_name_and_its_schema_names_it(self, model, config):
        from kibs_mc.models import MODELS

        assert MODELS[model.name] is model
        assert isinstance(config.model, model.schema) and config.model.name == model.name
        names = {f.name: f for f in dataclasses.fields(model.schema)}
        assert names["name"].metadata.get("choices") == (model.name,)

    def test_its_declarations_name_its_outcomes_and_groups(self, model):
        outcomes = set(model.outcomes)
        assert set(model.headline) <= outcomes and model.headline
        assert set(model.lower_is_better) <= outcomes
        assert model.cost is None or model.cost in outcomes
        assert set(model.tags) <= set(model.groups)
        assert set(model.groups) <= set(keys_of(SIMULATION))  # the root Config has its groups

    def test_a_replicate_has_every_outcome_in_order_with_its_type(self, model, replicate):
        """The row is the outcomes in order, then exactly the model's records (``accounts``,
        in order, none named like an outcome), each a scalar of its declared type."""
        row, _ = replicate
        assert not set(model.outcomes) & set(model.accounts)
        assert list(row) == [*model.outcomes, *model.accounts]
        for name, dtype in {**model.outcomes, **model.accounts}.items():
            assert np.asarray(row[name]).astype(dtype).shape == (), name

    def test_the_time_series_are_equal_columns_with_the_announced_rows(self, model, config, replicate):
        _, series = replicate
        if series is None:
            assert model.timeseries_rows(config) == 0
            return
        lengths = {len(np.asarray(v)) for v in series.values()}
        assert "step" in series and lengths == {model.timeseries_rows(config)}

    def test_a_seed_gives_the_same_replicate_and_another_seed_another(self, model, config, replicate):
        again, _ = model.simulate(config, SEED)
        assert all(_same(_plain(v), _plain(again[k])) for k, v in replicate[0].items())
        other, _ = model.simulate(config, SEED + 1)
        assert any(not _same(_plain(replicate[0][k]), _plain(other[k])) for k in model.outcomes)

    def test_a_replicate_is_the_same_in_another_interpreter(self, model, overrides, replicate):
        fresh = call_fresh(simulated_row, overrides, SEED)
        assert all(_same(_plain(v), fresh[k]) for k, v in replicate[0].items())

    def test_its_memory_estimate_is_positive(self, model, config):
        assert model.replicate_bytes(config) > 0


# ------------------------------------------------------------------ experiment kinds


class KindContract:
    """An experiment kind's promises (``ExperimentKind``): it is registered, accepts its own
    configuration, and a tiny experiment of it runs through the pipeline, writes its record
    and resumes to the same rows. A subclass gives ``overrides``: a tiny experiment."""

    @pytest.fixture(scope="class")
    def overrides(self) -> list[str]:
        raise NotImplementedError("a subclass gives a tiny experiment of its kind")

    @pytest.fixture(scope="class")
    def config(self, overrides: list[str]) -> Any:
        return load_config(overrides)

    @pytest.fixture(scope="class")
    def kind(self, config: Any) -> Any:
        from kibs_mc.experiments import get_kind

        return get_kind(config)

    @pytest.fixture(scope="class")
    def finished(self, config: Any, overrides: list[str], tmp_path_factory: Any) -> Any:
        from kibs_mc.experiments import run_experiment

        return run_experiment(config, overrides, tmp_path_factory.mktemp("kind") / "run")

    def test_the_kind_is_registered_under_its_name(self, kind, config):
        from kibs_mc.experiments import KINDS

        assert KINDS[config.experiment.kind] is kind and kind.name == config.experiment.kind

    def test_a_tiny_experiment_writes_its_configuration_and_report(self, finished):
        run_dir = Path(finished.run_dir)
        assert (run_dir / "config.yaml").is_file() and finished.report is not None
        assert Path(finished.report).is_file()

    def test_a_finished_experiment_resumes_to_the_same_rows(self, finished, overrides):
        from kibs_mc.experiments import run_experiment

        again = [*overrides, "resume=true"]
        resumed = run_experiment(load_config(again), again, finished.run_dir)
        assert resumed.rows.equals(finished.rows)
        assert resumed.computed_chunks == 0


class PlannedKindContract(KindContract):
    """A kind that is a plan of scenarios (every kind but one that runs itself): its scenarios,
    seed blocks, first round and pairing are well formed and the same when planned again."""

    @pytest.fixture(scope="class")
    def planned(self, config: Any, overrides: list[str], kind: Any, tmp_path_factory: Any) -> Any:
        from kibs_mc.experiments.pipeline import plan

        return plan(*kind.prepare(config, overrides), tmp_path_factory.mktemp("plan"), kind)

    def test_scenarios_have_unique_names_and_are_planned_the_same_again(self, kind, config, overrides):
        specs = kind.scenario_specs(config, overrides)
        names = [name for name, _ in specs]
        assert names and len(set(names)) == len(names)
        assert kind.scenario_specs(config, overrides) == specs
        assert len(kind.first_replicates(config, specs)) == len(specs)

    def test_the_first_round_covers_every_scenario(self, kind, planned):
        first = kind.rounds(planned.config, planned.scenarios).first()
        assert set(first) == {sc.index for sc in planned.scenarios}
        assert all(n >= 0 for n in first.values()) and any(first.values())

    def test_every_scenario_is_paired_with_a_scenario_of_the_experiment(self, kind, planned):
        names = [sc.name for sc in planned.scenarios]
        pairs = kind.baselines(planned.config, names)
        assert set(pairs) == set(names) and set(pairs.values()) <= set(names)

    def test_every_scenario_ran_its_first_round(self, finished, planned):
        ran = set(finished.rows["scenario"].unique().to_list()) if finished.rows.height else set()
        wanted = planned.kind.rounds(planned.config, planned.scenarios).first()
        assert {sc.name for sc in planned.scenarios if wanted[sc.index]} <= ran
        assert isinstance(finished.rows, pl.DataFrame)
