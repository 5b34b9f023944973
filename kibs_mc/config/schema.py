"""The pipeline's typed configuration: the root ``Config`` and the experiment, executor and
tracking groups, registered with Hydra's ConfigStore (the YAML groups in ``conf/`` extend them).

Hydra rejects unknown keys and wrong types while composing; :func:`kibs_mc.fields.validate`
then checks ranges and choices that types cannot express (declared next to each field with
:func:`kibs_mc.fields.setting`). Each model declares its own schema in its module
(``kibs_mc.models``); this module registers every registered model's schema in the group ``model``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, make_dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, Node, OmegaConf

from kibs_mc.errors import ConfigError
from kibs_mc.fields import setting, validate
from kibs_mc.models import MODELS


@dataclass(frozen=True)
class ScenarioConfig:
    """A named scenario: overrides in command-line syntax, applied on top of the invocation's."""

    name: str = MISSING
    overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PrecisionConfig:
    """Adaptive replicate counts: add replicates until the 95% CI half-width of what is
    decided on ``outcome`` is at most ``half_width`` in every scenario: ``on=mean`` each
    scenario's mean (relative: a share of |mean|), ``effect`` each scenario's paired effect
    against the baseline, ``contrast`` every paired difference between two scenarios
    (relative: a share of |baseline mean|)."""

    outcome: str | None = None  # None: fixed replicate counts
    half_width: float = setting(0.01, gt=0.0)
    relative: bool = True
    on: str = setting("effect", choices=("mean", "effect", "contrast"))


@dataclass(frozen=True)
class SelectionConfig:
    """Certified best scenario (``kibs_mc.analysis.selection``): Kim & Nelson's fully
    sequential procedure KN adds replicates to the scenarios still in contention until one is
    best on ``outcome`` within ``delta`` (a share of the largest first-stage |mean| when
    ``relative``) with probability of correct selection at least 1 - ``alpha``, or until
    ``experiment.max_replicates``. Candidates: every listed scenario but the baseline."""

    outcome: str | None = None  # None: no selection
    delta: float = setting(0.02, gt=0.0)
    relative: bool = True
    alpha: float = setting(0.05, gt=0.0, lt=0.5)
    first_stage: int = setting(20, ge=2)  # n0: replicates per scenario before screening starts
    larger_is_better: bool | None = None  # None: as the model declares for the outcome


@dataclass(frozen=True)
class UncertainParameter:
    """One uncertain parameter (``conf/uncertainty``: robustness worlds, calibration priors, sweep
    factors): a numeric config key (list elements as ``key[i]``) over [low, high], sampled
    linearly, on a log scale, or over the integers low..high."""

    key: str = MISSING
    low: float = MISSING
    high: float = MISSING
    scale: str = setting("linear", choices=("linear", "log"))
    integer: bool = False
    why: str = ""  # where the range comes from (docs/robustness.md)

    def check(self, path: str) -> None:
        if not math.isfinite(self.low):
            raise ConfigError(f"{path}.low", self.low, "allowed: a finite number")
        if not (math.isfinite(self.high) and self.high > self.low):
            raise ConfigError(f"{path}.high", self.high, f"allowed: a finite number above low={self.low:g}")
        if self.scale == "log" and self.low <= 0:
            raise ConfigError(f"{path}.low", self.low, "allowed: a number above 0 with scale=log")
        if self.integer and (self.low != int(self.low) or self.high != int(self.high)):
            bad, value = ("low", self.low) if self.low != int(self.low) else ("high", self.high)
            raise ConfigError(f"{path}.{bad}", value, "allowed: a whole number with integer=true")


