"""ROS parameters from the project's config dataclasses: one section per dataclass.

``declare_section(node, "sync", StampSyncConfig(...))`` declares ``sync.<field>`` for every field,
with the field's one-line doc as the description and the given instance's values as defaults;
``read_section(node, "sync", StampSyncConfig)`` reads them back through the same strict
converter the YAML configs use (:func:`fusion_core.config_io.from_mapping`), so a bad value in
``configs/vehicle.yaml`` fails with the parameter's name, exactly like a bad scenario file.

A class may rename fields in ``PARAMETER_NAMES`` (``fusion_core.config_io.parameter_names``):
``GateSettings.mode`` is ``fusion.gate_mode``. Several classes can share one prefix as long as
their parameter names differ (fusion_node: its own config, GateSettings, ExitSettings).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from fusion_core.config_io import ConfigError, convert_field, from_mapping, param, parameter_names, read_yaml

T = TypeVar("T")


def _ros_default(value: Any) -> Any:
    """A dataclass default as a ROS parameter value (tuples become lists; an empty list has no
    element type, so it is declared by type and left unset)."""
    if isinstance(value, tuple):
        if not value:
            return Parameter.Type.STRING_ARRAY
        return list(value)
    return value


@dataclass(frozen=True)
class ParamSection:
    """One section of a node's parameters: ``prefix.<field>`` for the fields of ``defaults``'s
    class, at ``defaults``'s values, except ``skip`` (fields the node sets itself)."""

    prefix: str
    defaults: Any
    skip: tuple[str, ...] = ()

    def parameters(self) -> dict[str, tuple[type, str]]:
        """Declared parameter name -> (config class, field name): every field but ``skip``,
        nested configs and fields whose default is None. The one definition of what a node
        declares (``declare_section``) and what ``check_parameter`` accepts."""
        names = parameter_names(type(self.defaults))
        out = {}
        for f in dataclasses.fields(self.defaults):
            value = getattr(self.defaults, f.name)
            if f.name in self.skip or dataclasses.is_dataclass(value) or value is None or not f.init:
                continue
            out[f"{self.prefix}.{names[f.name]}" if self.prefix else names[f.name]] = (type(self.defaults), f.name)
        return out


@dataclass(frozen=True)
class RclpyBuiltins:
    """Parameters every rclpy node declares itself (checked, never declared by us)."""

    use_sim_time: bool = param(False, "read the time from /clock instead of the system clock")


def node_parameter_table(module: str) -> dict[str, tuple[type, str]]:
    """Every parameter of the node whose main module is ``module`` (its ``PARAMETER_SECTIONS``,
    plus rclpy's own) -> (config class, field name)."""
    sections = importlib.import_module(module).PARAMETER_SECTIONS
    return parameter_table((*sections, ParamSection("", RclpyBuiltins())))


def check_params_file(path: Path, modules: Iterable[str]) -> None:
    """Every parameter in the ROS params file ``path`` checked by :func:`check_parameter`: under a
    node's name against that node's parameters (``modules``: node name -> main module), under
    ``/**`` against the union of them all (the file serves every node). ConfigError naming the
    file and the parameter; rcl would otherwise ignore an unknown key or a wrongly typed value."""
    modules = dict(modules)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a ROS params file maps node names to ros__parameters")
    every: dict[str, tuple[type, str]] = {}
    tables = {name: node_parameter_table(m) for name, m in modules.items()}
    for table in tables.values():
        every.update(table)
    for node, body in data.items():
        if node != "/**" and node.lstrip("/") not in tables:
            raise ConfigError(f"{path}: {node}: no such node (nodes: {', '.join(tables)}, or /** for all)")
        table = every if node == "/**" else tables[node.lstrip("/")]
        params = body.get("ros__parameters") if isinstance(body, dict) else None
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: {node}: expected a ros__parameters mapping")
        for name, value in _flatten(params):
            check_parameter(table, name, value, f"{path}: {node}")


