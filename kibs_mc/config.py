"""Typed, validated configuration: the Hydra structured-config schemas and their checks.

The YAML groups in ``conf/`` extend the dataclasses registered here, so Hydra rejects unknown
keys and wrong types while composing; :func:`validate` then checks ranges and choices that
types cannot express (declared next to each field with :func:`setting`), so a bad value fails
before any work starts, with its full key, its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from kibs_mc.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def setting(
    default: Any = MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
    default_factory: Any = None,
) -> Any:
    """A dataclass field with its allowed range or choices, checked by :func:`validate`."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _allowed_text(meta: dict[str, Any], integer: bool = False) -> str:
    if meta.get("choices") is not None:
        return "allowed: one of " + ", ".join(repr(c) for c in meta["choices"])

    def fmt(x: float) -> str:
        return str(int(x)) if integer else f"{x:g}"

    low = f"[{fmt(meta['ge'])}" if meta.get("ge") is not None else (
        f"({fmt(meta['gt'])}" if meta.get("gt") is not None else "(-inf")
    high = f"{fmt(meta['le'])}]" if meta.get("le") is not None else (
        f"{fmt(meta['lt'])})" if meta.get("lt") is not None else "inf)")
    kind = "an integer" if integer else "a finite number"
    return f"allowed: {kind} in {low}, {high}"


def _check_field(key: str, value: Any, meta: dict[str, Any]) -> None:
    if value is None:
        return
    if meta.get("choices") is not None:
        if value not in meta["choices"]:
            raise ConfigError(key, value, _allowed_text(meta))
        return
    bounds = [meta.get(b) for b in ("ge", "gt", "le", "lt")]
    if all(b is None for b in bounds) or isinstance(value, bool):
        return
    integer = isinstance(value, int)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, value, _allowed_text(meta))
    ok = (
        (meta["ge"] is None or value >= meta["ge"])
        and (meta["gt"] is None or value > meta["gt"])
        and (meta["le"] is None or value <= meta["le"])
        and (meta["lt"] is None or value < meta["lt"])
    )
    if not ok:
        raise ConfigError(key, value, _allowed_text(meta, integer))


