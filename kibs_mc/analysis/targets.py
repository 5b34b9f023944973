"""Calibration targets: named statistics of the simulated cluster with an observed value, a
scale and a source (``conf/targets/*.yaml`` or any YAML file; docs/calibration.md).

A target's ``statistic`` is measured on each replicate, from the model's outcome row and time
series, then aggregated over the replicates of a particle:

- ``<outcome>``: an outcome of the model (``hte_exits``, ``network_clustering``, ...);
- a derived statistic computed here from what a replicate returns (``DERIVED``):
  ``network_mean_degree``, the mean degree of the final network (from its density and
  ``ties@last``; needs ``model.steps`` to be a recorded step);
- ``<column>@<step>``: a time-series column at a recorded step (``@last``: the last one);
- ``relative_to: <column>@<step>``: divided by another such value (growth factors);
- ``per: <config key>`` (or a list of keys): divided by numbers of the configuration
  (``[cluster.hte, model.steps]``: per HTE and step); ``factor``: multiplied by a constant
  (``12``: per year of monthly steps);
- ``aggregate``: over the replicates, ``mean`` (default), ``median``, ``sd`` or ``qNN``
  (the NN-th percentile);
- ``fit: false``: a check only (a held-out pattern), judged in the posterior predictive check
  but left out of the ABC distance.

A **policy-response target** is a paired effect: ``scenario`` (a ``conf/governance`` option) is
simulated beside ``governance=baseline`` on the same seeds inside each particle, both at the
stated ``intensity`` (overrides of model, cluster or governance numbers: the budget, the
horizon ``model.steps``, ...), and ``effect`` says how the statistic of the two arms is compared:

- ``difference``: scenario - baseline;
- ``relative``: scenario / baseline - 1;
- ``per_money``: (scenario - baseline) / the extra money the scenario spent (the model's cost
  outcome), e.g. additional service purchases per unit of voucher money;
- ``level``: the scenario's statistic itself (no baseline arm), e.g. what a funded partnership
  achieves, which the baseline has none of.

``mapping`` says in words how the source's measurement is read as the model's statistic, and
``replicates`` (optional) how many paired replicates a particle averages for this target.

Every name is checked against a probe replicate before any work: a statistic the model does
not produce, or a file that is missing or malformed, is a ``ConfigError`` (exit 2) naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kibs_mc.config.files import read_yaml
from kibs_mc.errors import ConfigError

_AGGREGATE = re.compile(r"^(mean|median|sd|q(\d{1,2}))$")
#: How a policy-response target compares its two arms.
EFFECTS = ("difference", "relative", "per_money", "level")
#: The governance option a policy-response target's scenario is compared with.
BASELINE = "baseline"
#: What an intensity may set: numbers of the groups that decide what a replicate computes.
INTENSITY_GROUPS = ("model", "cluster", "governance")
FIELDS = (
    "name",
    "statistic",
    "observed",
    "scale",
    "source",
    "assumed",
    "relative_to",
    "per",
    "factor",
    "aggregate",
    "note",
    "fit",
    "scenario",
    "intensity",
    "effect",
    "mapping",
    "replicates",
)


@dataclass(frozen=True)
class Target:
    """One calibration target: ``statistic`` should come out at ``observed``; distances are
    measured in units of ``scale`` (a standard deviation or an accepted error)."""

    name: str
    statistic: str
    observed: float
    scale: float
    source: str = ""
    assumed: bool = False  # true: not read from a source (an assumption, said so in the docs)
    relative_to: str | None = None
    per: tuple[str, ...] = ()
    factor: float = 1.0
    aggregate: str = "mean"
    note: str = ""
    #: false: a check only - simulated and judged in the predictive check, but not part of the
    #: ABC distance (a statistic the model cannot reach, or too noisy per replicate to rank
    #: particles, would otherwise decide the posterior on its own)
    fit: bool = True
    #: a policy-response target: the governance option compared with the baseline
    scenario: str | None = None
    #: overrides both arms are simulated at, as (key, value) pairs
    intensity: tuple[tuple[str, float], ...] = ()
    #: how the two arms are compared (EFFECTS); None for a statistic of the cluster itself
    effect: str | None = None
    #: how the source's measurement is read as the model's statistic
    mapping: str = ""
    #: paired replicates a particle averages for this target (None: calibration.replicates)
    replicates: int | None = None

    @property
    def paired(self) -> bool:
        """A policy-response target (a scenario against the baseline)."""
        return self.scenario is not None

    def arms(self) -> tuple[tuple[str, ...] | None, tuple[str, ...]] | None:
        """The overrides of the two arms (baseline, scenario), or None for a cluster statistic.
        The baseline spends no money, so the intensity's governance numbers change nothing
        there (every lever at 0 is the baseline) and are left out of its overrides: targets at
        different budgets share one baseline arm. ``level`` has no baseline arm (None)."""
        if self.scenario is None:
            return None
        values = tuple(f"{k}={v!r}" for k, v in self.intensity)
        scenario = (f"governance={self.scenario}", *values)
        if self.effect == "level":
            return None, scenario
        return (f"governance={BASELINE}", *(v for v in values if not v.startswith("governance."))), scenario


def _key(path: str, index: int, name: str) -> str:
    return f"{path}: targets[{index}].{name}"


def parse_targets(data: Any, path: str, base: Sequence[Target] = ()) -> list[Target]:
    """Targets from the parsed YAML of a target file (``{name, targets: [...]}``), after
    ``base`` (the targets of the file it ``extends``)."""
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("targets"), Sequence)
        or isinstance(data.get("targets"), str)
        or not data["targets"]
    ):
        raise ConfigError(
            f"{path}: targets",
            None if not isinstance(data, Mapping) else data.get("targets"),
            "allowed: a YAML mapping with a non-empty list `targets` of "
            "{name, statistic, observed, scale, source}",
        )
    out = [*base, *(_parse_target(item, path, i) for i, item in enumerate(data["targets"]))]
    names = [t.name for t in out]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: targets", name, "allowed: each target name once")
    if not any(t.fit for t in out):
        raise ConfigError(
            f"{path}: targets", "every fit: false", "allowed: at least one target with fit: true"
        )
    return out


def _parse_target(item: Any, path: str, i: int) -> Target:
    """One target of a target file (ConfigError naming its first bad field)."""
    if not isinstance(item, Mapping):
        raise ConfigError(
            f"{path}: targets[{i}]", item, "allowed: a mapping {name, statistic, observed, scale, source}"
        )
    unknown = [k for k in item if k not in FIELDS]
    if unknown:
        raise ConfigError(
            _key(path, i, str(unknown[0])), item[unknown[0]], "allowed: the fields " + ", ".join(FIELDS)
        )
    for required in ("name", "statistic", "observed", "scale"):
        if item.get(required) is None:
            raise ConfigError(_key(path, i, required), None, "allowed: a value (the field is required)")
    numbers = {
        name: _number(item.get(name, 1.0), _key(path, i, name)) for name in ("observed", "scale", "factor")
    }
    if numbers["scale"] <= 0:
        raise ConfigError(_key(path, i, "scale"), item["scale"], "allowed: a number above 0")
    aggregate = str(item.get("aggregate", "mean"))
    if not _AGGREGATE.match(aggregate):
        raise ConfigError(
            _key(path, i, "aggregate"),
            aggregate,
            "allowed: mean, median, sd or qNN (a percentile, e.g. q90)",
        )
    return Target(
        str(item["name"]),
        str(item["statistic"]),
        numbers["observed"],
        numbers["scale"],
        str(item.get("source", "")),
        bool(item.get("assumed", False)),
        None if item.get("relative_to") is None else str(item["relative_to"]),
        _keys(item.get("per"), _key(path, i, "per")),
        numbers["factor"],
        aggregate,
        str(item.get("note", "")),
        _flag(item.get("fit", True), _key(path, i, "fit")),
        *_policy_fields(item, path, i),
    )


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, value, "allowed: a finite number")
    return float(value)


def _policy_fields(
    item: Mapping[str, Any], path: str, i: int
) -> tuple[str | None, tuple[tuple[str, float], ...], str | None, str, int | None]:
    """scenario, intensity, effect, mapping and replicates of a target (checked)."""
    scenario, effect = item.get("scenario"), item.get("effect")
    if scenario is None:
        for name in ("intensity", "effect"):
            if item.get(name) is not None:
                raise ConfigError(
                    _key(path, i, name),
                    item[name],
                    "allowed: only with `scenario` (a policy-response target)",
                )
    elif not isinstance(scenario, str) or not scenario or scenario == BASELINE:
        raise ConfigError(
            _key(path, i, "scenario"), scenario, f"allowed: a governance option other than {BASELINE}"
        )
    elif effect not in EFFECTS:
        raise ConfigError(_key(path, i, "effect"), effect, "allowed: " + ", ".join(EFFECTS))
    intensity = item.get("intensity") or {}
    if not isinstance(intensity, Mapping):
        raise ConfigError(
            _key(path, i, "intensity"),
            intensity,
            "allowed: a mapping of key: number, e.g. {governance.budget: 0.1}",
        )
    pairs = []
    for key, value in intensity.items():
        if str(key).split(".")[0] not in INTENSITY_GROUPS or "." not in str(key):
            raise ConfigError(
                _key(path, i, f"intensity.{key}"),
                value,
                "allowed: a number of the "
                + ", ".join(INTENSITY_GROUPS)
                + " groups (e.g. governance.budget)",
            )
        number = _number(value, _key(path, i, f"intensity.{key}"))
        pairs.append((str(key), value if isinstance(value, int) else number))  # integers stay integers
    replicates = item.get("replicates")
    if replicates is not None and (
        isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1
    ):
        raise ConfigError(_key(path, i, "replicates"), replicates, "allowed: an integer of at least 1")
    return (
        None if scenario is None else str(scenario),
        tuple(pairs),
        None if scenario is None else str(effect),
        str(item.get("mapping", "")),
        replicates,
    )


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "allowed: true or false")
    return value


def _keys(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(
        key, value, "allowed: a configuration key or a list of them (e.g. [cluster.hte, model.steps])"
    )


def target_file(spec: str, conf_dir: Path) -> Path:
    """The file ``calibration.targets`` names: a name in ``conf/targets`` or a path."""
    named = conf_dir / "targets" / f"{spec}.yaml"
    if "/" not in spec and not spec.endswith((".yaml", ".yml")) and named.is_file():
        return named
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    names = sorted(p.stem for p in (conf_dir / "targets").glob("*.yaml"))
    raise ConfigError(
        "calibration.targets",
        spec,
        "allowed: 'synthetic', a path to a YAML target file, or one of " + ", ".join(names),
        hint="(no such file)",
    )


def load_targets(spec: str, conf_dir: Path, _seen: tuple[str, ...] = ()) -> list[Target]:
    """Read and check the target file ``spec`` names (ConfigError naming the file otherwise).
    A file may say ``extends: <name or path>``: its targets come after that file's (a variant
    of the default targets that adds held-out checks, without copying them)."""
    path = target_file(spec, conf_dir)
    data = read_yaml(path, "calibration.targets")
    base: list[Target] = []
    parent = data.get("extends") if isinstance(data, Mapping) else None
    if parent is not None:
        if not isinstance(parent, str) or str(path.resolve()) in _seen:
            raise ConfigError(
                f"{path}: extends", parent, "allowed: the name or path of another target file (no cycle)"
            )
        base = load_targets(parent, conf_dir, (*_seen, str(path.resolve())))
    return parse_targets(data, str(path), base)


# --- statistics of one replicate ---------------------------------------------------------------


def _series_value(ref: str, ts: Mapping[str, np.ndarray] | None) -> float:
    column, _, step = ref.partition("@")
    assert ts is not None
    steps = np.asarray(ts["step"])
    at = int(steps[-1]) if step == "last" else int(step)
    return float(np.asarray(ts[column])[int(np.flatnonzero(steps == at)[0])])


def _mean_degree(row: Mapping[str, Any], ts: Mapping[str, np.ndarray] | None) -> float:
    """Mean degree 2T/n of the final network: T = ``ties@last``, and n from its density
    d = 2T / (n (n - 1)), i.e. n = (1 + sqrt(1 + 8T/d)) / 2 (exact when the last recorded step
    is the last step)."""
    ties = _series_value("ties@last", ts)
    density = float(row["network_density"])
    if ties <= 0 or density <= 0:
        return 0.0
    return 2.0 * ties / ((1.0 + math.sqrt(1.0 + 8.0 * ties / density)) / 2.0)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _knowledge_services(row: Mapping[str, Any], ts: Any) -> float:
    """Knowledge services bought in the cluster: KIBS' gross revenue (fees, consulting and
    service contracts, benefit shares) plus the voucher money paid to the universities'
    platform (docs/ODD.md s.9 records)."""
    return float(row["money_kibs_gross"]) + float(row["money_business_to_uni"])


def _joint_per_partnership(row: Mapping[str, Any], ts: Any) -> float:
    """Joint innovations per strategic partnership formed (NaN without a partnership)."""
    return _ratio(
        float(row["innovations_joint"]), float(row["partners_p_kibs"]) + float(row["partners_t_kibs"])
    )


#: Statistics computed from a replicate's outcomes and time series: name -> (function,
#: outcomes it reads, time-series columns it reads at the last step).
DERIVED: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...]]] = {
    "network_mean_degree": (_mean_degree, ("network_density",), ("ties",)),
    "knowledge_services_bought": (_knowledge_services, ("money_kibs_gross", "money_business_to_uni"), ()),
    "joint_innovations_per_partnership": (
        _joint_per_partnership,
        ("innovations_joint", "partners_p_kibs", "partners_t_kibs"),
        (),
    ),
}


def _value(ref: str, row: Mapping[str, Any], ts: Mapping[str, np.ndarray] | None) -> float:
    if ref in DERIVED:
        return float(DERIVED[ref][0](row, ts))
    return _series_value(ref, ts) if "@" in ref else float(row[ref])


def _config_number(config: Any, key: str) -> float:
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    return float(node)


def replicate_value(
    target: Target, row: Mapping[str, Any], ts: Mapping[str, np.ndarray] | None, config: Any
) -> float:
    """``target``'s statistic on one replicate (before aggregation over replicates)."""
    value = _value(target.statistic, row, ts)
    if target.relative_to is not None:
        base = _value(target.relative_to, row, ts)
        value = value / base if base != 0 else math.nan
    for key in target.per:
        per = _config_number(config, key)
        value = value / per if per != 0 else math.nan
    return value * target.factor


