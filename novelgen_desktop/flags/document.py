"""Flag configuration files: parsed and checked completely before anything uses them.

The local file (``flags.json`` in the data folder) and the remote configuration have one
format::

    {"schema": 1,
     "flags": {
        "multi_tab": false,
        "memory_governor": {"value": true},
        "fresh_chat": {"salt": "fresh-chat-2026-12",
                       "variants": [{"name": "control", "weight": 50, "value": false},
                                    {"name": "fresh", "weight": 50, "value": true}]}}}

A file is all or nothing: one unknown flag, wrong type or bad weight and the whole file is
refused with every problem named (source, line, field, what was expected), so a half-applied
remote change can never leave the fleet in a state nobody wrote down.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.registry import REGISTRY, FlagDefinition, FlagKind, FlagValue

SCHEMA_VERSION = 1
MAX_DOCUMENT_BYTES = 1 << 20
MAX_VARIANTS = 8
_VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


class FlagConfigError(ConfigError):
    """A flag file or override that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        shown = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} problem(s), nothing applied:\n{shown}")
        self.source = source
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    weight: float
    value: FlagValue


@dataclass(frozen=True, slots=True)
class FlagSetting:
    """What one layer says about one flag: a fixed value, or weighted variants."""

    value: FlagValue | None = None
    variants: tuple[Variant, ...] = ()
    salt: str | None = None

    @property
    def is_experiment(self) -> bool:
        return bool(self.variants)

    def to_json(self) -> Any:
        if not self.variants:
            return self.value
        data: dict[str, Any] = {
            "variants": [
                {"name": v.name, "weight": v.weight, "value": v.value} for v in self.variants
            ]
        }
        if self.salt is not None:
            data["salt"] = self.salt
        return data


FlagLayer = dict[str, FlagSetting]


def _suggest(name: str) -> str:
    import difflib  # noqa: PLC0415 - only on the error path

    close = difflib.get_close_matches(name, REGISTRY, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_value(flag: FlagDefinition, raw: Any) -> FlagValue:
    """``raw`` (a JSON value) as a value of ``flag``; ValueError says what was expected."""
    ok: FlagValue | None = None
    match flag.kind:
        case FlagKind.BOOL:
            ok = raw if isinstance(raw, bool) else None
        case FlagKind.CHOICE:
            ok = raw if isinstance(raw, str) and raw in flag.choices else None
        case FlagKind.INT | FlagKind.FLOAT:
            number = isinstance(raw, int | float) and not isinstance(raw, bool)
            if flag.kind is FlagKind.INT:
                number = number and float(raw).is_integer()
            if number and math.isfinite(raw):
                low_ok = flag.minimum is None or raw >= flag.minimum
                high_ok = flag.maximum is None or raw <= flag.maximum
                if low_ok and high_ok:
                    ok = int(raw) if flag.kind is FlagKind.INT else float(raw)
    if ok is None:
        raise ValueError(f"expected {flag.expected()}, got {json.dumps(raw)[:60]}")
    return ok


def parse_text_value(flag: FlagDefinition, text: str) -> FlagValue:
    """A value typed on the command line or in an environment variable (``off``, ``3``)."""
    word = text.strip().lower()
    if flag.kind is FlagKind.BOOL:
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"expected on/off (true/false, 1/0, yes/no), got {text!r}")
    if flag.kind is FlagKind.CHOICE:
        return check_value(flag, text.strip())
    try:
        number: float = float(word)
    except ValueError:
        raise ValueError(f"expected {flag.expected()}, got {text!r}") from None
    return check_value(flag, int(number) if number.is_integer() else number)


def _line_of(text: str | None, name: str) -> str:
    """``line N: `` of the first mention of ``"name"`` in the file, when there is a text."""
    if not text:
        return ""
    index = text.find(f'"{name}"')
    return f"line {text.count(chr(10), 0, index) + 1}: " if index >= 0 else ""