def validate(obj: Any, path: str = "") -> None:
    """Check every declared range and choice, then each dataclass's own ``check`` method."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            key = f"{path}.{f.name}" if path else f.name
            value = getattr(obj, f.name)
            _check_field(key, value, dict(f.metadata))
            validate(value, key)
        check = getattr(obj, "check", None)
        if callable(check):
            check(path)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            validate(item, f"{path}[{i}]")


# --------------------------------------------------------------------------- models


@dataclass
class CowanJonardConfig:
    """The Cowan-Jonard (2004) barter model, MODEL.md section 2."""

    name: str = setting("cowan_jonard", choices=("cowan_jonard",))  # names the model: model=<name>
    agents: int = setting(500, ge=2, le=10_000_000)
    degree: int = setting(10, ge=2)
    categories: int = setting(10, ge=1, le=10_000)
    alpha: float = setting(0.1, gt=0.0, le=1.0)
    tolerance: float = setting(0.01, ge=0.0, lt=1.0)
    rewire_p: float = setting(0.1, ge=0.0, le=1.0)
    max_meetings: int = setting(10_000_000, ge=1)
    initial_max: float = setting(10.0, gt=0.0)

    def check(self, path: str) -> None:
        if self.degree % 2:
            raise ConfigError(f"{path}.degree", self.degree, "allowed: an even number (degree/2 ties a side)")
        if self.degree >= self.agents:
            raise ConfigError(
                f"{path}.degree", self.degree, f"allowed: an even number below {path}.agents={self.agents}"
            )


# --------------------------------------------------------------------------- cluster model

#: Agent types in the order of every per-type list of ``cluster`` (MODEL.md s.3).
AGENT_TYPES = ("hte", "t_kibs", "p_kibs", "uni", "intermediaries", "fin")


def _check_per_type(path: str, key: str, values: Sequence[float], *, ge: float | None = None,
                    gt: float | None = None, le: float | None = None) -> None:
    full = f"{path}.{key}"
    allowed = (f"allowed: a list of {len(AGENT_TYPES)} numbers, one per type "
               f"({', '.join(AGENT_TYPES)})")
    if len(values) != len(AGENT_TYPES):
        raise ConfigError(full, list(values), allowed)
    for v in values:
        bad = (not math.isfinite(v) or (ge is not None and v < ge) or (gt is not None and v <= gt)
               or (le is not None and v > le))
        if bad:
            bounds = (f"[{ge:g}" if ge is not None else f"({gt:g}" if gt is not None else "(-inf") + \
                ", " + (f"{le:g}]" if le is not None else "inf)")
            raise ConfigError(full, list(values), f"{allowed}, each in {bounds}")


@dataclass
class ClusterConfig:
    """Who is in the cluster, where, what they know, and the initial network (MODEL.md s.3)."""

    name: str = "default"
    hte: int = setting(300, ge=1, le=10_000_000)
    t_kibs: int = setting(40, ge=0)
    p_kibs: int = setting(30, ge=0)
    uni: int = setting(6, ge=0)
    intermediaries: int = setting(8, ge=0)
    fin: int = setting(5, ge=0)
    fields: int = setting(8, ge=1, le=1000)
    network: str = setting("spatial", choices=("spatial", "watts_strogatz", "erdos_renyi", "barabasi_albert"))
    mean_degree: int = setting(8, ge=2)
    rewire_p: float = setting(0.1, ge=0.0, le=1.0)
    distance_scale: float = setting(0.15, gt=0.0)
    similarity_weight: float = setting(1.0, ge=0.0)
    initial_tie_weight: float = setting(0.5, gt=0.0, le=1.0)
    sociability: list[float] = field(default_factory=lambda: [1.0, 1.6, 1.3, 1.6, 2.0, 0.8])
    spread: list[float] = field(default_factory=lambda: [0.10, 0.15, 0.20, 0.25, 0.20, 0.25])
    knowledge_level: list[float] = field(default_factory=lambda: [2.0, 3.5, 2.0, 5.0, 1.5, 1.0])
    knowledge_spread: float = setting(0.5, ge=0.0, le=1.0)
    core_boost: float = setting(3.0, ge=1.0)
    management_mean: list[float] = field(default_factory=lambda: [0.3, 0.55, 0.8, 0.45, 0.6, 0.7])
    management_spread: float = setting(0.15, ge=0.0, le=1.0)
    absorptive_base: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.8, 0.8, 0.6, 0.4])
    capital: list[float] = field(default_factory=lambda: [10.0, 10.0, 10.0, 10.0, 10.0, 50.0])
    max_ties: list[int] = field(default_factory=lambda: [40, 120, 120, 200, 150, 200])

    @property
    def counts(self) -> list[int]:
        return [self.hte, self.t_kibs, self.p_kibs, self.uni, self.intermediaries, self.fin]

    def check(self, path: str) -> None:
        _check_per_type(path, "sociability", self.sociability, gt=0.0)
        _check_per_type(path, "spread", self.spread, ge=0.0)
        _check_per_type(path, "knowledge_level", self.knowledge_level, gt=0.0)
        _check_per_type(path, "management_mean", self.management_mean, ge=0.0, le=1.0)
        _check_per_type(path, "absorptive_base", self.absorptive_base, ge=0.0, le=1.0)
        _check_per_type(path, "capital", self.capital)
        _check_per_type(path, "max_ties", self.max_ties, ge=1)
        n = sum(self.counts)
        if self.mean_degree >= n:
            raise ConfigError(f"{path}.mean_degree", self.mean_degree,
                              f"allowed: below the number of agents ({n})")
        if self.network in ("watts_strogatz", "barabasi_albert") and self.mean_degree % 2:
            raise ConfigError(f"{path}.mean_degree", self.mean_degree,
                              f"allowed: an even number for network={self.network}")


@dataclass
class KibsConfig:
    """Dynamics of the cluster model (MODEL.md s.3); switches reduce it to Cowan-Jonard."""

    name: str = setting("kibs", choices=("kibs",))  # names the model: choose it with model=<name>
    steps: int = setting(120, ge=1, le=1_000_000)
    record_every: int = setting(5, ge=1)
    schedule: str = setting("random_sequential", choices=("random_sequential", "random_draw"))
    barter: bool = False
    tolerance: float = setting(0.01, ge=0.0, lt=1.0)
    absorption: str = setting("adaptive", choices=("adaptive", "fixed"))
    fixed_absorption: float = setting(0.1, gt=0.0, le=1.0)
    knowledge_half: float = setting(3.0, gt=0.0)
    absorption_management_weight: float = setting(0.5, ge=0.0, le=1.0)
    distance_learning: bool = True
    optimum_base: float = setting(0.4, gt=0.0, le=2.0)
    optimum_slope: float = setting(0.6, ge=0.0, le=2.0)
    transfer_efficiency: float = setting(0.5, gt=0.0, le=1.0)
    tie_reinforcement: float = setting(0.1, ge=0.0, le=1.0)
    service_fee: float = setting(0.02, ge=0.0)
    consulting_rate: float = setting(0.02, ge=0.0, le=1.0)
    production: bool = True
    uni_rate: float = setting(0.05, ge=0.0)
    t_kibs_rate: float = setting(0.03, ge=0.0)
    rd_gain: float = setting(0.02, ge=0.0)
    rd_cost: float = setting(0.05, ge=0.0)
    innovation: bool = True
    innovation_rate: float = setting(0.01, ge=0.0)
    conversion_management_weight: float = setting(0.7, ge=0.0, le=1.0)
    innovation_reward: float = setting(3.0, ge=0.0)
    innovation_knowledge: float = setting(0.3, ge=0.0)
    finance: bool = True
    fixed_cost: float = setting(0.1, ge=0.0)
    credit_line: float = setting(5.0, ge=0.0)
    interest: float = setting(0.01, ge=0.0, le=1.0)
    startup_prob: float = setting(0.5, ge=0.0, le=1.0)
    startup_capital: float = setting(5.0)
    startup_search: int = setting(20, ge=0)
    network_dynamics: bool = True
    tie_decay: float = setting(0.05, ge=0.0, le=1.0)
    tie_floor: float = setting(0.05, ge=0.0, lt=1.0)
    new_tie_weight: float = setting(0.3, gt=0.0, le=1.0)
    triadic_p: float = setting(0.02, ge=0.0, le=1.0)
    proximity_p: float = setting(0.05, ge=0.0, le=1.0)
    broker_p: float = setting(0.3, ge=0.0, le=1.0)

    def check(self, path: str) -> None:
        if self.new_tie_weight < self.tie_floor:
            raise ConfigError(f"{path}.new_tie_weight", self.new_tie_weight,
                              f"allowed: at least {path}.tie_floor={self.tie_floor:g}")


@dataclass
class LeverCosts:
    """Budget units per unit of each lever (governance_cost = sum of lever x unit cost)."""

    strategic: float = setting(1.0, ge=0.0)
    management: float = setting(1.0, ge=0.0)
    business: float = setting(1.0, ge=0.0)
    information: float = setting(1.0, ge=0.0)


@dataclass
class LeverEffects:
    """Strength of each interface's mechanisms at lever 1 (``kibs_mc.governance``)."""

    partnership_reach: float = setting(0.5, ge=0.0, le=1.0)  # share of HTEs partnered at lever 1
    goal_alignment: float = setting(0.3, ge=0.0, le=1.0)  # cut in partners' cognitive distance
    benefit_share: float = setting(0.1, ge=0.0, le=1.0)  # share of rewards to the partner
    risk_share: float = setting(0.3, ge=0.0, le=1.0)  # share of fixed cost the partner bears
    consulting_boost: float = setting(0.1, ge=0.0, le=1.0)  # added consulting rate at lever 1
    platform_reach: float = setting(0.5, ge=0.0, le=1.0)  # share of HTEs on the platform
    rd_cost_cut: float = setting(0.5, ge=0.0, le=1.0)  # cut in members' R&D cost
    platform_transfer: float = setting(0.3, ge=0.0, le=1.0)  # platform intensity at lever 1
    information_gain: float = setting(0.5, ge=0.0, le=1.0)  # share of (1 - tau) closed at lever 1
    long_range_search: float = setting(0.05, ge=0.0, le=1.0)  # long-range search prob. at lever 1


