"""Composition: ``conf/config.yaml`` plus command-line style overrides, through Hydra, with
Hydra's and OmegaConf's errors translated into one :class:`~kibs_mc.errors.ConfigError` that
names the key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from kibs_mc.config.files import read_yaml
from kibs_mc.config.schema import Config, to_config
from kibs_mc.errors import ConfigError
from kibs_mc.fields import validate


def _conf_dir() -> Path:
    """The Hydra configuration: shipped inside the package in a wheel (``kibs_mc/conf``, package
    data), else the source tree's ``conf/`` (an editable install or a checkout)."""
    package = Path(__file__).resolve().parent.parent
    shipped, source = package / "conf", package.parent / "conf"
    return shipped if (shipped / "config.yaml").is_file() else source


CONF_DIR = _conf_dir()


def search_dirs(overrides: Sequence[str] = ()) -> list[Path]:
    """The config directories: ``conf/``, then those added by a ``hydra.searchpath=[file://DIR,
    ...]`` override (what ``kibs-mc --config-dir DIR`` becomes)."""
    dirs = [CONF_DIR]
    for text in overrides:
        key, _, value = text.partition("=")
        if key == "hydra.searchpath":
            for entry in value.strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if entry.startswith("file://"):
                    dirs.append(Path(entry[len("file://") :]))
    return dirs


def group_options(group: str, overrides: Sequence[str] = ()) -> list[str]:
    """Names of the YAML options of a config group in ``conf/`` and the added directories."""
    return sorted({p.stem for d in search_dirs(overrides) for p in (d / group).glob("*.yaml")})


#: The header an experiment file needs: its keys (``experiment.*``, ``replicates``, ...) are
#: top-level keys, not keys under ``experiment``.
GLOBAL_HEADER = "# @package _global_"


def check_experiment_file(overrides: Sequence[str]) -> None:
    """An ``experiment=NAME`` whose file lacks :data:`GLOBAL_HEADER` is refused with a message
    that says so (Hydra would report a ConfigKeyError about 'experiment.experiment')."""
    name = _override_value(overrides, "experiment")
    for directory in search_dirs(overrides):
        path = directory / "experiment" / f"{name}.yaml"
        if path.is_file():
            read_yaml(path, "experiment")  # plain YAML, of a sane size, before Hydra walks it
            head = [line.strip() for line in path.read_text().splitlines()[:20]]
            if not any(line.startswith("#") and "@package _global_" in line for line in head):
                raise ConfigError(
                    "experiment",
                    name,
                    f"allowed: an experiment file whose first line is "
                    f"'{GLOBAL_HEADER}'; {path} has no such line, so its keys would land "
                    "under 'experiment.' (README, 'Your own experiments')",
                )
            return


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
            choices = ", ".join(group_options(group, overrides))
            return ConfigError(group, option, f"allowed: one of {choices}")
        return ConfigError("config", missing, "allowed: a config file in conf/")
    full_key = str(getattr(cause, "full_key", "") or "")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and full_key:
        parent, _, leaf = full_key.rpartition(".")
        known = _known_keys(parent, overrides)
        return ConfigError(
            full_key,
            _override_value(overrides, full_key),
            f"'{leaf}' is not a known key"
            + (f" under '{parent}'" if parent else "")
            + (f"; known keys: {', '.join(known)}" if known else ""),
        )
    if isinstance(cause, ValidationError) and full_key:
        expected = str(cause).split(" could not be converted to ", 1)[-1].split("\n", 1)[0].strip()
        if "valid bool" in str(cause):
            expected = "Boolean"
        kind = _TYPE_WORDS.get(expected, f"a value of type {expected}")
        return ConfigError(full_key, _override_value(overrides, full_key), f"allowed: {kind}")
    in_file = re.search(
        r"In '([^']+)': \w+ raised while composing config:\s*(.*?)\n\s*full_key: (\S+)", str(exc), re.S
    )
    if in_file:  # a value in a config file that its field does not take (Hydra keeps no cause)
        source, problem, key = in_file.groups()
        value = re.search(r"Value '([^']*)'", problem)
        expected = problem.split(" could not be converted to ", 1)[-1].strip()
        kind = _TYPE_WORDS.get(expected, f"a value of type {expected}")
        shown = value.group(1) if value else problem
        return ConfigError(key, shown, f"allowed: {kind} (set in {source}.yaml)")
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
    check_experiment_file(overrides)
    overrides = list(overrides)
    for _ in range(len(overrides) + 1):
        try:
            return _compose(overrides)
        except (HydraException, OmegaConfBaseException) as exc:
            error = _translate(exc, overrides)
            whole = _whole_number(overrides, error)
            if whole is None:
                raise error from None
            overrides = whole  # 1e6 for an integer setting: the same number, written out
        except yaml.YAMLError as exc:  # a config group file that is not plain YAML
            mark = getattr(exc, "problem_mark", None)
            where = getattr(mark, "name", None) or "a config file"
            allowed = f"allowed: a YAML file of plain values ({_first(exc)})"
            raise ConfigError("config", where, allowed) from None
        except (ValueError, TypeError) as exc:  # e.g. Hydra on `model=0`: a group option that is not a name
            raise ConfigError(
                "overrides", " ".join(overrides), f"allowed: group=option with an option from conf/ ({exc})"
            ) from None
    raise AssertionError("unreachable: each pass rewrites one more override or raises")


