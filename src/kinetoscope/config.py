"""Dataclass configs with a strict JSON round-trip, named presets and ``key=value`` overrides.

Every model's constructor takes one config dataclass; that dataclass *is* what is saved as
``config.json`` beside the weights, so a saved model can always be rebuilt exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from kinetoscope.errors import ConfigError
from kinetoscope.files import atomic_write_json

C = TypeVar("C", bound="Config")


@dataclasses.dataclass
class Config:
    """Base class: subclass with ``@dataclasses.dataclass`` and register presets."""

    #: name -> dict of field values that differ from the defaults.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} expects a mapping of fields, got {type(data).__name__}.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no field {', '.join(map(repr, unknown))}; "
                f"its fields are {', '.join(sorted(fields))}."
            )
        hints = typing.get_type_hints(cls)
        kwargs = {k: _from_plain(hints[k], v, f"{cls.__name__}.{k}") for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_preset(cls: type[C], name: str, **overrides: Any) -> C:
        if name not in cls.presets:
            raise ConfigError(
                f"{cls.__name__} has no preset {name!r}; choose one of {', '.join(sorted(cls.presets))}."
            )
        return cls.from_dict({**cls.presets[name], **overrides})

    def replace(self: C, **changes: Any) -> C:
        return type(self).from_dict({**self.to_dict(), **changes})

    def save_json(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load_json(cls: type[C], path: str | os.PathLike) -> C:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file {path} does not exist.")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"Config file {path} is not valid JSON ({e.msg} at line {e.lineno}).") from None
        return cls.from_dict(data)


def _to_plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _from_plain(hint: Any, value: Any, where: str) -> Any:
    """Turn JSON values back into the annotated type (nested configs, tuples), checking kinds."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _from_plain(non_none[0], value, where)
        return value
    if isinstance(hint, type) and issubclass(hint, Config):
        return value if isinstance(value, hint) else hint.from_dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where} must have {len(args)} entries, got {len(value)}.")
        return tuple(_from_plain(a, v, where) for a, v in zip(args, value))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        return [_from_plain(args[0], v, where) if args else v for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not _is_kind(value, hint):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}.")
    return value


def _is_kind(value: Any, hint: type) -> bool:
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], 0.0003). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key=value (for example optim.lr=3e-4).")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"Override {text!r} has an empty key.")
    return key.strip().split("."), _parse_scalar(raw)


def _parse_scalar(raw: str) -> Any:
    """Numbers first (YAML 1.1 reads ``3e-4`` as a string), then YAML for bools, lists, null."""
    import yaml

    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with each ``a.b.c=value`` override set."""
    out = json.loads(json.dumps(data))
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise ConfigError(f"Override {text!r}: {k!r} is not a section of the config.")
            node = node[k]
        node[keys[-1]] = value
    return out


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib

            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # each parser has its own error type; all mean the same to the user
        raise ConfigError(f"Config file {path} could not be parsed: {e}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at its top level.")
    return data