@dataclass
class GovernanceConfig:
    """The four governance interfaces of the seed paper (s.IV), each lever in [0, 1]."""

    name: str = "baseline"
    strategic: float = setting(0.0, ge=0.0, le=1.0)
    management: float = setting(0.0, ge=0.0, le=1.0)
    business: float = setting(0.0, ge=0.0, le=1.0)
    information: float = setting(0.0, ge=0.0, le=1.0)
    unit_cost: LeverCosts = field(default_factory=LeverCosts)
    effects: LeverEffects = field(default_factory=LeverEffects)


# --------------------------------------------------------------------------- pipeline


@dataclass
class ScenarioConfig:
    """A named scenario: overrides in command-line syntax, applied on top of the invocation's."""

    name: str = MISSING
    overrides: list[str] = field(default_factory=list)


@dataclass
class PrecisionConfig:
    """Adaptive replicate counts: add replicates until the 95% CI half-width of ``outcome``'s
    mean is at most ``half_width`` (a share of |mean| when ``relative``) in every scenario."""

    outcome: str | None = None  # None: fixed replicate counts
    half_width: float = setting(0.01, gt=0.0)
    relative: bool = True


@dataclass
class SweepFactor:
    """One swept parameter: a config key (e.g. ``governance.strategic``) over [low, high]."""

    key: str = MISSING
    low: float = 0.0
    high: float = 1.0

    def check(self, path: str) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ConfigError(f"{path}.high", self.high, f"allowed: a finite number above low={self.low}")


