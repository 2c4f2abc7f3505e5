"""Checks shared by the cluster config dataclasses: known keys and simple field types, one-line errors."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from eowatch.errors import InputError


def check_keys(cls: type, data: Any, where: str) -> None:
    """Raise InputError unless ``data`` is a mapping whose keys are all fields of dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise InputError(f"{where} settings must be a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        raise InputError(f"unknown {where} setting(s) {', '.join(unknown)}; known: {', '.join(names)}")


def check_types(obj: Any, where: str) -> None:
    """Raise InputError for a field whose value does not match its simple annotation.

    Understood annotations: ``int``, ``float``, ``str``, ``bool``, ``X | None``, ``tuple[str, ...]`` and
    dataclasses (checked by their own ``__post_init__``); anything else is not checked.
    """
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            raise InputError(f"{where}.{f.name} must be {_describe(hints[f.name])}, got {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return "a list of strings"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))