def _flatten(params: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        out += _flatten(value, name + ".") if isinstance(value, dict) else [(name, value)]
    return out


def declare_sections(node: Node, sections: Iterable[ParamSection]) -> None:
    for section in sections:
        declare_section(node, section.prefix, section.defaults, section.skip)


def parameter_table(sections: Iterable[ParamSection]) -> dict[str, tuple[type, str]]:
    """Every parameter the sections declare -> (config class, field name)."""
    table: dict[str, tuple[type, str]] = {}
    for section in sections:
        table.update(section.parameters())
    return table


def check_parameter(table: dict[str, tuple[type, str]], name: str, value: Any, where: str,
                    from_text: bool = False) -> Any:
    """``value`` checked against parameter ``name`` of ``table`` by the config classes' rules;
    returns the converted value. ``from_text``: ``value`` is text as typed on a command line, read
    as YAML like ``-p name:=value`` is (a params file's values are typed already). ConfigError
    naming ``where`` and the parameter for an unknown name or a bad value, so that a typo or a
    wrongly typed value never reaches ROS (which would ignore it)."""
    if name not in table:
        prefix = name.partition(".")[0]
        known = sorted(n for n in table if n.startswith(prefix + "."))
        hint = f"; parameters under {prefix}.: {', '.join(known)}" if known else \
            f"; prefixes here: {', '.join(sorted({n.partition('.')[0] for n in table}))}"
        raise ConfigError(f"{where}: no parameter {name!r}{hint}")
    cls, field_name = table[name]
    if from_text and isinstance(value, str):
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        # A text field takes the text as typed: "2024" names a file, not a number.
        if typing.get_type_hints(cls)[field_name] is str and not isinstance(parsed, str):
            parsed = value
        value = parsed
    return convert_field(cls, field_name, list(value) if isinstance(value, tuple) else value, f"{where}: {name}")


def ros_value_text(value: Any) -> str:
    """A checked value as the text ``-p name:=text`` gives ROS with the declared type (a float
    keeps its decimal point, a string its quotes)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def declare_section(node: Node, prefix: str, defaults: Any, skip: tuple[str, ...] = ()) -> None:
    """Declare ``prefix.<field>`` for every field of the dataclass instance ``defaults`` except
    those in ``skip`` (fields the node sets itself), nested configs and optional fields (they
    stay at their defaults): the parameters of ``ParamSection(prefix, defaults, skip)``."""
    docs = {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(defaults)}
    for name, (_cls, field_name) in ParamSection(prefix, defaults, skip).parameters().items():
        default = _ros_default(getattr(defaults, field_name))
        # dynamic typing lets "1" set a float field; rclpy refuses it with a declared-by-type default
        dynamic = not isinstance(default, Parameter.Type)
        node.declare_parameter(name, default, ParameterDescriptor(description=docs[field_name], dynamic_typing=dynamic))


def read_section(node: Node, prefix: str, cls: type[T], defaults: Any | None = None) -> T:
    """The section as a ``cls`` instance: set parameters override ``defaults`` (or ``cls()``);
    ConfigError naming ``prefix.<field>`` for a bad value."""
    base = defaults if defaults is not None else cls()
    names = parameter_names(cls)
    values = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{names[f.name]}"
        current = getattr(base, f.name)
        if not node.has_parameter(name):
            values[f.name] = current
            continue
        try:
            value = node.get_parameter(name).value
        except ParameterUninitializedException:  # an empty-list default no file or override set
            value = None
        values[f.name] = current if value is None else (list(value) if isinstance(value, (list, tuple)) else value)
    return _section(cls, prefix, values)


def update_section(config: T, prefix: str, updates: dict[str, Any]) -> T:
    """``config`` with the entries of ``updates`` (parameter name without the prefix -> value)
    that are its parameters changed, checked like :func:`read_section`; others are ignored."""
    names = parameter_names(type(config))
    fields = {parameter: field for field, parameter in names.items()}
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    values.update({fields[p]: v for p, v in updates.items() if p in fields})
    return _section(type(config), prefix, values)


def _section(cls: type[T], prefix: str, values: dict[str, Any]) -> T:
    """``cls`` from field values, strictly; a ConfigError names the parameter (``fusion.gate_mode``)."""
    plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}
    try:
        return from_mapping(cls, plain, prefix)
    except ConfigError as err:
        message = str(err)
        for field, parameter in parameter_names(cls).items():
            if message.startswith(f"{prefix}.{field}:"):
                message = f"{prefix}.{parameter}" + message[len(prefix) + 1 + len(field):]
                break
        raise ConfigError(message) from None