@dataclass
class SweepConfig:
    """Scenarios sampled over factors, added after the listed scenarios.

    ``sobol``: Saltelli's sample of ``samples`` x (factors + 2) points, first-order and total
    Sobol indices; ``lhs``: a Latin hypercube of ``samples`` points, first-order indices by
    RBD-FAST; ``grid``: ``samples`` evenly spaced values per factor (no indices).
    """

    method: str | None = setting(None, choices=(None, "sobol", "lhs", "grid"))
    samples: int = setting(8, ge=2, le=100_000)
    factors: list[SweepFactor] = field(default_factory=list)

    def check(self, path: str) -> None:
        if self.method is not None and not self.factors:
            raise ConfigError(f"{path}.factors", [], "allowed: at least one factor when sweeping")


@dataclass
class ExperimentConfig:
    name: str = "single"
    scenarios: list[ScenarioConfig] = field(default_factory=lambda: [ScenarioConfig(name="default")])
    baseline: str | None = None  # scenario effects are measured against; None: `baseline` or the first
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    max_replicates: int = setting(10_000, ge=1)  # per scenario, with adaptive counts
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def check(self, path: str) -> None:
        if not self.scenarios:
            raise ConfigError(f"{path}.scenarios", [], "allowed: at least one scenario")
        names = [s.name for s in self.scenarios]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"{path}.scenarios", name, "allowed: scenario names that are unique")
        if self.baseline is not None and self.baseline not in names:
            raise ConfigError(f"{path}.baseline", self.baseline, "allowed: one of " + ", ".join(names))


@dataclass
class ExecutorConfig:
    """Where chunks of replicates run: ``serial`` in this process, or ``ray``."""

    kind: str = setting("ray", choices=("serial", "ray"))
    num_cpus: int | None = setting(None, ge=1)  # None: all cores of this machine
    address: str | None = None  # Ray cluster to attach to; None: RAY_ADDRESS or a new local one
    chunk_size: int = setting(0, ge=0)  # replicates per task; 0: chosen from the plan
    max_in_flight: int = setting(0, ge=0)  # tasks submitted ahead; 0: 2 per worker
    max_retries: int = setting(3, ge=0)  # re-runs of a task whose worker died


@dataclass
class TrackingConfig:
    """MLflow tracking: the driver logs once, after aggregation."""

    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment_name: str = "kibs-mc"


@dataclass
class Config:
    model: Any = MISSING
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    replicates: int = setting(100, ge=1, le=100_000_000)  # per scenario
    seed: int = setting(20261127, ge=0, lt=2**63)
    resume: bool = False


MODEL_SCHEMAS: dict[str, type] = {"cowan_jonard": CowanJonardConfig, "kibs": KibsConfig}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (the YAML files extend them)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for name, schema in MODEL_SCHEMAS.items():
        cs.store(group="model", name=f"{name}_schema", node=schema)
    cs.store(group="cluster", name="cluster_schema", node=ClusterConfig)
    cs.store(group="governance", name="governance_schema", node=GovernanceConfig)
    cs.store(group="executor", name="executor_schema", node=ExecutorConfig)
    cs.store(group="tracking", name="tracking_schema", node=TrackingConfig)


