"""Typed configs: `key=value` overrides and plain-dict round trips for nested dataclasses.

Every part of rlvlmf has a frozen dataclass config that validates itself in
``__post_init__``. The CLI composes them into one run config; this module lets a user
change any field from the command line (``--set sac.batch_size=256``) and saves/loads the
resolved config as JSON with the run.

A field may also hold one of several configs, a *tagged union*: a union of dataclasses that
each carry a ``kind`` tag (a ``Literal`` field with ``init=False``). It is saved with its tag
(``{"kind": "code", "file": "r.py"}``) and can be written as text, ``KIND`` or ``KIND:VALUE``
where VALUE fills the config's one field (``--set reward=code:r.py``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from rlvlmf.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-serialisable dict of a (nested) dataclass config; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[D], data: Mapping[str, Any]) -> D:
    """Build a (nested) dataclass config from ``to_dict`` output, validating every field.

    Raises:
        ConfigError: A key is unknown or a value has the wrong type.
    """
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    data = dict(data)
    for tag in (f for f in dataclasses.fields(cls) if not f.init and f.name in data):
        # A tag written by ``to_dict`` (e.g. ``kind``): it must name this class.
        if data.pop(tag.name) != tag.default:
            raise ConfigError(f"{cls.__name__}: {tag.name} must be {tag.default!r}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; valid: {sorted(known)}")
    kwargs = {name: _coerce(hints[name], value, f"{cls.__name__}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def _tagged_members(hint: Any) -> dict[str, type] | None:
    """``kind`` tag -> class for a tagged union hint (see the module docstring), else ``None``."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return None
    members: dict[str, type] = {}
    for arg in typing.get_args(hint):
        tag = {f.name: f for f in dataclasses.fields(arg)}.get("kind") if dataclasses.is_dataclass(arg) else None
        if tag is None or tag.init or not isinstance(tag.default, str):
            return None
        members[tag.default] = arg
    return members


def _coerce_tagged(members: dict[str, type], value: Any, where: str) -> Any:
    if isinstance(value, tuple(members.values())):
        return value
    if isinstance(value, str):  # KIND or KIND:VALUE
        kind, sep, text = value.partition(":")
        cls = members.get(kind.strip())
        if cls is None:
            raise ConfigError(f"{where}: {value!r} is not one of {sorted(members)}")
        fields = [f.name for f in dataclasses.fields(cls) if f.init]
        if len(fields) > 1 or (sep and not fields):
            raise ConfigError(f"{where}: {kind} cannot be written as text")
        if fields and not (sep and text):
            raise ConfigError(f"{where}: {kind} needs its {fields[0]}: write {kind}:{fields[0].upper()}")
        return from_dict(cls, {fields[0]: text} if fields else {})
    if isinstance(value, Mapping):
        cls = members.get(value.get("kind"))  # type: ignore[arg-type]
        if cls is None:
            raise ConfigError(f"{where}: kind must be one of {sorted(members)}, got {value.get('kind')!r}")
        return from_dict(cls, value)
    raise ConfigError(f"{where}: expected one of {sorted(members)}, got {value!r}")