@dataclass(frozen=True)
class SweepFactor(UncertainParameter):
    """One swept factor: a numeric config key (e.g. ``governance.strategic``, list elements as
    ``key[i]``) over [low, high], sampled linearly, on a log scale (``scale: log``) or over the
    integers low..high (``integer: true``), as an uncertain parameter is."""

    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class SweepConfig:
    """Scenarios sampled over factors, added after the listed scenarios.

    ``sobol``: Saltelli's sample of ``samples`` x (factors + 2) points, first-order and total
    Sobol indices; ``lhs``: a Latin hypercube of ``samples`` points, first-order indices by
    RBD-FAST; ``grid``: ``samples`` evenly spaced values per factor (no indices).
    """

    method: str | None = setting(None, choices=(None, "sobol", "lhs", "grid"))
    samples: int = setting(8, ge=2, le=100_000)
    factors: list[SweepFactor] = field(default_factory=list)
    # Where the factors come from: `factors` (the list above), `uncertainty` (the parameters of
    # the uncertainty space, uncertainty=<name> of conf/uncertainty, with their scales), `both`.
    factors_from: str = setting("factors", choices=("factors", "uncertainty", "both"))
    # sobol only: double the base sample (samples, 2 samples, ...) up to max_samples until every
    # S1 and ST 95% CI half-width of the watched outcome is at most `tolerance` and the factors'
    # ST ranking is resolved; 0: `samples` and no doubling.
    max_samples: int = setting(0, ge=0, le=1_000_000)
    tolerance: float = setting(0.1, gt=0.0)

    def check(self, path: str) -> None:
        if self.method is not None and not self.factors and self.factors_from == "factors":
            raise ConfigError(f"{path}.factors", [], "allowed: at least one factor when sweeping")
        check_each_key_once(list(self.factors), f"{path}.factors")
        if self.max_samples and self.method == "sobol":
            if self.max_samples < self.samples:
                raise ConfigError(
                    f"{path}.max_samples", self.max_samples, f"allowed: 0 or at least samples={self.samples}"
                )
            ratio = self.max_samples // self.samples
            if self.max_samples % self.samples or ratio & (ratio - 1):
                raise ConfigError(
                    f"{path}.max_samples",
                    self.max_samples,
                    f"allowed: samples={self.samples} times a power of two",
                )


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: its kind (``kibs_mc.experiments.KINDS``) and what the kind reads."""

    name: str = "single"
    kind: str = (
        "compare"  # single | compare | sweep | calibrate | robustness | mix (checked against the registry)
    )
    scenarios: list[ScenarioConfig] = field(default_factory=lambda: [ScenarioConfig(name="default")])
    baseline: str | None = None  # scenario effects are measured against; None: `baseline` or the first
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    max_replicates: int = setting(10_000, ge=1)  # per scenario, with adaptive counts
    # "Clear" differences: beyond this smallest effect that matters (a share of the baseline's
    # mean when min_effect_relative) after adjusting for every reported contrast (adjust).
    min_effect: float = setting(0.02, ge=0.0)
    min_effect_relative: bool = True
    adjust: str = setting("holm", choices=("holm", "bh"))
    alpha: float = setting(0.05, gt=0.0, lt=0.5)  # family-wise error (holm) or FDR (bh)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def check(self, path: str) -> None:
        if not self.name or self.name in (".", "..") or any(c in self.name for c in "/\\\0\n"):
            # the run directory is outputs/<name>/<date_time>: a name must not lead elsewhere
            raise ConfigError(
                f"{path}.name", self.name, "allowed: a name without '/', '\\' or line breaks, not '.' or '..'"
            )
        if not self.scenarios:
            raise ConfigError(f"{path}.scenarios", [], "allowed: at least one scenario")
        names = [s.name for s in self.scenarios]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"{path}.scenarios", name, "allowed: scenario names that are unique")
        if self.baseline is not None and self.baseline not in names:
            raise ConfigError(f"{path}.baseline", self.baseline, "allowed: one of " + ", ".join(names))


def check_each_key_once(parameters: list[UncertainParameter], path: str) -> None:
    """A parameter list names each config key once (a second range for a key is ambiguous)."""
    keys = [p.key for p in parameters]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(path, key, "allowed: each key once")


@dataclass(frozen=True)
class UncertaintyConfig:
    """An uncertainty space (``conf/uncertainty/*.yaml``): the parameters a robustness
    experiment draws its worlds from."""

    name: str = "none"
    parameters: list[UncertainParameter] = field(default_factory=list)
    #: A finished ``experiment=calibrate`` run directory: worlds are drawn from its weighted
    #: posterior (last generation), over its parameters (``uncertainty=posterior``).
    posterior: str | None = None

    def check(self, path: str) -> None:
        check_each_key_once(self.parameters, f"{path}.parameters")


@dataclass(frozen=True)
class ObjectiveConfig:
    """What a robustness experiment calls better: ``outcome`` (a model outcome), to maximise
    or minimise, per unit of governance spending (the ``cost`` outcome) or as it is."""

    outcome: str = "innovations_total"
    direction: str = setting("max", choices=("max", "min"))
    per_money: bool = True
    cost: str = "governance_cost"  # the outcome that measures spending (per_money)


@dataclass(frozen=True)
class RobustnessConfig:
    """``experiment.kind=robustness``: worlds drawn from the uncertainty space, crossed with the
    experiment's scenarios (the policies); ``docs/robustness.md``."""

    worlds: int = setting(64, ge=1, le=1_000_000)
    sampler: str = setting("sobol", choices=("sobol", "lhs"))
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    satisfice: float | None = None  # threshold of the objective; None: the baseline's, world by world
    density: float = setting(0.8, gt=0.0, le=1.0)  # PRIM: the chosen box is at least this dense
    bootstrap: int = setting(1000, ge=100, le=100_000)  # draws for the metrics' CIs
    box_bootstrap: int = setting(
        50, ge=0, le=10_000
    )  # PRIM reruns on resampled worlds per named box (0: none)


@dataclass(frozen=True)
class MixConfig:
    """``experiment.kind=mix``: splits of one budget over ``shares`` (points on a lattice of the
    simplex, proposed in generations by NSGA-II) and optionally several ``budgets``, each run
    across the robustness worlds; the pick is confirmed on fresh seeds by KN against the
    runner-up and the equal split (docs/mix.md)."""

    shares: list[str] = field(default_factory=list)  # the keys whose values are the budget's shares
    budget: str = "governance.budget"  # the key of the budget the shares divide
    budgets: list[float] = field(default_factory=list)  # budgets tried; empty: the configured one
    equal: str = "all_four"  # the listed scenario that is the equal split at the configured budget
    candidates: int = setting(16, ge=1, le=4096)  # splits per budget and generation (0: scrambled Sobol)
    generations: int = setting(4, ge=0, le=1000)  # NSGA-II generations after the Sobol one
    resolution: int = setting(10, ge=1, le=100)  # shares in steps of 1/resolution of the budget
    screen: int = setting(6, ge=2, le=1000)  # best splits at the pick's money screened on the search seeds
    search_max: int = setting(10, ge=1, le=1_000_000)  # most search replicates per world of a screened split
    delta: float = setting(1.0, gt=0.0)  # KN's indifference zone, in the objective outcome's units
    relative: bool = False  # delta is a share of the pick's mean outcome in the search
    alpha: float = setting(0.05, gt=0.0, lt=0.5)  # KN: P(correct selection) >= 1 - alpha
    first_stage: int = setting(10, ge=2)  # KN's n0: fresh replicates per world before screening
    confirm_max: int = setting(100, ge=2, le=1_000_000)  # most fresh replicates per world and system


@dataclass(frozen=True)
class CalibrationConfig:
    """``experiment.kind=calibrate``: ABC-SMC of the parameters (``parameters``, else the
    ``uncertainty`` space) against ``targets`` (docs/calibration.md); ``use`` feeds a finished
    calibration's posterior point into any other experiment."""

    targets: str = "default"  # a name in conf/targets, a path to a YAML file, or `synthetic`
    truth: dict[str, Any] = field(default_factory=dict)  # synthetic: key -> value simulated
    template: str = "default"  # synthetic: the target file whose statistics are simulated
    synthetic_replicates: int = setting(20, ge=2, le=100_000)  # synthetic: replicates at the truth
    parameters: list[UncertainParameter] = field(default_factory=list)  # empty: uncertainty's
    population: int = setting(200, ge=2, le=1_000_000)  # particles per generation
    generations: int = setting(6, ge=1, le=1000)  # most generations (populations) in all
    min_epsilon: float = setting(0.0, ge=0.0)  # stop once the threshold is at or below this
    quantile: float = setting(0.5, gt=0.0, lt=1.0)  # next threshold: this quantile of the distances
    min_acceptance: float = setting(0.0, ge=0.0, lt=1.0)  # stop when the acceptance rate drops below
    replicates: int = setting(1, ge=1, le=10_000)  # replicates averaged per particle
    ppc_draws: int = setting(100, ge=2, le=100_000)  # posterior draws of the predictive check
    interval: float = setting(0.9, gt=0.0, lt=1.0)  # predictive and posterior interval
    max_width: float = setting(4.0, gt=0.0)  # widest predictive interval (target scales) that reproduces
    min_ess: float = setting(0.2, ge=0.0, lt=1.0)  # the check fails below this ESS / particles at the end
    use: str | None = None  # a calibration run directory: other experiments run at its point
    point: str = setting("mean", choices=("mean", "map"))  # which point `use` takes

    def check(self, path: str) -> None:
        check_each_key_once(self.parameters, f"{path}.parameters")


#: An executor's kind is fixed by its option of the ``executor`` group: another kind is another option.
ANOTHER_EXECUTOR = (
    "another executor is another option of the group: executor=auto, executor=ray or executor=serial"
)


@dataclass(frozen=True)
class SerialConfig:
    """``executor=serial``: every chunk in this process, in order (for debugging, and the oracle
    the other executors must match)."""

    kind: str = setting("serial", choices=("serial",), hint=ANOTHER_EXECUTOR)
    chunk_size: int = setting(0, ge=0)  # replicates per task; 0: chosen from the plan


@dataclass(frozen=True)
class RayConfig:
    """``executor=ray``: a new local cluster of ``num_cpus`` CPUs, or the cluster at
    ``address`` (or ``$RAY_ADDRESS``)."""

    kind: str = setting("ray", choices=("ray",), hint=ANOTHER_EXECUTOR)
    num_cpus: int | None = setting(None, ge=1)  # None: all cores of this machine
    address: str | None = None  # Ray cluster to attach to; None: RAY_ADDRESS or a new local one
    chunk_size: int = setting(0, ge=0)  # replicates per task; 0: chosen from the plan
    max_in_flight: int = setting(0, ge=0)  # tasks submitted ahead; 0: 2 per worker
    max_retries: int = setting(3, ge=0)  # re-runs of a task whose worker died


@dataclass(frozen=True)
class AutoConfig(RayConfig):
    """``executor=auto`` (the default): serial when a local Ray cluster would not pay off,
    measured on the first chunks, else Ray with these settings."""

    kind: str = setting("auto", choices=("auto",), hint=ANOTHER_EXECUTOR)


#: Each executor's settings, by ``executor.kind``: the schema of its option of the ``executor``
#: group (``conf/executor/<kind>.yaml``); ``kibs_mc.run.executor.EXECUTORS`` holds the executors.
EXECUTOR_SCHEMAS: dict[str, type] = {"serial": SerialConfig, "ray": RayConfig, "auto": AutoConfig}


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking: the driver logs once, after aggregation."""

    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment_name: str = "kibs-mc"


#: The role of each top-level section of the configuration (its field's ``role`` metadata):
#: what a replicate computes (the model and its groups: fingerprinted, set per scenario) ...
SIMULATION = "simulation"
#: ... what the experiment does with the replicates (its kind's settings, counts and seeds:
#: common to every scenario) ...
EXPERIMENT = "experiment"
#: ... or how a run is executed and recorded (never a result; Hydra's own ``hydra`` node too).
RUN = "run"


def _role(role: str, declared: Any) -> Any:
    """The dataclass field ``declared`` with its section's ``role`` in its metadata."""
    declared.metadata = MappingProxyType({**declared.metadata, "role": role})
    return declared


@dataclass(frozen=True)
class Sections:
    """The pipeline's sections of the configuration, each with its role; the root
    :data:`Config` adds each registered model's groups (:func:`build_config`)."""

    # The registered model's schema (kibs_mc.models): OmegaConf cannot type a field as a union
    # of dataclasses, so the group's choice decides and validation checks it.
    model: Any = _role(SIMULATION, field(default=MISSING))
    experiment: ExperimentConfig = _role(EXPERIMENT, field(default_factory=ExperimentConfig))
    # The chosen executor's settings (EXECUTOR_SCHEMAS), as the model's: the group's choice decides.
    executor: Any = _role(RUN, field(default=MISSING))
    tracking: TrackingConfig = _role(RUN, field(default_factory=TrackingConfig))
    # experiment.kind=calibrate; calibration.use feeds its posterior point into other experiments
    calibration: CalibrationConfig = _role(EXPERIMENT, field(default_factory=CalibrationConfig))
    uncertainty: UncertaintyConfig = _role(EXPERIMENT, field(default_factory=UncertaintyConfig))
    robustness: RobustnessConfig = _role(EXPERIMENT, field(default_factory=RobustnessConfig))
    mix: MixConfig = _role(EXPERIMENT, field(default_factory=MixConfig))
    replicates: int = _role(EXPERIMENT, setting(100, ge=1, le=100_000_000))  # per scenario
    seed: int = _role(EXPERIMENT, setting(20261127, ge=0, lt=2**63))
    resume: bool = _role(RUN, field(default=False))
    # keep chunks/ as written (else removed once the final files hold every chunk)
    keep_parts: bool = _role(RUN, field(default=False))
    # the PNG figures in the run directory (false: tables and report only, e.g. for many small runs)
    figures: bool = _role(RUN, field(default=True))


def _copy(f: Field) -> Any:
    """A new field declared as ``f`` is (a dataclass field belongs to one class)."""
    return field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)


def build_config(models: Mapping[str, Any]) -> type:
    """The root configuration class: the pipeline's :class:`Sections`, with each registered
    model's further groups (``Model.groups``, e.g. ``cluster`` and ``governance``) as
    simulation sections after ``model``. Two models may share a group only with one schema."""
    hints = get_type_hints(Sections)
    own = [(f.name, hints[f.name], _copy(f)) for f in fields(Sections)]
    groups: dict[str, type] = {}
    for model in models.values():
        for group, schema in getattr(model, "groups", {}).items():
            if groups.setdefault(group, schema) is not schema:
                raise TypeError(f"config group {group!r}: two models declare it with different schemas")
    added = [(g, s, field(default_factory=s, metadata={"role": SIMULATION})) for g, s in groups.items()]
    cls = make_dataclass("Config", [own[0], *added, *own[1:]], frozen=True)
    cls.__module__ = __name__  # pickled by reference (chunks travel to Ray workers with it)
    cls.__doc__ = "The whole configuration of an invocation (or of one scenario)."
    return cls


if TYPE_CHECKING:

    class Config(Sections):
        """The whole configuration of an invocation (or of one scenario)."""

        def __getattr__(self, name: str) -> Any: ...  # a model's groups (build_config)

else:
    Config = build_config(MODELS)


def keys_of(role: str) -> tuple[str, ...]:
    """The top-level keys of the configuration with ``role`` (:data:`SIMULATION`,
    :data:`EXPERIMENT` or :data:`RUN`; Hydra's own ``hydra`` node is a run setting): the one
    place that says which keys a replicate's results depend on (the plan's fingerprint, the
    keys a scenario may set, a scenario's name, the keys an uncertain parameter may name, what
    ``kibs-mc-compare diff`` lists)."""
    found = tuple(f.name for f in fields(Config) if f.metadata.get("role") == role)
    return (*found, "hydra") if role == RUN else found


def _writable(node: DictConfig | ListConfig) -> None:
    """The schema as a Hydra node that YAML files and overrides may fill in.

    The dataclasses are frozen (a validated configuration is never changed afterwards), and
    OmegaConf makes a frozen dataclass's node read-only, which would refuse every value the
    YAML groups set while Hydra composes; only the node's flags are cleared, the types and
    keys still hold, and ``to_config`` builds frozen dataclasses again.
    """
    OmegaConf.set_readonly(node, None)
    children = (
        [node._get_node(k) for k in node.keys()]
        if isinstance(node, DictConfig)
        else [node._get_node(i) for i in range(len(node))]
        if isinstance(node, ListConfig)
        else []
    )
    for child in children:
        if isinstance(child, DictConfig | ListConfig):
            _writable(child)
        elif isinstance(child, Node):
            child._set_flag("readonly", None)


def _schema(cls: type) -> DictConfig:
    node = OmegaConf.structured(cls)
    _writable(node)
    return node


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (the YAML files extend them): the
    pipeline's, each model's ``model`` schema as ``<name>_schema``, and the further groups models
    read (``cluster_schema``, ``governance_schema``)."""
    cs = ConfigStore.instance()
    root = _schema(Config)
    # calibration.truth takes any config key (calibration.truth.model.imitation_rate=0.02):
    # the one open node, its keys are checked against the configuration by the calibrate kind.
    OmegaConf.set_struct(root.calibration.truth, False)
    cs.store(name="config_schema", node=root)
    for name, model in MODELS.items():
        cs.store(group="model", name=f"{name}_schema", node=_schema(model.schema))
        for group, schema in getattr(model, "groups", {}).items():
            cs.store(group=group, name=f"{group}_schema", node=_schema(schema))
    for name, schema in EXECUTOR_SCHEMAS.items():
        cs.store(group="executor", name=f"{name}_schema", node=_schema(schema))
    cs.store(group="tracking", name="tracking_schema", node=_schema(TrackingConfig))
    cs.store(group="uncertainty", name="uncertainty_schema", node=_schema(UncertaintyConfig))


register_configs()


def to_config(cfg: DictConfig) -> Config:
    """Turn a composed DictConfig (without Hydra's own node) into validated dataclasses."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    validate(obj)
    return obj