register_configs()


def to_config(cfg: DictConfig) -> Config:
    """Turn a composed DictConfig (without Hydra's own node) into validated dataclasses."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    validate(obj)
    return obj


def group_options(group: str) -> list[str]:
    """Names of the YAML options of a config group in ``conf/``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def effective_cpus() -> int:
    """Cores this process may use (respects affinity masks of batch schedulers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- composition


def _override_value(overrides: Sequence[str], key: str) -> str:
    for text in overrides:
        name, _, value = text.lstrip("+~").partition("=")
        if name == key:
            return value
    return "?"


_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}


def _translate(exc: Exception, overrides: Sequence[str]) -> ConfigError:
    """One clear ConfigError from Hydra's and OmegaConf's composition errors."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(exc, OverrideParseException):
        bad = next((o for o in overrides if "=" not in o), " ".join(overrides))
        return ConfigError("override", bad, "allowed: key=value (e.g. replicates=200 or model=cowan_jonard)")
    if isinstance(exc, MissingConfigException):
        missing = str(exc).split("Could not find '", 1)[-1].split("'", 1)[0]
        group, _, option = missing.rpartition("/")
        if group:
            choices = ", ".join(group_options(group))
            return ConfigError(group, option, f"allowed: one of {choices}")
        return ConfigError("config", missing, "allowed: a config file in conf/")
    full_key = str(getattr(cause, "full_key", "") or "")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and full_key:
        parent, _, leaf = full_key.rpartition(".")
        known = _known_keys(parent, overrides)
        return ConfigError(
            full_key, _override_value(overrides, full_key),
            f"'{leaf}' is not a known key" + (f" under '{parent}'" if parent else "")
            + (f"; known keys: {', '.join(known)}" if known else ""),
        )
    if isinstance(cause, ValidationError) and full_key:
        expected = str(cause).split(" could not be converted to ", 1)[-1].split("\n", 1)[0].strip()
        if "valid bool" in str(cause):
            expected = "Boolean"
        kind = _TYPE_WORDS.get(expected, f"a value of type {expected}")
        return ConfigError(full_key, _override_value(overrides, full_key), f"allowed: {kind}")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError("overrides", " ".join(overrides), first_line.rstrip("."))


def _known_keys(parent: str, overrides: Sequence[str] = ()) -> list[str]:
    # The user's group choices (model=..., cluster=...) decide which keys exist.
    groups = [o for o in overrides if "=" in o and "." not in o.partition("=")[0] and o[:1] not in "+~"]
    try:
        cfg = _compose(groups)
    except Exception:  # noqa: BLE001 - the default config itself failed: list nothing
        return []
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []


def _compose(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/config.yaml`` with command-line style overrides.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for text in overrides:
        if text[:1] in "+~":
            raise ConfigError(
                "override", text, "allowed: overrides of existing keys only (no '+' or '~' prefix)"
            )
    try:
        return _compose(overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _translate(exc, overrides) from None
    except (ValueError, TypeError) as exc:  # e.g. Hydra on `model=0`: a group option that is not a name
        raise ConfigError("overrides", " ".join(overrides),
                          f"allowed: group=option with an option from conf/ ({exc})") from None


def load_config(overrides: Sequence[str] = ()) -> Config:
    """Composed and validated configuration, as dataclasses."""
    from omegaconf.errors import OmegaConfBaseException

    cfg = compose_config(overrides)
    try:
        return to_config(cfg)
    except OmegaConfBaseException as exc:  # e.g. an interpolation ${...} that does not resolve
        raise _translate(exc, overrides) from None


def apply_values(cfg: DictConfig, overrides: Sequence[str]) -> Config:
    """``cfg`` with plain ``dotted.key=value`` overrides merged in, validated.

    Much faster than a new composition, for the many sampled scenarios of a sweep; group
    selections (``governance=strategic``) still need :func:`compose_config`.
    """
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise _translate(exc, overrides) from None
    assert isinstance(merged, DictConfig)
    return to_config(merged)