def aggregate(values: Sequence[float], how: str) -> float:
    """Aggregate one statistic over the replicates of a particle."""
    x = np.asarray(values, dtype=float)
    if how == "mean":
        return float(np.mean(x))
    if how == "median":
        return float(np.median(x))
    if how == "sd":
        return float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return float(np.percentile(x, int(how[1:])))


def paired_effect(
    target: Target, scenario: float, baseline: float, extra_money: float | None = None
) -> float:
    """A policy-response target's value from its two arms' aggregated statistics (``effect``);
    ``per_money`` divides by ``extra_money``, the scenario's spending over the baseline's.
    NaN where the comparison is undefined (a baseline of 0 for ``relative``, no extra money)."""
    if target.effect == "difference":
        return scenario - baseline
    if target.effect == "relative":
        return scenario / baseline - 1.0 if baseline != 0 else math.nan
    if target.effect == "per_money":
        return (scenario - baseline) / extra_money if extra_money else math.nan
    if target.effect == "level":
        return scenario
    raise ValueError(f"{target.name}: not a policy-response target")


def check_targets(
    targets: Sequence[Target],
    row: Mapping[str, Any],
    ts: Mapping[str, np.ndarray] | None,
    config: Any,
    where: str,
    indices: Sequence[int] | None = None,
) -> None:
    """Every statistic, reference and config key of ``targets`` exists (a probe replicate's
    ``row`` and ``ts``); ConfigError naming the first that does not (``indices``: the targets'
    places in their file, for the message; default 0, 1, ...)."""
    outcomes = sorted(
        k for k, v in row.items() if isinstance(v, int | float | np.number) and not isinstance(v, bool)
    )
    columns = sorted(k for k in (ts or {}) if k != "step")
    steps = [] if ts is None else [int(s) for s in np.asarray(ts["step"])]
    allowed = (
        "allowed: an outcome ("
        + ", ".join(outcomes)
        + "), a derived statistic ("
        + ", ".join(DERIVED)
        + ")"
        + (
            f" or a time-series column ({', '.join(columns)}) at a recorded step, as "
            f"<column>@<step> or <column>@last (steps {steps[0]}, {steps[1] if len(steps) > 1 else ''}, "
            f"..., {steps[-1]})"
            if columns
            else ""
        )
    )
    for i, target in zip(indices if indices is not None else range(len(targets)), targets, strict=True):
        for field_name in ("statistic", "relative_to"):
            ref = getattr(target, field_name)
            if ref is None:
                continue
            if ref in DERIVED:
                _, needs, series = DERIVED[ref]
                last = steps[-1] if steps else None
                if not all(k in outcomes for k in needs) or not all(c in columns for c in series):
                    raise ConfigError(
                        f"{where}: targets[{i}].{field_name}",
                        ref,
                        f"allowed: {ref} needs the outcomes {', '.join(needs)}"
                        + (f" and the time-series columns {', '.join(series)}" if series else "")
                        + ", which this model lacks",
                    )
                if series and last != int(config.model.steps):
                    raise ConfigError(
                        "model.steps",
                        config.model.steps,
                        f"allowed: a multiple of model.record_every for targets[{i}]."
                        f"{field_name} = {ref} (the last recorded step is {last})",
                    )
                continue
            column, at, step = ref.partition("@")
            ok = (
                (column in outcomes)
                if not at
                else (
                    column in columns
                    and (step == "last" or (step.lstrip("-").isdigit() and int(step) in steps))
                )
            )
            if not ok:
                raise ConfigError(f"{where}: targets[{i}].{field_name}", ref, allowed)
        for key in target.per:
            try:
                _config_number(config, key)
            except (AttributeError, TypeError, ValueError):
                raise ConfigError(
                    f"{where}: targets[{i}].per",
                    key,
                    "allowed: a numeric configuration key (e.g. cluster.hte)",
                ) from None
