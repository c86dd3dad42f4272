"""JSON and JSON Lines: the formats other programs (and the future network API) produce.

JSON accepts an array of objects or strings, or an object ``{"prompts": [...]}`` whose other
keys are defaults for every element (``chapter``, ``page``, ``priority``, ``characters``,
``style``, ``images``; an element's own value replaces the default, lists included) or, for
any other key, job metadata. Keys are matched case-insensitively, like CSV headers; unknown
element keys are kept in ``metadata`` with one warning per key name per file.

Element errors point at the line where the element starts. :mod:`json` does not report
positions of values, so after a successful ``json.loads`` (which gives precise syntax errors)
the array is walked again with :meth:`json.JSONDecoder.raw_decode` to record where each
element begins.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping
from typing import Any

from novelgen_desktop.prompts.fields import (
    DEFAULTABLE_FIELDS,
    OPTIONAL_FIELDS,
    TEXT_FIELDS,
    check_prompt_text,
    coerce_fields,
    describe,
    make_spec,
)
from novelgen_desktop.prompts.issues import IssueSink
from novelgen_desktop.prompts.model import PromptSpec

_WHITESPACE = " \t\n\r"
_ALIASES = {"character": "characters"}
_EXPECTED_TOP = 'expected an array of prompts, or an object with a "prompts" array'


class _Lines:
    """Offset → line/column lookups in O(log n), for files with tens of thousands of elements."""

    def __init__(self, text: str) -> None:
        self.starts = [0]
        self.starts.extend(match.end() for match in re.finditer("\n", text))

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _array_positions(text: str, start: int) -> list[int]:
    """Offsets of each element of the (already validated) array whose ``[`` is at ``start``."""
    decoder = json.JSONDecoder()
    positions: list[int] = []
    pos = _skip(text, start + 1)
    if text[pos] == "]":
        return positions
    while True:
        pos = _skip(text, pos)
        positions.append(pos)
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip(text, pos)
        if text[pos] != ",":
            return positions
        pos += 1


def _object_positions(text: str, start: int) -> dict[str, int]:
    """Offsets of each value of the (already validated) object whose ``{`` is at ``start``.

    Later duplicates win, as they do in ``json.loads``.
    """
    decoder = json.JSONDecoder()
    positions: dict[str, int] = {}
    pos = _skip(text, start + 1)
    if text[pos] == "}":
        return positions
    while True:
        pos = _skip(text, pos)
        key, pos = decoder.raw_decode(text, pos)
        pos = _skip(text, pos) + 1  # the colon
        pos = _skip(text, pos)
        positions[str(key)] = pos
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip(text, pos)
        if text[pos] != ",":
            return positions
        pos += 1


_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F]")


def _may_have_surrogates(text: str) -> bool:
    return _SURROGATE_ESCAPE_RE.search(text) is not None


def _canonical(key: str) -> str:
    name = " ".join(key.strip().lower().split())
    return _ALIASES.get(name, name)


def _load(sink: IssueSink, text: str, line: int | None = None, offset: int = 0) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except json.JSONDecodeError as exc:
        sink.error(
            exc.lineno if line is None else line,
            f"invalid JSON: {exc.msg}",
            column=exc.colno + offset,
        )
    except RecursionError:
        sink.error(line, "invalid JSON: nested too deeply")
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        sink.error(line, f"invalid JSON: {exc}")
    return False, None


class ElementParser:
    """Turns one JSON value (object or string) into a spec; shared by JSON and JSONL."""

    def __init__(
        self, sink: IssueSink, defaults: Mapping[str, Any] | None = None, *, escapes: bool = True
    ) -> None:
        self.sink = sink
        self.defaults = dict(defaults or {})
        self.escapes = escapes  # may values contain lone surrogates from \\uD800 escapes?
        self.warned_keys: set[str] = set()

    def parse(self, value: object, line: int, what: str) -> PromptSpec | None:
        if isinstance(value, str):
            return make_spec(
                self.sink, line, value, fields=self.defaults, check_surrogates=self.escapes
            )
        if not isinstance(value, dict):
            self.sink.error(line, f"{what} must be an object or a text, got {describe(value)}")
            return None
        by_name: dict[str, tuple[str, object]] = {}
        for key, item in value.items():
            name = _canonical(str(key))
            if name in by_name:
                self.sink.warning(
                    line, f"key '{key}' repeats '{by_name[name][0]}'; only the first is used"
                )
                continue
            by_name[name] = (str(key), item)
        text_field = next((name for name in TEXT_FIELDS if name in by_name), None)
        if text_field is None:
            keys = ", ".join(f"'{key}'" for key, _ in by_name.values())[:200] or "none"
            self.sink.error(line, f'{what} has no "prompt" key (keys: {keys})')
            return None
        metadata: dict[str, Any] = {}
        known = {text_field, *OPTIONAL_FIELDS}
        raw: dict[str, object] = {}
        for name, (key, item) in by_name.items():
            if name in known:
                raw[name] = item
            elif name == "metadata":
                if isinstance(item, dict):
                    metadata.update({str(k): v for k, v in item.items()})
                elif item is not None:
                    self.sink.error(
                        line, f"expected an object, got {describe(item)}", field="metadata"
                    )
                    return None
            else:
                metadata[key] = item
                if name not in self.warned_keys:
                    self.warned_keys.add(name)
                    self.sink.warning(line, f"unknown key '{key}' is kept as metadata")
        text = check_prompt_text(self.sink, line, raw.pop(text_field), text_field)
        fields = coerce_fields(self.sink, line, raw)
        if text is None or fields is None:
            return None
        merged = {**self.defaults, **fields}
        return make_spec(
            self.sink,
            line,
            text,
            text_field=text_field,
            fields=merged,
            metadata=metadata,
            check_surrogates=self.escapes,
        )


def parse_json(text: str, sink: IssueSink, specs: list[PromptSpec], job: dict[str, Any]) -> None:
    if not text.strip():
        return
    ok, data = _load(sink, text)
    if not ok:
        return
    lines = _Lines(text)
    start = _skip(text, 0)
    defaults: dict[str, Any] = {}
    if isinstance(data, dict):
        positions = _object_positions(text, start)
        keys = {_canonical(str(key)): str(key) for key in reversed(list(data))}
        prompts_key = keys.get("prompts")
        if prompts_key is None:
            sink.error(lines.line(start), f'{_EXPECTED_TOP}; this object has no "prompts" key')
            return
        items = data[prompts_key]
        items_pos = positions[prompts_key]
        if not isinstance(items, list):
            sink.error(
                lines.line(items_pos), f"expected an array, got {describe(items)}", field="prompts"
            )
            return
        for key, value in data.items():
            name = _canonical(str(key))
            if key == prompts_key:
                continue
            if name in DEFAULTABLE_FIELDS:
                coerced = coerce_fields(sink, lines.line(positions[key]), {name: value}, (name,))
                if coerced is not None:
                    defaults.update(coerced)
            else:
                job[str(key)] = value
        array_start = items_pos
    elif isinstance(data, list):
        items = data
        array_start = start
    else:
        sink.error(lines.line(start), f"{_EXPECTED_TOP}; got {describe(data)}")
        return
    element_positions = _array_positions(text, array_start)
    parser = ElementParser(sink, defaults, escapes=_may_have_surrogates(text))
    for index, (item, pos) in enumerate(zip(items, element_positions, strict=True), start=1):
        spec = parser.parse(item, lines.line(pos), f"element {index}")
        if spec is not None:
            specs.append(spec)


def parse_jsonl(text: str, sink: IssueSink, specs: list[PromptSpec], job: dict[str, Any]) -> None:
    parser = ElementParser(sink, escapes=_may_have_surrogates(text))
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        ok, value = _load(sink, stripped, lineno, indent)
        if not ok:
            continue
        spec = parser.parse(value, lineno, "this line")
        if spec is not None:
            specs.append(spec)
