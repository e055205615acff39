"""Command-line flags generated from a settings dataclass (``GateSettings``, ``ExitSettings``):
one flag per field, named after the field's parameter name (``--exit-policy`` for
``ExitSettings.policy``), with its type, choices and one-line doc. The settings class stays the
one source of defaults and ranges: every flag defaults to None (not given), and
:func:`settings_from_args` lays the given ones over a base instance, checked by the same strict
converter the YAML configs use.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from fusion_core.config_io import ConfigError, from_mapping, parameter_names

T = TypeVar("T")


def flag_name(parameter: str) -> str:
    """``exit_policy`` -> ``--exit-policy``."""
    return "--" + parameter.replace("_", "-")


def _value_type(tp: Any) -> Any:
    """The scalar type of a field (``float | None`` -> float)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def add_settings_options(parser: argparse.ArgumentParser, cls: type, aliases: Mapping[str, str] | None = None) -> None:
    """One option per field of ``cls``; ``aliases`` adds a further flag for some fields (field ->
    flag, e.g. the README's ``--gate`` for ``mode``). The parsed value lands in
    ``args.<parameter name>``, None when not given."""
    aliases = dict(aliases or {})
    unknown = sorted(set(aliases) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"aliases for fields {cls.__name__} does not have: {unknown}")
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        parameter = parameter_names(cls)[f.name]
        flags = [aliases[f.name]] if f.name in aliases else []
        flags.append(flag_name(parameter))
        default = getattr(defaults, f.name)
        shown = "not set" if default is None else str(default).lower() if isinstance(default, bool) else default
        choices = f.metadata.get("choices")
        one_of = f"; one of {', '.join(map(str, choices))}" if choices else ""
        help_text = f"{f.metadata.get('doc', '')} (default {shown}{one_of})".replace("%", "%%")
        tp = _value_type(hints[f.name])
        if tp is bool:
            parser.add_argument(*flags, dest=parameter, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(*flags, dest=parameter, type=tp, default=None, choices=choices,
                                metavar=parameter.upper(), help=help_text)


def settings_from_args(args: argparse.Namespace, cls: type[T], base: T | None = None) -> T:
    """``base`` (default ``cls()``) with the flags that were given; ConfigError naming the flag
    for a value out of range."""
    base = base if base is not None else cls()
    names = parameter_names(cls)
    given = {field: getattr(args, parameter) for field, parameter in names.items()
             if getattr(args, parameter, None) is not None}
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)}
    try:
        return from_mapping(cls, {**values, **given})
    except ConfigError as err:
        message = str(err)
        for field, parameter in names.items():  # name the flag the user typed, not the field
            if message.startswith(f"{field}:"):
                message = flag_name(parameter) + message[len(field):]
                break
        raise ConfigError(message) from None
