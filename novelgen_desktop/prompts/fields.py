"""Validation shared by every format, so a prompt means the same thing whatever file it came from.

Structured formats (CSV, JSON, JSONL) hand over raw values exactly as found — strings from a
spreadsheet, numbers or ``true`` from JSON — and this module turns them into typed
:class:`PromptSpec` fields or precise messages (``expected an integer from 1 to 8, got 12``).
Script formats build their fields themselves but still pass through :func:`make_spec` so the
text rules (non-empty, length limit, ``@Name`` mentions) are identical everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from novelgen_desktop.prompts.issues import IssueSink
from novelgen_desktop.prompts.model import PromptSpec, SourceLocation

MAX_PROMPT_CHARS: Final = 4000
PRIORITY_RANGE: Final = (-1000, 1000)
IMAGES_RANGE: Final = (1, 8)

TEXT_FIELDS: Final = ("prompt", "text", "description")
"""Accepted names for the prompt column/key, in order of preference. ``prompt`` wins when
present; ``text`` and ``description`` are accepted only when there is no ``prompt``, and then
any other of the three is kept as ordinary metadata."""

OPTIONAL_FIELDS: Final = ("chapter", "page", "panel", "priority", "characters", "style", "images")
DEFAULTABLE_FIELDS: Final = ("chapter", "page", "priority", "characters", "style", "images")
"""Fields a JSON file may set once at top level for every element (``panel`` may not: a panel
number shared by every prompt is certainly a mistake)."""

CHARACTER_SEPARATORS_RE: Final = re.compile(r"[;|,]")
_MENTION_RE: Final = re.compile(r"(?<![\w@.])@([^\W\d_][\w'’\-]*)")
_INT_TEXT_RE: Final = re.compile(r"[+-]?\d{1,15}(?:\.0*)?")


class Invalid:
    """Marker returned by coercers; the issue has already been reported."""


INVALID: Final = Invalid()


def describe(value: object) -> str:
    """How a bad value appears in a message: quoted and shortened text, JSON names for the rest."""
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return "'" + shown.replace("\n", " ") + "'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        stripped = value.strip()
        if _INT_TEXT_RE.fullmatch(stripped):
            return int(stripped.split(".")[0])
    return None


def is_blank(value: object) -> bool:
    """Missing and empty mean "use the default" — spreadsheets leave empty cells everywhere."""
    return value is None or (isinstance(value, str) and not value.strip())


def coerce_int(
    sink: IssueSink, line: int, field: str, value: object, *, low: int | None, high: int | None
) -> int | Invalid:
    number = _as_int(value)
    if number is None or (low is not None and number < low) or (high is not None and number > high):
        if low == 1 and high is None:
            expected = "a positive integer"
        elif number is not None:
            expected = f"an integer from {low} to {high}"
        else:
            expected = "an integer"
        sink.error(line, f"expected {expected}, got {describe(value)}", field=field)
        return INVALID
    return number


def coerce_label(sink: IssueSink, line: int, field: str, value: object) -> str | Invalid | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        sink.error(line, f"expected a text label, got {describe(value)}", field=field)
        return INVALID
    label = str(value).strip()
    return label or None


def coerce_text(sink: IssueSink, line: int, field: str, value: object) -> str | Invalid | None:
    if not isinstance(value, str):
        sink.error(line, f"expected text, got {describe(value)}", field=field)
        return INVALID
    return value.strip() or None


def split_names(text: str) -> list[str]:
    return [
        name
        for name in (
            part.strip().lstrip("@").strip() for part in CHARACTER_SEPARATORS_RE.split(text)
        )
        if name
    ]


def coerce_characters(sink: IssueSink, line: int, field: str, value: object) -> list[str] | Invalid:
    if isinstance(value, str):
        return split_names(value)
    if isinstance(value, list):
        names: list[str] = []
        for item in value:
            if not isinstance(item, str):
                sink.error(
                    line,
                    f"expected a list of names, but one element is {describe(item)}",
                    field=field,
                )
                return INVALID
            names.extend(split_names(item))
        return names
    sink.error(line, f"expected a list of names or a text, got {describe(value)}", field=field)
    return INVALID


def coerce_fields(
    sink: IssueSink, line: int, raw: Mapping[str, object], names: Iterable[str] = OPTIONAL_FIELDS
) -> dict[str, Any] | None:
    """Validate the optional fields present in ``raw``; None if any was invalid (all reported).

    Blank values are dropped rather than validated, so an empty ``priority`` cell is the
    default, not an error.
    """
    result: dict[str, Any] = {}
    failed = False
    for name in names:
        if name not in raw:
            continue
        value = raw[name]
        if is_blank(value):
            continue
        coerced: object
        if name == "chapter":
            coerced = coerce_label(sink, line, name, value)
        elif name in ("page", "panel"):
            coerced = coerce_int(sink, line, name, value, low=1, high=None)
        elif name == "priority":
            low, high = PRIORITY_RANGE
            coerced = coerce_int(sink, line, name, value, low=low, high=high)
        elif name == "images":
            low, high = IMAGES_RANGE
            coerced = coerce_int(sink, line, name, value, low=low, high=high)
        elif name == "characters":
            coerced = coerce_characters(sink, line, name, value)
        else:  # style
            coerced = coerce_text(sink, line, name, value)
        if isinstance(coerced, Invalid):
            failed = True
        elif coerced is not None:
            result[name] = coerced
    return None if failed else result


def mentions(text: str) -> list[str]:
    """``@Name`` mentions, so casting can be written inline in a plain list of prompts.

    A possessive is not part of the name: ``@Isak's boat`` casts ``Isak``.
    """
    names = []
    for match in _MENTION_RE.finditer(text):
        name = match.group(1)
        if name[-2:].lower() in ("'s", "’s"):
            name = name[:-2]
        names.append(name.rstrip("'’-"))
    return [name for name in names if name]


def unique_names(names: Iterable[str]) -> tuple[str, ...]:
    """Deduplicate ignoring case, keeping the first spelling: ``MAREN`` and ``@Maren`` are one."""
    seen: set[str] = set()
    result: list[str] = []
    for name in names:
        key = name.casefold()
        if name and key not in seen:
            seen.add(key)
            result.append(name)
    return tuple(result)


def has_lone_surrogate(value: object) -> bool:
    """Lone surrogates (JSON ``"\\ud800"``) cannot be stored or sent anywhere as UTF-8.

    Iterative, because metadata from JSON may be nested deeper than the recursion limit.
    """
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def check_prompt_text(
    sink: IssueSink, line: int, value: object, field: str | None, *, what: str = "prompt"
) -> str | None:
    """The text rules every format shares; None (after reporting) when the text is unusable."""
    if not isinstance(value, str):
        sink.error(line, f"expected text, got {describe(value)}", field=field)
        return None
    text = value.strip()
    if not text:
        sink.error(line, f"{what} is empty", field=field)
        return None
    if len(text) > MAX_PROMPT_CHARS:
        sink.error(
            line,
            f"{what} is {len(text):,} characters long; the maximum is {MAX_PROMPT_CHARS:,}",
            field=field,
        )
        return None
    return text


def make_spec(
    sink: IssueSink,
    line: int,
    text: object,
    *,
    text_field: str | None = "prompt",
    what: str = "prompt",
    fields: Mapping[str, Any] | None = None,
    characters: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    check_surrogates: bool = False,
) -> PromptSpec | None:
    """Build one spec from already-coerced ``fields`` plus text; None when the text is bad.

    ``check_surrogates`` is only needed for values decoded from JSON ``\\u`` escapes: text
    read from files or checked by the reader cannot contain lone surrogates.
    """
    checked = check_prompt_text(sink, line, text, text_field, what=what)
    if checked is None:
        return None
    values = dict(fields or {})
    names = [*values.pop("characters", ()), *characters, *mentions(checked)]
    if check_surrogates and has_lone_surrogate((checked, names, values, metadata)):
        sink.error(
            line,
            "contains an invalid character (a lone surrogate such as \\ud800, usually from a "
            "broken JSON escape)",
            field=text_field,
        )
        return None
    return PromptSpec(
        text=checked,
        source=SourceLocation(sink.file, line),
        chapter=values.get("chapter"),
        page=values.get("page"),
        panel=values.get("panel"),
        priority=values.get("priority", 0),
        characters=unique_names(names),
        style=values.get("style"),
        images=values.get("images", 1),
        metadata=dict(metadata or {}),
    )