def _parse_setting(
    flag: FlagDefinition, raw: Any, where: str, problems: list[str]
) -> FlagSetting | None:
    if not isinstance(raw, dict):
        try:
            return FlagSetting(value=check_value(flag, raw))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            return None
    unknown = sorted(set(raw) - {"value", "variants", "salt", "comment"})
    if unknown:
        problems.append(f"{where}: unknown field {unknown[0]!r} (expected value or variants)")
        return None
    if ("value" in raw) == ("variants" in raw):
        problems.append(f"{where}: give either 'value' or 'variants'")
        return None
    if "value" in raw:
        try:
            return FlagSetting(value=check_value(flag, raw["value"]))
        except ValueError as exc:
            problems.append(f"{where}.value: {exc}")
            return None
    if not flag.experimentable:
        problems.append(
            f"{where}.variants: {flag.name!r} is decided once for the whole hub "
            "(unit 'global') and cannot be split into variants"
        )
        return None
    salt = raw.get("salt")
    if salt is not None and (not isinstance(salt, str) or not 1 <= len(salt) <= 64):
        problems.append(f"{where}.salt: expected a text of 1–64 characters")
        return None
    variants_raw = raw["variants"]
    if not isinstance(variants_raw, list) or not 2 <= len(variants_raw) <= MAX_VARIANTS:
        problems.append(f"{where}.variants: expected a list of 2–{MAX_VARIANTS} variants")
        return None
    before = len(problems)
    variants: list[Variant] = []
    seen: set[str] = set()
    for index, item in enumerate(variants_raw):
        at = f"{where}.variants[{index}]"
        if not isinstance(item, dict):
            problems.append(f'{at}: expected {{"name": …, "weight": …, "value": …}}')
            continue
        extra = sorted(set(item) - {"name", "weight", "value"})
        if extra:
            problems.append(f"{at}: unknown field {extra[0]!r} (expected name, weight, value)")
            continue
        name, weight = item.get("name"), item.get("weight")
        if not isinstance(name, str) or not _VARIANT_NAME.fullmatch(name):
            problems.append(f"{at}.name: expected a short name like 'control' (a-z, 0-9, _ -)")
        elif name in seen:
            problems.append(f"{at}.name: {name!r} is used twice")
        else:
            seen.add(name)
        if (
            not isinstance(weight, int | float)
            or isinstance(weight, bool)
            or not math.isfinite(weight)
            or weight < 0
        ):
            problems.append(f"{at}.weight: expected a number ≥ 0, got {json.dumps(weight)}")
        if "value" not in item:
            problems.append(f"{at}.value: missing")
            continue
        try:
            value = check_value(flag, item["value"])
        except ValueError as exc:
            problems.append(f"{at}.value: {exc}")
            continue
        if len(problems) == before:
            variants.append(Variant(str(name), float(weight or 0), value))
    if len(problems) == before and sum(v.weight for v in variants) <= 0:
        problems.append(f"{where}.variants: the weights add up to 0: no variant could be chosen")
    if len(problems) != before:
        return None
    return FlagSetting(variants=tuple(variants), salt=salt)


def parse_document(data: Any, source: str, text: str | None = None) -> FlagLayer:
    """Check a decoded flag file; FlagConfigError lists every problem, nothing half-applied."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise FlagConfigError(source, ['expected a JSON object {"schema": 1, "flags": {…}}'])
    unknown = sorted(set(data) - {"schema", "flags", "comment", "updated_at"})
    if unknown:
        problems.append(f"unknown field {unknown[0]!r} (expected schema, flags)")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        problems.append(
            f"{_line_of(text, 'schema')}schema: expected {SCHEMA_VERSION}, got "
            f"{json.dumps(schema)} (a file for another NovelGen version?)"
        )
    flags = data.get("flags")
    if not isinstance(flags, dict):
        problems.append("flags: expected an object of flag name → value")
        raise FlagConfigError(source, problems)
    layer: FlagLayer = {}
    for name, raw in flags.items():
        where = f"{_line_of(text, name)}flags.{name}"
        flag = REGISTRY.get(name)
        if flag is None:
            problems.append(f"{where}: unknown flag{_suggest(name)}")
            continue
        setting = _parse_setting(flag, raw, where, problems)
        if setting is not None:
            layer[name] = setting
    if problems:
        raise FlagConfigError(source, problems)
    return layer


def parse_document_text(text: str, source: str) -> FlagLayer:
    if len(text.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise FlagConfigError(source, [f"larger than {MAX_DOCUMENT_BYTES:,} bytes"])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlagConfigError(
            source, [f"line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"]
        ) from exc
    return parse_document(data, source, text)


def document_of(layer: FlagLayer) -> dict[str, Any]:
    """The file form of ``layer`` (what ``novelgen flags set`` writes)."""
    return {
        "schema": SCHEMA_VERSION,
        "flags": {name: layer[name].to_json() for name in sorted(layer)},
    }


def parse_variant_spec(flag: FlagDefinition, specs: list[str]) -> FlagSetting:
    """``NAME=VALUE:WEIGHT`` arguments (``--variant control=off:50``) as an experiment."""
    raw = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        value_text, sep2, weight_text = rest.rpartition(":")
        if not sep or not sep2:
            raise ValueError(f"--variant {spec!r}: expected NAME=VALUE:WEIGHT, e.g. control=off:50")
        try:
            value = parse_text_value(flag, value_text)
        except ValueError as exc:
            raise ValueError(f"--variant {spec!r}: {exc}") from None
        try:
            weight = float(weight_text)
        except ValueError:
            raise ValueError(
                f"--variant {spec!r}: weight {weight_text!r} is not a number"
            ) from None
        raw.append({"name": name, "weight": weight, "value": value})
    problems: list[str] = []
    setting = _parse_setting(flag, {"variants": raw}, flag.name, problems)
    if setting is None:
        raise ValueError("; ".join(problems))
    return setting


__all__ = [
    "SCHEMA_VERSION",
    "FlagConfigError",
    "FlagLayer",
    "FlagSetting",
    "Variant",
    "check_value",
    "document_of",
    "parse_document",
    "parse_document_text",
    "parse_text_value",
    "parse_variant_spec",
]
