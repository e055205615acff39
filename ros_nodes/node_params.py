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
from typing import Any, TypeVar

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from fusion_core.config_io import ConfigError, from_mapping, parameter_names

T = TypeVar("T")


def _ros_default(value: Any) -> Any:
    """A dataclass default as a ROS parameter value (tuples become lists; an empty list has no
    element type, so it is declared by type and left unset)."""
    if isinstance(value, tuple):
        if not value:
            return Parameter.Type.STRING_ARRAY
        return list(value)
    return value


def declare_section(node: Node, prefix: str, defaults: Any, skip: tuple[str, ...] = ()) -> None:
    """Declare ``prefix.<field>`` for every field of the dataclass instance ``defaults`` except
    those in ``skip`` (fields the node sets itself)."""
    names = parameter_names(type(defaults))
    for f in dataclasses.fields(defaults):
        if f.name in skip:
            continue
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value) or value is None:
            continue  # nested configs and optional fields stay at their defaults
        default = _ros_default(value)
        # dynamic typing lets "1" set a float field; rclpy refuses it with a declared-by-type default
        dynamic = not isinstance(default, Parameter.Type)
        node.declare_parameter(f"{prefix}.{names[f.name]}", default,
                               ParameterDescriptor(description=f.metadata.get("doc", ""), dynamic_typing=dynamic))


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