def apply_overrides(config: T, overrides: Iterable[str]) -> T:
    """Return ``config`` with ``key=value`` overrides applied; dotted keys reach nested configs.

    Values are parsed against the field's type: ``true``/``false`` for bools, numbers,
    comma-separated tuples, ``none`` for optional fields.

    Raises:
        ConfigError: Malformed override, unknown key (valid keys are listed) or bad value.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            config = _set_path(config, key.strip().split("."), raw.strip(), key.strip())
        except _UnknownKey as exc:
            raise ConfigError(f"unknown config key {exc.key!r}{_did_you_mean(config, exc.key)} "
                              f"(valid keys here: {', '.join(exc.valid_here)})") from None
    return config


class _UnknownKey(ConfigError):
    """An override names no field; ``apply_overrides`` adds suggestions from the whole config."""

    def __init__(self, key: str, valid_here: list[str]) -> None:
        super().__init__(f"unknown config key {key!r}; valid keys here: {', '.join(valid_here)}")
        self.key, self.valid_here = key, valid_here


def dotted_keys(config: Any, prefix: str = "") -> list[str]:
    """Every settable key of a (nested) dataclass config, nested ones dotted (``sac.batch_size``)."""
    keys = []
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name)
        keys.append(prefix + f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(dotted_keys(value, prefix + f.name + "."))
    return keys


def _did_you_mean(config: Any, key: str) -> str:
    """``"; did you mean sac.batch_size?"`` for a mistyped or undotted key, or ``""``."""
    keys = dotted_keys(config)
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]  # "batch_size" for "sac.batch_size"
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.75)
    guesses = list(dict.fromkeys(same_leaf + close))[:3]
    return f"; did you mean {' or '.join(guesses)}?" if guesses else ""


def _set_path(config: Any, path: list[str], raw: str, full_key: str) -> Any:
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ConfigError(f"{full_key!r}: {type(config).__name__} has no sub-fields")
    fields = {f.name: f for f in dataclasses.fields(config) if f.init}
    name = path[0]
    if name not in fields:
        raise _UnknownKey(full_key, sorted(fields))
    if len(path) > 1:
        value = _set_path(getattr(config, name), path[1:], raw, full_key)
    else:
        hint = typing.get_type_hints(type(config))[name]
        value = _coerce(hint, _parse_scalar(raw, hint), full_key)
    try:
        return dataclasses.replace(config, **{name: value})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{full_key}={raw}: {exc}") from exc


def _parse_scalar(raw: str, hint: Any) -> Any:
    """Turn command-line text into a Python value guided by the field's type."""
    if raw.lower() in {"none", "null"}:
        return None
    origin = typing.get_origin(hint)
    if origin in (tuple, list) or (
        origin in (typing.Union, types.UnionType)
        and any(typing.get_origin(a) in (tuple, list) for a in typing.get_args(hint))
    ):
        return [] if raw == "" else [part.strip() for part in raw.split(",")]
    return raw


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` as the type ``hint`` names, recursively; ``ConfigError`` (naming ``where``) if it is not one."""
    members = _tagged_members(hint)
    if members is not None:
        return _coerce_tagged(members, value, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(typing.get_args(hint), value, where)
    if origin is typing.Literal:
        return _coerce_literal(typing.get_args(hint), value, where)
    if origin in (tuple, list):
        return _coerce_sequence(origin, typing.get_args(hint), value, where)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {hint.__name__}")
        return from_dict(hint, value)
    return _coerce_scalar(hint, value, where)


def _coerce_union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    """The first member type that takes ``value`` (``None`` only where the union allows it)."""
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(arg, value, where)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")


def _coerce_literal(args: tuple[Any, ...], value: Any, where: str) -> Any:
    for allowed in args:
        if value == allowed or str(value) == str(allowed):
            return allowed
    raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")


def _coerce_sequence(origin: type, args: tuple[Any, ...], value: Any, where: str) -> Any:
    """A list, a homogeneous ``tuple[X, ...]`` or a fixed-length tuple, each item coerced."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(args[0], v, where) for v in value)
    if origin is tuple and args:
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    return origin(value)


def _coerce_scalar(hint: Any, value: Any, where: str) -> Any:
    """bool, int, float and str from their JSON or command-line text forms; other types pass through."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        return _coerce_int(value, where)
    if hint is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    return value


def _coerce_int(value: Any, where: str) -> int:
    """An integer, also from ``"3"`` or ``3.0``; never from a bool or ``3.5``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if not as_float.is_integer():
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return int(as_float)


def parse_options(items: Iterable[str] | None) -> dict[str, Any]:
    """``["beta=1", "mode=one-stage"]`` -> ``{"beta": 1, "mode": "one-stage"}`` (backend options).

    Values that read as JSON (numbers, ``true``/``false``, ``null``) become those; the rest
    stay text. ``None`` (no ``-o`` given) is no options.

    Raises:
        ConfigError: An item is not ``KEY=VALUE``.
    """
    options: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"option {item!r} must look like KEY=VALUE (e.g. temperature=0)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip()] = value
    return options