def _unresolved(cfg: DictConfig, key: str) -> Any:
    """The value at ``key`` (``a.b``, ``a.b[2]``) as written, interpolations unresolved."""
    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for part in re.findall(r"[^.\[\]]+", key):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _whole_number(overrides: list[str], error: ConfigError) -> list[str] | None:
    """``overrides`` with the one ``error`` refuses as not an integer rewritten as one, when it
    is a whole number in scientific notation (``replicates=1e6``); None otherwise."""
    if error.allowed != "allowed: an integer":
        return None
    for i, text in enumerate(overrides):
        key, _, value = text.partition("=")
        if key == error.key and re.fullmatch(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+", value):
            number = float(value)
            if number.is_integer() and abs(number) < 2**63:
                return [*overrides[:i], f"{key}={int(number)}", *overrides[i + 1 :]]
    return None


#: Most compositions a multirun's up-front check makes (each sweep value once).
MOST_SWEEP_CHECKS = 50


def sweep_checks(overrides: Sequence[str]) -> list[list[str]]:
    """The overrides of a multirun (``a=1,2 b=x,y``) as plain override lists that together
    give every swept value once (``a=1 b=x``, ``a=2 b=x``, ``a=1 b=y``), for the up-front check;
    sweeps Hydra can only expand later (``glob``, intervals) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - the check of the overrides as given names the bad one
        return [list(overrides)]
    values: list[tuple[str, list[str]]] = []
    for override in parsed:
        key, _, value = (override.input_line or "").partition("=")
        if not override.is_sweep_override():
            values.append((key, [value]))
            continue
        try:
            swept = [str(v) for v in override.sweep_string_iterator()]
        except Exception:  # noqa: BLE001 - glob(...) and intervals need Hydra's sweeper
            continue
        values.append((key, swept or [""]))
    first = [f"{key}={options[0]}" for key, options in values]
    checks = [first]
    for i, (key, options) in enumerate(values):
        for option in options[1:]:
            checks.append([*first[:i], f"{key}={option}", *first[i + 1 :]])
    return checks[:MOST_SWEEP_CHECKS]


def load_config(overrides: Sequence[str] = ()) -> Config:
    """Composed and validated configuration, as dataclasses."""
    from omegaconf.errors import OmegaConfBaseException

    cfg = compose_config(overrides)
    try:
        return to_config(cfg)
    except OmegaConfBaseException as exc:  # e.g. an interpolation ${...} that does not resolve
        raise _translate(exc, overrides) from None
    except ConfigError as error:  # a value given as ${oc.env:...} is named as given, not resolved
        raw = _unresolved(cfg, error.key)
        if isinstance(raw, str) and "${" in raw:
            raise ConfigError(error.key, raw, error.allowed) from None
        raise


def apply_values(cfg: DictConfig, overrides: Sequence[str]) -> Config:
    """``cfg`` with plain ``dotted.key=value`` overrides merged in, validated.

    Much faster than a new composition, for the many sampled scenarios of a sweep; group
    selections (``governance=strategic``) still need :func:`compose_config`. A list element is
    written ``key[i]=value`` (e.g. ``cluster.knowledge_level[0]=1.5``).
    """
    from omegaconf.errors import OmegaConfBaseException

    plain = [o for o in overrides if "[" not in o.partition("=")[0]]
    indexed = [o for o in overrides if "[" in o.partition("=")[0]]
    try:
        merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist(plain))
        for text in indexed:
            key, _, value = text.partition("=")
            if OmegaConf.select(merged, key, throw_on_missing=False, default=_ABSENT) is _ABSENT:
                raise ConfigError(
                    key, value, "allowed: an element of an existing list (index below its length)"
                )
            OmegaConf.update(merged, key, OmegaConf.create({"v": value})["v"] if value else None)
    except OmegaConfBaseException as exc:
        raise _translate(exc, overrides) from None
    assert isinstance(merged, DictConfig)
    return to_config(merged)


_ABSENT = object()

_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")


def replace_number(node: Any, key: str, value: float, path: str = "") -> Any:
    """``node`` (a tree of frozen dataclasses) with the number at ``key`` set to ``value``
    (``a.b``, a list element ``a.b[2]``), as its field's type (int or float).

    Raises KeyError (the key so far) for a key that does not exist, TypeError for one that is
    not a number (or an int field given a fraction).
    """
    head, _, rest = key.partition(".")
    m = _PART.match(head)
    here = f"{path}.{head}" if path else head
    if (
        m is None
        or not dataclasses.is_dataclass(node)
        or isinstance(node, type)
        or m.group(1) not in {f.name for f in dataclasses.fields(node)}
    ):
        raise KeyError(here)
    name, index = m.group(1), m.group(2)
    old = getattr(node, name)
    if index is not None:
        if not isinstance(old, list) or int(index) >= len(old):
            raise KeyError(here)
        items = list(old)
        items[int(index)] = (
            replace_number(items[int(index)], rest, value, here)
            if rest
            else _as_number(items[int(index)], value, here)
        )
        return dataclasses.replace(node, **{name: items})
    new = replace_number(old, rest, value, here) if rest else _as_number(old, value, here)
    return dataclasses.replace(node, **{name: new})


def _as_number(old: Any, value: float, key: str) -> float:
    if isinstance(old, bool) or not isinstance(old, int | float):
        raise TypeError(key)
    if isinstance(old, int):
        if float(value) != int(value):
            raise TypeError(key)
        return int(value)
    return float(value)


def with_numbers(config: Config, overrides: Sequence[str]) -> Config | None:
    """``config`` with ``key=number`` overrides of numeric fields set, validated; None when an
    override is anything else (the caller then merges with :func:`apply_values`, which also
    gives the error messages). Some hundred times faster than a merge: sampled scenarios
    (sweep points, robustness worlds) are thousands."""
    out: Any = config
    for text in overrides:
        key, _, raw = text.partition("=")
        try:
            number: float = int(raw)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                return None
        try:
            out = replace_number(out, key, number)
        except (KeyError, TypeError):
            return None
    validate(out)
    return out
