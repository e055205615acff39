"""Strict loading of frozen config dataclasses from YAML.

Every config field is declared with :func:`param`, which carries a one-line doc and the valid
range or choices. Loading rejects unknown keys, wrong types and out-of-range values with a
:class:`ConfigError` whose message starts with the dotted key (``sensors.lidar.beams: ...``),
so a user editing a scenario file sees exactly which line is wrong.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or mapping does not match its dataclass; the message names the key."""


def param(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
          choices: tuple | None = None) -> Any:
    """Declare a config field with its one-line doc and the valid range [lo, hi] or choices."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in frozen configs; use a tuple")
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_doc(cls: type, name: str) -> str:
    """The one-line doc of a config field (for --help texts and generated docs)."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}[name]


def check_fields(config: Any) -> None:
    """Check every field of a config dataclass instance against its ``param`` range and choices.
    ``from_mapping`` does this for loaded configs; a ``__post_init__`` calling it checks configs
    built in code too. ConfigError naming the field."""
    for f in dataclasses.fields(config):
        _check_range(getattr(config, f.name), f.metadata, f.name)


def parameter_names(cls: type) -> dict[str, str]:
    """Field -> its name outside Python (ROS parameter, command-line flag): the field's own name,
    unless the class renames it in a ``PARAMETER_NAMES`` class attribute (names older than it)."""
    renamed = getattr(cls, "PARAMETER_NAMES", {})
    unknown = sorted(set(renamed) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"{cls.__name__}.PARAMETER_NAMES renames fields it does not have: {unknown}")
    return {f.name: renamed.get(f.name, f.name) for f in dataclasses.fields(cls) if f.init}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(value, non_none[0], key)
        raise ConfigError(f"{key}: unsupported union type {tp}")
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def _check_range(value: Any, meta: typing.Mapping, key: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("lo"), meta.get("hi")
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if lo is not None and v < lo:
                raise ConfigError(f"{key}: {v!r} is below the minimum {lo}")
            if hi is not None and v > hi:
                raise ConfigError(f"{key}: {v!r} is above the maximum {hi}")


def convert_field(cls: type, name: str, value: Any, key: str) -> Any:
    """``value`` checked and converted for field ``name`` of config class ``cls`` by the rules
    ``from_mapping`` applies (type, range, choices); ConfigError naming ``key``."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    converted = _convert(value, typing.get_type_hints(cls)[name], key)
    _check_range(converted, f.metadata, key)
    return converted


def from_mapping(cls: type[T], data: Any, key: str = "") -> T:
    """Build config dataclass ``cls`` from a mapping, strictly (see module doc)."""
    where = key or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        name = f"{key}.{unknown[0]}" if key else unknown[0]
        raise ConfigError(f"{name}: unknown key (known keys here: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        sub = f"{key}.{name}" if key else name
        value = _convert(data[name], hints[name], sub)
        _check_range(value, f.metadata, sub)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


# Limits on what a YAML file may expand to. Configs hold a few hundred values; an "anchor bomb"
# (aliases of aliases) of a few hundred bytes expands to billions and takes the machine's memory,
# and nesting thousands deep overflows the parser's recursion.
MAX_YAML_NODES = 1_000_000
MAX_YAML_DEPTH = 100


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path``, parsed safely: ConfigError naming the file for a missing or
    unreadable file, text that is not UTF-8, invalid YAML, nesting deeper than MAX_YAML_DEPTH or
    aliases that expand to more than MAX_YAML_NODES values (checked before anything is expanded)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, where: str) -> Any:
    """:func:`read_yaml` for text already read; ``where`` names it in errors. The nesting is
    checked on the parser's events (the composer recurses once per level, and a RecursionError
    thousands of levels down is slow), then the node graph is composed (aliases share nodes
    there, nothing is expanded yet), measured, and only then constructed into Python values."""
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ConfigError(f"{where}: YAML nested deeper than {MAX_YAML_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            if _expanded_size(root, {}) > MAX_YAML_NODES:
                raise ConfigError(f"{where}: YAML aliases expand to more than {MAX_YAML_NODES} values (an anchor bomb?)")
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from None


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Values ``node`` becomes once every alias is expanded (memoised per shared node; depth is
    bounded by MAX_YAML_DEPTH, so the recursion is too)."""
    key = id(node)
    if key not in memo:
        memo[key] = 0  # a recursive alias counts as nothing rather than recursing forever
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(_expanded_size(v, memo) for v in node.value)
        else:
            size = 1
        memo[key] = min(size, MAX_YAML_NODES + 1)
    return memo[key]


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Load config dataclass ``cls`` from a YAML file; errors name the file and the key."""
    data = read_yaml(path)
    try:
        return from_mapping(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def to_mapping(config: Any) -> Any:
    """Plain YAML-ready data (dicts, lists, scalars) from a config dataclass."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_mapping(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, tuple):
        return [to_mapping(v) for v in config]
    return config
