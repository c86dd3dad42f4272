"""The one validation layer: dataclass type hints + per-field :class:`Rule` bounds.

Each message dataclass is compiled once into a list of field checkers. The same checkers run
on every decoded frame and on every frame about to be encoded, so what the hub sends, what it
accepts and what the spec documents are one definition.

Supported field types: ``str``, ``int``, ``float``, ``bool``, a ``StrEnum``, a nested frozen
dataclass, ``tuple[T, ...]`` of any of those, ``Metadata`` (a flat JSON object of scalars), and
``X | None`` of any of those (optional: absent or null; ``None`` is omitted when encoding).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from novelgen_desktop.protocol.codes import ErrorCode, ProtocolError

MAX_SAFE_INT = 2**53  # the largest integer every JSON implementation (JavaScript) keeps exact

Scalar = str | int | float | bool | None
Metadata = dict[str, Scalar]

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Rule:
    """Bounds for one field. Strings: length in characters; numbers: inclusive range;
    tuples and Metadata: item count, with ``item`` applied to each element."""

    min_len: int = 0
    max_len: int = 1024
    pattern: str | None = None
    ge: float | None = None
    le: float | None = None
    min_items: int = 0
    max_items: int = 256
    item: Rule | None = None


def rule(**bounds: Any) -> dict[str, Any]:
    """``field(metadata=rule(max_len=64))``: attach a :class:`Rule` to a dataclass field."""
    return {"rule": Rule(**bounds)}


_DEFAULT_RULE = Rule()

Check = Callable[[Any, str], Any]  # (json value, field path) -> python value
Dump = Callable[[Any], Any]  # python value -> json value


def _fail(code: ErrorCode, path: str, message: str) -> typing.NoReturn:
    raise ProtocolError(code, f"field {path!r}: {message}", field=path)


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _identity(value: Any) -> Any:
    return value


def _check_str_value(value: str, path: str, r: Rule, pattern: re.Pattern[str] | None) -> str:
    if not r.min_len <= len(value) <= r.max_len:
        code = ErrorCode.TOO_LARGE if len(value) > r.max_len else ErrorCode.BAD_FIELD
        _fail(code, path, f"length {len(value)} outside {r.min_len}..{r.max_len}")
    if not value.isascii() and _SURROGATE.search(value):
        _fail(ErrorCode.BAD_FIELD, path, "contains a lone surrogate (not valid Unicode)")
    if pattern is not None and not pattern.fullmatch(value):
        _fail(ErrorCode.BAD_FIELD, path, f"does not match {pattern.pattern}")
    return value


def _str_checker(r: Rule) -> Check:
    pattern = re.compile(r.pattern) if r.pattern else None

    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            _fail(ErrorCode.BAD_FIELD, path, f"expected string, got {_json_kind(value)}")
        return _check_str_value(value, path, r, pattern)

    return check


def _range(value: float, path: str, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        _fail(ErrorCode.BAD_FIELD, path, f"{value} outside {lo:g}..{hi:g}")


def _int_checker(r: Rule) -> Check:
    lo = r.ge if r.ge is not None else -MAX_SAFE_INT
    hi = r.le if r.le is not None else MAX_SAFE_INT

    def check(value: Any, path: str) -> int:
        if type(value) is not int:
            kind = "non-integer number" if type(value) is float else _json_kind(value)
            _fail(ErrorCode.BAD_FIELD, path, f"expected integer, got {kind}")
        _range(value, path, lo, hi)
        return value

    return check


def _float_checker(r: Rule) -> Check:
    lo = r.ge if r.ge is not None else -float(MAX_SAFE_INT)
    hi = r.le if r.le is not None else float(MAX_SAFE_INT)

    def check(value: Any, path: str) -> float:
        if type(value) not in (int, float):
            _fail(ErrorCode.BAD_FIELD, path, f"expected number, got {_json_kind(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range: 1 followed by 400 zeros
            _fail(ErrorCode.BAD_FIELD, path, "number out of range")
        if not math.isfinite(number):
            _fail(ErrorCode.BAD_FIELD, path, "must be a finite number")
        _range(number, path, lo, hi)
        return number

    return check


def _bool_checker(value: Any, path: str) -> bool:
    if type(value) is not bool:
        _fail(ErrorCode.BAD_FIELD, path, f"expected boolean, got {_json_kind(value)}")
    return value


def _enum_checker(tp: type[enum.StrEnum]) -> Check:
    allowed = {member.value: member for member in tp}
    listing = ", ".join(sorted(allowed))

    def check(value: Any, path: str) -> enum.StrEnum:
        if not isinstance(value, str):
            _fail(ErrorCode.BAD_FIELD, path, f"expected string, got {_json_kind(value)}")
        member = allowed.get(value)
        if member is None:
            shown = value if len(value) <= 40 else value[:40] + "…"
            _fail(ErrorCode.BAD_FIELD, path, f"{shown!r} is not one of: {listing}")
        return member

    return check


def _metadata_checker(r: Rule) -> Check:
    key_check = _str_checker(Rule(min_len=1, max_len=64))
    text_check = _str_checker(r.item or Rule(max_len=4096))
    number_check = _float_checker(Rule())
    int_check = _int_checker(Rule())

    def check(value: Any, path: str) -> dict[str, Scalar]:
        if not isinstance(value, dict):
            _fail(ErrorCode.BAD_FIELD, path, f"expected object, got {_json_kind(value)}")
        if len(value) > r.max_items:
            _fail(ErrorCode.TOO_LARGE, path, f"{len(value)} keys, at most {r.max_items}")
        out: dict[str, Scalar] = {}
        for key, item in value.items():
            key_check(key, f"{path} key")
            item_path = f"{path}.{key}"
            if item is None or isinstance(item, bool):
                out[key] = item
            elif isinstance(item, str):
                out[key] = text_check(item, item_path)
            elif type(item) is int:
                out[key] = int_check(item, item_path)
            elif type(item) is float:
                out[key] = number_check(item, item_path)
            else:
                _fail(ErrorCode.BAD_FIELD, item_path, f"expected a scalar, got {_json_kind(item)}")
        return out

    return check


def _compile(tp: Any, r: Rule) -> tuple[Check, Dump]:
    """A (check, dump) pair for a non-optional type."""
    origin = typing.get_origin(tp)
    if tp is str:
        return _str_checker(r), _identity
    if tp is bool:
        return _bool_checker, _identity
    if tp is int:
        return _int_checker(r), _identity
    if tp is float:
        return _float_checker(r), _identity
    if isinstance(tp, type) and issubclass(tp, enum.StrEnum):
        return _enum_checker(tp), _identity  # a StrEnum member is a str for json
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        schema = schema_for(tp)
        return schema.check_nested, schema.dump
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"only tuple[T, ...] is supported, not {tp}")
        item_check, item_dump = _compile(args[0], r.item or _DEFAULT_RULE)

        def check_tuple(value: Any, path: str) -> tuple[Any, ...]:
            if not isinstance(value, list | tuple):
                _fail(ErrorCode.BAD_FIELD, path, f"expected array, got {_json_kind(value)}")
            if len(value) > r.max_items:
                _fail(ErrorCode.TOO_LARGE, path, f"{len(value)} items, at most {r.max_items}")
            if len(value) < r.min_items:
                _fail(ErrorCode.BAD_FIELD, path, f"{len(value)} items, at least {r.min_items}")
            return tuple(item_check(item, f"{path}[{i}]") for i, item in enumerate(value))

        def dump_tuple(value: Any) -> list[Any]:
            return [item_dump(item) for item in value]

        return check_tuple, dump_tuple
    if origin is dict:
        return _metadata_checker(r), dict
    raise TypeError(f"unsupported field type {tp!r}")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    required: bool
    optional: bool  # None allowed
    check: Check
    dump: Dump
    rule: Rule
    type_text: str  # for docs and error messages


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == len(typing.get_args(tp)):
            raise TypeError(f"only X | None unions are supported, not {tp}")
        if len(args) != 1:
            # A Metadata value type: str | int | float | bool | None, handled as dict values.
            raise TypeError(f"only X | None unions are supported, not {tp}")
        return args[0], True
    return tp, False


class Schema:
    """The compiled field list of one dataclass."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls)
        self.fields: list[FieldSpec] = []
        for f in dataclasses.fields(cls):
            tp, optional = _unwrap_optional(hints[f.name])
            r: Rule = f.metadata.get("rule", _DEFAULT_RULE)
            check, dump = _compile(tp, r)
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            text = str(hints[f.name]).replace("typing.", "")
            self.fields.append(FieldSpec(f.name, required, optional, check, dump, r, text))
        self.names = frozenset(f.name for f in self.fields)

    def check_object(
        self, obj: dict[str, Any], prefix: str = "", skip: frozenset[str] = frozenset()
    ) -> Any:
        unknown = [key for key in obj if key not in self.names and key not in skip]
        if unknown:
            shown = ", ".join(repr(prefix + str(k)[:64]) for k in unknown[:5])
            raise ProtocolError(
                ErrorCode.UNKNOWN_FIELD, f"unknown field {shown}", field=prefix + str(unknown[0])
            )
        kwargs: dict[str, Any] = {}
        for spec in self.fields:
            path = prefix + spec.name
            if spec.name not in obj:
                if spec.required:
                    raise ProtocolError(
                        ErrorCode.MISSING_FIELD, f"missing field {path!r}", field=path
                    )
                continue
            value = obj[spec.name]
            if value is None:
                if not spec.optional:
                    _fail(ErrorCode.BAD_FIELD, path, "must not be null")
                kwargs[spec.name] = None
            else:
                kwargs[spec.name] = spec.check(value, path)
        instance = self.cls(**kwargs)
        validate = getattr(instance, "validate", None)
        if validate is not None:
            try:
                validate()
            except ProtocolError as err:
                if prefix and err.field is not None:
                    raise ProtocolError(
                        err.code,
                        err.message.replace(repr(err.field), repr(prefix + err.field)),
                        field=prefix + err.field,
                    ) from None
                raise
        return instance

    def check_nested(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            _fail(ErrorCode.BAD_FIELD, path, f"expected object, got {_json_kind(value)}")
        return self.check_object(value, prefix=f"{path}.")

    def dump(self, instance: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in self.fields:
            value = getattr(instance, spec.name)
            if value is None:
                if spec.required:
                    out[spec.name] = None
                continue
            out[spec.name] = spec.dump(value)
        return out


_SCHEMAS: dict[type[Any], Schema] = {}


def schema_for(cls: type[Any]) -> Schema:
    schema = _SCHEMAS.get(cls)
    if schema is None:
        schema = _SCHEMAS[cls] = Schema(cls)
    return schema


def field_error(name: str, message: str, code: ErrorCode = ErrorCode.BAD_FIELD) -> ProtocolError:
    """For cross-field ``validate()`` hooks: an error naming ``name``."""
    return ProtocolError(code, f"field {name!r}: {message}", field=name)
