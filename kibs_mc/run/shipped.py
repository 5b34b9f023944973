"""The calibrated posteriors that ship with kibs-mc: ``conf/posterior/<cluster preset>.json``.

Each file is the weighted posterior of one calibration of the model on one cluster preset
(``experiment=calibrate cluster=<preset>`` against the default targets), with its provenance:
the targets file and its SHA-256, the model's fingerprint (a hash of each module of the model's
code, :func:`model_code`, and of the preset's configuration), the calibrated parameters with
their priors and whether the targets identify them, the command that made it, the seed and the
date. ``calibration.use=shipped`` (the default) runs every other experiment at the posterior
point of the preset it simulates, and ``uncertainty.posterior=shipped`` draws worlds from the
particles; ``calibration.use=hand_set`` keeps the model's hand-set values (docs/ODD.md), for
teaching and docking.

A file calibrated for another version of the model or of the targets is stale: a run then keeps
the hand-set values and says why (one warning line and the report), and
``tests/test_posteriors.py`` fails with the command that makes the file again
(:data:`COMMAND`). Values are checked like any file read from elsewhere
(:func:`kibs_mc.run.calibrated.check_value`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from kibs_mc.config import CONF_DIR, Config, UncertainParameter
from kibs_mc.errors import ConfigError
from kibs_mc.run.calibrated import check_value
from kibs_mc.run.code import CODE, code_inputs

#: ``calibration.use`` / ``uncertainty.posterior`` value: the shipped posterior of the preset.
SHIPPED = "shipped"
#: ``calibration.use`` value: the model's hand-set values (docs/ODD.md), no calibration.
HAND_SET = "hand_set"
#: Where the shipped posteriors are: one JSON file per cluster preset.
POSTERIOR_DIR = CONF_DIR / "posterior"
#: The one command that makes the shipped posteriors again (docs/calibration.md).
COMMAND = "make posteriors"
#: The model's own code among a plan's code inputs: what a calibration is a calibration of.
MODEL_MODULES = (f"{CODE}kibs_mc.kernels", f"{CODE}kibs_mc.models")


def model_code(model: str) -> dict[str, str]:
    """``code:<module>`` -> hash for the modules of the model's kernels and of the model
    (:func:`kibs_mc.run.code.code_inputs`, without the libraries' versions)."""
    return {k: v for k, v in code_inputs(model).items() if k.startswith(MODEL_MODULES)}


def digest(data: Any) -> str:
    """SHA-256 of ``data`` as canonical JSON (of its bytes, for ``bytes``)."""
    raw = data if isinstance(data, bytes) else json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()


def configuration_digest(config: Config) -> str:
    """SHA-256 of what the model simulates besides the calibrated values: the model, cluster
    and governance sections of the calibration's configuration."""
    return digest({k: asdict(getattr(config, k)) for k in ("model", "cluster", "governance")})


def priors_of(parameters: list[UncertainParameter]) -> list[dict[str, Any]]:
    """The calibrated parameters' priors, as recorded (key, low, high, scale, integer)."""
    return [
        {"key": p.key, "low": p.low, "high": p.high, "scale": p.scale, "integer": p.integer}
        for p in parameters
    ]


@dataclass(frozen=True)
class Shipped:
    """One shipped posterior (``conf/posterior/<preset>.json``)."""

    path: Path
    preset: str
    model: str
    parameters: list[UncertainParameter]  # with their priors
    identified: dict[str, bool]  # key -> whether the targets identify it (>= 2x narrower than the prior)
    point: dict[str, dict[str, float]]  # "mean" / "map" -> key -> value
    particles: pl.DataFrame  # the last generation: one column per key and ``weight``
    provenance: dict[str, Any]

    @property
    def unidentified(self) -> list[UncertainParameter]:
        return [p for p in self.parameters if not self.identified.get(p.key, True)]

    def words(self) -> str:
        """Where the values come from, in words for a report."""
        prov = self.provenance
        check = prov.get("check") or {}
        failed = check.get("failures") or []
        verdict = f"; its predictive check fails: {'; '.join(failed)}" if check.get("passes") is False else ""
        return (
            f"the shipped calibration of the `{self.preset}` preset (`conf/posterior/{self.path.name}`: "
            f"targets `{prov.get('targets', '?')}`, {prov.get('date', '?')}{verdict})"
        )


def path_of(preset: str) -> Path:
    return POSTERIOR_DIR / f"{preset}.json"


def presets() -> list[str]:
    """The presets that have a shipped posterior."""
    return sorted(p.stem for p in POSTERIOR_DIR.glob("*.json"))


def _bad(path: Path, key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{path}: {key}", value, f"allowed: {allowed} (regenerate it with `{COMMAND}`)")


def read(path: Path) -> Shipped:
    """The shipped posterior in ``path``, every value checked (ConfigError naming the file
    and the key otherwise)."""
    try:
        data = json.loads(path.read_text())
        parameters = [
            UncertainParameter(**{k: p[k] for k in ("key", "low", "high", "scale", "integer")})
            for p in data["parameters"]
        ]
        particles = pl.DataFrame(data["particles"]).cast(pl.Float64)
        point = {name: {k: float(v) for k, v in data["point"][name].items()} for name in ("mean", "map")}
        identified = {p["key"]: bool(p["identified"]) for p in data["parameters"]}
        shipped = Shipped(
            path,
            str(data["preset"]),
            str(data["model"]),
            parameters,
            identified,
            point,
            particles,
            dict(data["provenance"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pl.exceptions.PolarsError):
        raise _bad(
            path, "(file)", "unreadable", "a shipped posterior written by scripts/ship_posterior.py"
        ) from None
    for i, p in enumerate(parameters):
        p.check(f"{path}: parameters[{i}]")
        for name, values in point.items():
            if p.key not in values:
                raise _bad(path, f"point.{name}.{p.key}", None, "a value for every calibrated parameter")
            check_value(f"{path}: point.{name}.{p.key}", p, values[p.key])
        if p.key not in particles.columns:
            raise _bad(path, f"particles.{p.key}", None, "a column for every calibrated parameter")
        column = particles[p.key]
        bad = ~(column.is_finite() & column.is_between(p.low, p.high))
        if bad.any():
            check_value(
                f"{path}: particles.{p.key}[{int(bad.arg_max() or 0)}]", p, float(column.filter(bad)[0])
            )
    weight = particles["weight"] if "weight" in particles.columns else None
    if (
        weight is None
        or particles.height == 0
        or not (weight.is_finite() & (weight >= 0)).all()
        or weight.sum() <= 0
    ):
        raise _bad(path, "particles.weight", "missing or invalid", "finite weights >= 0 of positive total")
    return shipped


@cache
def load(preset: str) -> Shipped | None:
    """The shipped posterior of ``preset``, or None when there is none."""
    path = path_of(preset)
    return read(path) if path.is_file() else None


def targets_file(spec: str) -> Path:
    from kibs_mc.analysis.targets import target_file

    return target_file(spec, CONF_DIR)


def stale(shipped: Shipped) -> list[str]:
    """What changed since ``shipped`` was calibrated, in words (empty: nothing): the model's
    code (module by module) and the targets file. The preset's configuration and the priors
    are compared by tests/test_posteriors.py (they need the configuration composed)."""
    prov = shipped.provenance
    out = []
    recorded, current = prov.get("model_code", {}), model_code(shipped.model)
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            what = "added" if key not in recorded else "removed" if key not in current else "changed"
            out.append(f"module {key.removeprefix(CODE)} {what}")
    try:
        path = targets_file(str(prov.get("targets")))
        if digest(path.read_bytes()) != prov.get("targets_sha256"):
            out.append(f"targets {prov.get('targets_file')} changed")
    except (ConfigError, OSError):
        out.append(f"targets {prov.get('targets')} no longer found")
    return out


_warned: set[str] = set()


def usable(config: Config) -> tuple[Shipped | None, str]:
    """The shipped posterior a run of ``config`` starts from, or None and why not (no file
    for its preset or model, or a stale one: then a warning line on stderr, once)."""
    preset, model = config.cluster.name, config.model.name
    shipped = load(preset)
    if shipped is None:
        return None, f"no calibration of the `{preset}` preset ships with kibs-mc"
    if shipped.model != model:
        return None, f"the shipped calibration of the `{preset}` preset is of model `{shipped.model}`"
    changes = stale(shipped)
    if not changes:
        return shipped, ""
    why = (
        f"the shipped calibration of the `{preset}` preset ({shipped.path}) is stale: "
        f"{'; '.join(changes[:3])}{' ...' if len(changes) > 3 else ''} since it was made; "
        f"regenerate it with `{COMMAND}`"
    )
    if why not in _warned:
        _warned.add(why)
        print(f"kibs-mc: warning: {why}. Running at the hand-set values.", file=sys.stderr)
    return None, why


#: Settings a shipped calibration may add to ``experiment=calibrate cluster=<preset>``: how, not
#: what, it calibrates (the preset's model, cluster, governance, priors and targets stay); a
#: calibration finished with ``resume=true`` (stopped after a generation, then completed) is the
#: same calibration.
EXTRA = ("calibration.", "seed=", "executor", "resume=")
#: Settings that would change what is calibrated, though under ``calibration.``.
WHAT = ("calibration.parameters", "calibration.targets", "calibration.truth", "calibration.template")


def check_extra(extra: list[str]) -> None:
    """ConfigError unless every setting of ``extra`` only changes how a preset is calibrated."""
    for x in extra:
        key, _, value = x.partition("=")
        if not x.startswith(EXTRA) or key.lstrip("+~").startswith(WHAT):
            raise ConfigError(
                key,
                value,
                "allowed: calibration.* settings of the sampler (not its parameters, "
                "targets or truth), seed, executor*, resume",
            )


def calibration_config(overrides: list[str]) -> Config:
    """The configuration of a calibration to ship (``experiment=calibrate cluster=<preset>``
    and :func:`check_extra` settings), checked."""
    from kibs_mc.config import load_config

    fixed = ("experiment=", "cluster=", "tracking=", "hydra.")
    check_extra([o for o in overrides if not o.startswith(fixed)])
    return load_config([o for o in overrides if not o.startswith("hydra.")])


def _recorded(run_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """A finished calibration's command-line settings (``.hydra/overrides.yaml``) and its
    recorded specification (``calibration_spec.json``)."""
    import yaml

    try:
        overrides = [str(o) for o in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())]
        spec = json.loads((run_dir / "calibration_spec.json").read_text())
    except (OSError, ValueError, TypeError, yaml.YAMLError):
        raise ConfigError(
            "--from", str(run_dir), "allowed: a finished experiment=calibrate run directory"
        ) from None
    return overrides, spec


def write(run_dir: Path, date: str) -> Path:
    """``conf/posterior/<preset>.json`` from the finished calibration in ``run_dir``: its last
    generation, posterior point, identification and provenance. Refused (ConfigError) unless it
    calibrated a preset as configured (model, cluster, governance, priors and targets of
    ``experiment=calibrate cluster=<preset>``) on the model's code of today."""
    from kibs_mc.analysis.calibration import IDENTIFIED
    from kibs_mc.config import load_config
    from kibs_mc.run.calibrated import POINT_FILE, read_point, read_posterior

    run_dir = Path(run_dir)
    overrides, spec = _recorded(run_dir)
    if "experiment=calibrate" not in overrides:
        raise ConfigError("--from", str(run_dir), "allowed: a run of experiment=calibrate")
    config = calibration_config(overrides)
    preset = config.cluster.name
    base = load_config(["experiment=calibrate", f"cluster={preset}"])
    if (
        configuration_digest(config) != configuration_digest(base)
        or priors_of(list(config.calibration.parameters)) != priors_of(list(base.calibration.parameters))
        or config.calibration.targets != base.calibration.targets
    ):
        raise ConfigError(
            "--from",
            str(run_dir),
            f"allowed: a calibration of the `{preset}` preset as configured "
            "(its model, cluster, governance, priors and targets unchanged)",
        )
    code = {k: v for k, v in (spec.get("code") or {}).items() if k.startswith(MODEL_MODULES)}
    if code != model_code(config.model.name):
        raise ConfigError(
            "--from", str(run_dir), "allowed: a calibration of today's model code (run it again)"
        )
    parameters, particles = read_posterior(run_dir)
    point = {name: read_point(run_dir, name) for name in ("mean", "map")}
    saved = json.loads((run_dir / POINT_FILE).read_text())
    table = pl.read_parquet(run_dir / "parameters.parquet")
    narrowing = dict(zip(table["parameter"], table["narrowing"], strict=True))
    identified = saved.get("identified") or {k: bool(v >= IDENTIFIED) for k, v in narrowing.items()}
    targets = targets_file(config.calibration.targets)
    # the regeneration command: how the preset was calibrated, run afresh (not resumed)
    extra = [
        o
        for o in overrides
        if not o.startswith(("experiment=", "cluster=", "tracking=", "hydra.", "resume="))
    ]
    record = {
        "preset": preset,
        "model": config.model.name,
        "parameters": [
            {
                **prior,
                "identified": bool(identified[prior["key"]]),
                "narrowing": float(narrowing[prior["key"]]),
            }
            for prior in priors_of(parameters)
        ],
        "point": point,
        "provenance": {
            "command": shlex.join(
                ["python", "scripts/ship_posterior.py", preset, *(["--", *extra] if extra else [])]
            ),
            "calibration": shlex.join(["kibs-mc", *overrides]),
            "date": date,
            "seed": config.seed,
            "targets": config.calibration.targets,
            "targets_file": str(
                targets.relative_to(CONF_DIR.parent) if targets.is_relative_to(CONF_DIR.parent) else targets
            ),
            "targets_sha256": digest(targets.read_bytes()),
            "configuration_sha256": configuration_digest(config),
            "model_code": code,
            "population": config.calibration.population,
            "generations": int(saved.get("generations", 0)),
            "particles": particles.height,
            "check": saved.get("check"),
        },
        "particles": {c: particles[c].to_list() for c in particles.columns},
    }
    path = path_of(preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    load.cache_clear()
    return path
