"""Dataclasses to JSON and back, by their type hints: the one file boundary of parity.json, report.json and the manifest.

Results, report rows, cells, decisions and manifest records are dataclasses; their JSON is what ``to_json`` makes
of them, and ``from_json`` rebuilds them field by field from their annotations (nested dataclasses, enums,
``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``, ``X | None``). A key the class does not know is dropped (a newer file may carry
more), except by an ``OpenRecord``, which keeps such keys and writes them back; a value of the wrong shape is a
``TypeError`` or ``ValueError`` that the caller turns into a one-line error naming the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from functools import cache

_SCALARS = (str, int, float, bool)


@dataclasses.dataclass(kw_only=True)
class OpenRecord:
    """A record that a newer vitship may extend: the keys this one does not know wait in ``extra`` and are written back.

    So reading and rewriting a file (the manifest, on the next export) never drops what a newer writer added.
    A field left at None is not written (absent and None read the same).
    """

    extra: dict[str, object] = dataclasses.field(default_factory=dict, repr=False)


def to_json(value):
    """Plain JSON values (dict, list, str, numbers, None) from dataclasses, enums and containers of them."""
    if isinstance(value, OpenRecord):
        fields = {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "extra"}
        return {**{k: v for k, v in fields.items() if v is not None}, **to_json(value.extra)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


@cache
def _hints(kind: type) -> dict:
    return typing.get_type_hints(kind)


def _union(kind, data):
    options = [a for a in typing.get_args(kind) if a is not type(None)]
    errors = []
    for option in options:
        try:
            return from_json(option, data)
        except (TypeError, ValueError) as err:
            errors.append(str(err))
    raise TypeError("; ".join(errors))


def _dataclass(kind: type, data):
    if not isinstance(data, dict):
        raise TypeError(f"{kind.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(kind)
    fields = [f for f in dataclasses.fields(kind) if f.init]
    values = {f.name: from_json(hints[f.name], data[f.name]) for f in fields if f.name in data}
    if issubclass(kind, OpenRecord):  # a key named "extra" in the file is an unknown key like any other
        known = {f.name for f in fields} - {"extra"}
        values["extra"] = {k: v for k, v in data.items() if k not in known}
    return kind(**values)


def _scalar(kind: type, data):
    if kind is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        return float(data)
    if kind is int and isinstance(data, str) and data.lstrip("-").isdigit():  # a JSON object's key
        return int(data)
    if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
        raise TypeError(f"expected {kind.__name__}, got {type(data).__name__} {data!r:.40}")
    return data


def from_json(kind, data):
    """``data`` (parsed JSON) as ``kind``; None stays None whatever the annotation (every optional field allows it)."""
    if data is None or kind is typing.Any or kind is object:
        return data
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return _union(kind, data)
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise TypeError(f"expected a list, got {type(data).__name__}")
        args = typing.get_args(kind)
        if origin is list or args[1:] == (Ellipsis,):
            items = [from_json(args[0], v) for v in data]
            return items if origin is list else tuple(items)
        if len(args) != len(data):
            raise TypeError(f"expected {len(args)} items, got {len(data)}")
        return tuple(from_json(a, v) for a, v in zip(args, data))
    if origin is dict:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        key_kind, value_kind = typing.get_args(kind)
        return {from_json(key_kind, k): from_json(value_kind, v) for k, v in data.items()}
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, data)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(data)
    if kind in _SCALARS:
        return _scalar(kind, data)
    if kind in (dict, list) and not isinstance(data, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(data).__name__}")
    return data
