"""Configuration dataclasses and their YAML / ROS-parameter form.

One name per setting: a dataclass field name is the YAML key and the ROS parameter name.
Fields carry their description and allowed range in ``metadata`` (see :func:`param`), so the
nodes can declare ROS parameters with descriptors and ranges from the same source, and the
offline tools validate a YAML file exactly as a node would.

A component with settings of its own gets a nested config dataclass (:func:`section`): its
fields are the dotted ROS parameters ``<section>.<field>`` (``loop.min_inliers``), which rcl
reads from a nested YAML mapping (``loop: {min_inliers: 3}``). So the component takes its own
config object instead of a copy of the fields under new names, and the YAML, the parameter and
the field still share one name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TypeVar

import yaml

from lkd_perception.common.errors import ConfigError
from lkd_perception.common.paths import read_text

T = TypeVar("T")

_SCALAR_TYPES = (bool, int, float, str)


def param(
    default: Any,
    description: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: Sequence[str] | None = None,
    read_only: bool = False,
) -> Any:
    """A dataclass field with the facts a ROS parameter descriptor needs.

    ``lo``/``hi`` bound numbers (inclusive), ``choices`` restricts strings, and ``read_only``
    marks settings that only take effect at start-up (model paths, topic QoS).
    List defaults are copied per instance.
    """
    meta = {
        "description": description,
        "lo": lo,
        "hi": hi,
        "choices": tuple(choices) if choices is not None else None,
        "read_only": read_only,
    }
    if isinstance(default, list):
        return field(default_factory=lambda d=tuple(default): list(d), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, description: str) -> Any:
    """A nested config dataclass field: its settings are the parameters ``<field>.<setting>``.

    ``description`` documents the section (a comment on its line in the generated YAML).
    """
    if not is_dataclass(cls):
        raise ConfigError(f"{cls!r} is not a dataclass")
    return field(default_factory=cls, metadata={"description": description, "section": True})


@dataclass(frozen=True)
class ParamSpec:
    """Everything about one setting: what a node needs to declare it as a ROS parameter."""

    name: str
    type: type
    default: Any
    description: str
    lo: float | None
    hi: float | None
    choices: tuple[str, ...] | None
    read_only: bool
    element_type: type | None = None  # for list-valued settings


def _section_type(cls: type, f: dataclasses.Field) -> type | None:
    """The nested config dataclass of a :func:`section` field, else None."""
    if not f.metadata.get("section"):
        return None
    t = typing.get_type_hints(cls)[f.name]
    if not (isinstance(t, type) and is_dataclass(t)):
        raise ConfigError(f"{cls.__name__}.{f.name}: a section must be annotated with its config dataclass")
    return t


def _resolve_type(cls: type, f: dataclasses.Field) -> tuple[type, type | None]:
    hints = typing.get_type_hints(cls)
    t = hints[f.name]
    origin = typing.get_origin(t)
    if origin in (list, tuple, Sequence):
        args = typing.get_args(t)
        elem = args[0] if args else float
        return list, elem
    if t in _SCALAR_TYPES:
        return t, None
    raise ConfigError(f"{cls.__name__}.{f.name}: unsupported config type {t!r}")


def describe(cls: type, prefix: str = "") -> list[ParamSpec]:
    """The parameter specs of a config dataclass, in field order; a section's settings in its
    place, named ``<section>.<setting>`` (``prefix`` is put before every name)."""
    if not is_dataclass(cls):
        raise ConfigError(f"{cls!r} is not a dataclass")
    specs = []
    for f in fields(cls):
        sub = _section_type(cls, f)
        if sub is not None:
            specs += describe(sub, f"{prefix}{f.name}.")
            continue
        typ, elem = _resolve_type(cls, f)
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            raise ConfigError(f"{cls.__name__}.{f.name} has no default")
        meta = f.metadata
        specs.append(
            ParamSpec(
                name=prefix + f.name,
                type=typ,
                default=default,
                description=meta.get("description", ""),
                lo=meta.get("lo"),
                hi=meta.get("hi"),
                choices=meta.get("choices"),
                read_only=bool(meta.get("read_only", False)),
                element_type=elem,
            )
        )
    return specs


def coerce_value(spec: ParamSpec, value: Any, owner: str = "") -> Any:
    """Check one value against its spec, converting ints to floats where a float is expected."""
    where = f"{owner}.{spec.name}" if owner else spec.name
    if spec.type is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        elem = spec.element_type or float
        out = []
        for v in value:
            if elem is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, elem) or (elem is int and isinstance(v, bool)):
                raise ConfigError(f"{where}: list element {v!r} is not {elem.__name__}")
            out.append(v)
        return out
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got bool")
    if not isinstance(value, spec.type):
        raise ConfigError(f"{where}: expected {spec.type.__name__}, got {type(value).__name__} ({value!r})")
    if spec.type in (int, float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not finite")
        if spec.lo is not None and value < spec.lo:
            raise ConfigError(f"{where}: {value} is below the minimum {spec.lo}")
        if spec.hi is not None and value > spec.hi:
            raise ConfigError(f"{where}: {value} is above the maximum {spec.hi}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {list(spec.choices)}")
    return value


def sections(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted name -> description of every :func:`section` of a config dataclass (nested too)."""
    out: dict[str, str] = {}
    for f in fields(cls):
        sub = _section_type(cls, f)
        if sub is not None:
            out[prefix + f.name] = f.metadata.get("description", "")
            out.update(sections(sub, f"{prefix}{f.name}."))
    return out


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys (``{"loop": {"min_age_s": 5}}`` -> ``{"loop.min_age_s": 5}``),
    as rcl names the parameters of a nested YAML mapping. A setting's value is never a mapping."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _build(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    """The dataclass from checked dotted values; sections built from their own keys."""
    kwargs = {}
    for f in fields(cls):
        sub = _section_type(cls, f)
        if sub is not None:
            kwargs[f.name] = _build(sub, values, f"{prefix}{f.name}.")
        elif prefix + f.name in values:
            kwargs[f.name] = values[prefix + f.name]
    return cls(**kwargs)


def from_dict(cls: type[T], values: Mapping[str, Any], *, strict: bool = True) -> T:
    """Build and validate a config dataclass from a mapping.

    Settings of a section are given nested (YAML: ``loop: {min_age_s: 5}``) or dotted (ROS
    parameters: ``loop.min_age_s``). With ``strict`` an unknown key is an error (a typo in YAML
    must not be silently ignored); keys belonging to other config sections of the same node are
    passed with ``strict=False``.
    """
    specs = {s.name: s for s in describe(cls)}
    flat = flatten(values)
    unknown = sorted(set(flat) - set(specs))
    if strict and unknown:
        raise ConfigError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {sorted(specs)}")
    return _build(cls, {k: coerce_value(specs[k], v, cls.__name__) for k, v in flat.items() if k in specs})


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a plain dict (YAML-ready; a section as a nested dict)."""
    return {f.name: to_dict(v) if is_dataclass(v := getattr(cfg, f.name)) else v for f in fields(cfg)}


def updated(cfg: T, changes: Mapping[str, Any]) -> T:
    """A copy of ``cfg`` with some settings changed, given by dotted name; checked like :func:`from_dict`."""
    return from_dict(type(cfg), {**flatten(to_dict(cfg)), **flatten(changes)})


def unknown_settings(given: Iterable[str], known: Iterable[str]) -> dict[str, str | None]:
    """Each given name that is not a known setting, with the closest known name (or None).

    rcl drops a parameter no node declares without a word, so a typo or a name renamed since
    (``loop_min_age_s`` is ``loop.min_age_s`` now) would leave a setting at its default unseen;
    the nodes log these with the suggestion.
    """
    known = sorted(set(known))
    return {name: next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None)
            for name in sorted(set(given) - set(known))}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file into a dict; a missing or malformed file is a :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(read_text(p, "YAML file")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data


def node_parameters(params_file: Mapping[str, Any], node_name: str, namespace: str = "") -> dict[str, Any]:
    """The ``ros__parameters`` that rcl gives node ``namespace/node_name`` from a parameter file.

    For the offline commands, which read the nodes' parameter file without a ROS graph; the
    nodes themselves let rcl parse it (``--params-file``). Same rules as rcl: a section applies
    when its key, a fully qualified node name with wildcards (``*`` one name, ``**`` any number;
    no leading ``/`` means one), matches the node; matching sections apply in file order, the
    later winning; nested mappings give dotted names, one parameter per leaf.
    """
    fqn = "/" + "/".join(p for p in (*namespace.strip("/").split("/"), node_name) if p)
    merged: dict[str, Any] = {}
    for key, node_section in params_file.items():
        if isinstance(node_section, Mapping) and isinstance(key, str) and _node_pattern(key).fullmatch(fqn):
            merged.update(flatten(node_section.get("ros__parameters", {}) or {}))
    return merged


def _node_pattern(key: str) -> re.Pattern[str]:
    """The regular expression of a parameter file's node key (rcl's wildcard rules)."""
    parts = []
    for token in key.strip("/").split("/"):
        parts.append({"**": "(?:/[^/]+)*", "*": "/[^/]+"}.get(token, "/" + re.escape(token)))
    return re.compile("".join(parts))

