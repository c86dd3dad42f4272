"""Choosing a parser: the extension first, the content only when the extension cannot decide.

``.txt`` is the one ambiguous extension that matters — writers save Full Scripts as ``.txt``
all the time — so a ``.txt`` file is a Full Script when it has at least one ``PAGE`` heading
and one ``Panel`` heading, and a plain list otherwise. Unknown extensions (or none) are also
tried as JSON and JSON Lines first, because API clients and pipes rarely name files well.
"""

from __future__ import annotations

import json
import os
from typing import Final

from novelgen_desktop.prompts.script_syntax import parse_page_heading, parse_panel_heading

TEXT: Final = "text"
CSV: Final = "csv"
JSON: Final = "json"
JSONL: Final = "jsonl"
MARKDOWN: Final = "markdown"
FULLSCRIPT: Final = "fullscript"
FORMATS: Final = (TEXT, CSV, JSON, JSONL, MARKDOWN, FULLSCRIPT)
AUTO: Final = "auto"

_ALIASES: Final = {
    "txt": TEXT,
    "plain": TEXT,
    "tsv": CSV,
    "ndjson": JSONL,
    "md": MARKDOWN,
    "script": FULLSCRIPT,
    "full-script": FULLSCRIPT,
    "full_script": FULLSCRIPT,
    "fountain": FULLSCRIPT,
}
_EXTENSIONS: Final[dict[str, str | None]] = {
    ".txt": None,  # decided by content
    ".text": None,
    ".csv": CSV,
    ".tsv": CSV,
    ".json": JSON,
    ".jsonl": JSONL,
    ".ndjson": JSONL,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".script": FULLSCRIPT,
    ".fountain": FULLSCRIPT,
}
_SNIFF_LINES: Final = 5000


def normalize_format(name: str) -> str | None:
    """Canonical format name for ``name`` (case-insensitive, common aliases), else None."""
    key = name.strip().lower()
    if key in FORMATS or key == AUTO:
        return key
    return _ALIASES.get(key)


def unknown_format_message(name: str) -> str:
    return f"unknown format {name!r}; accepted formats are {', '.join(FORMATS)}"


def is_known_extension(extension: str) -> bool:
    return extension.lower() in _EXTENSIONS


def format_from_extension(filename: str) -> str | None:
    """The format the extension implies, or None when the content must decide."""
    return _EXTENSIONS.get(os.path.splitext(filename)[1].lower())


def looks_like_full_script(text: str) -> bool:
    has_page = has_panel = False
    for count, line in enumerate(text.split("\n", _SNIFF_LINES)):
        if count >= _SNIFF_LINES:
            break
        head = line.lstrip("#*_ \t")[:5].upper()
        if head.startswith("PAGE") and not has_page:
            has_page = parse_page_heading(line) is not None
        elif head.startswith("PANEL") and not has_panel:
            has_panel = parse_panel_heading(line) is not None
        if has_page and has_panel:
            return True
    return False


def _looks_like_json(text: str) -> str | None:
    stripped = text.strip()
    if not stripped or stripped[0] not in '[{"':
        return None
    try:
        json.loads(stripped)
    except (ValueError, RecursionError):
        pass
    else:
        return JSON
    lines = [line for line in stripped.split("\n", 200)[:200] if line.strip()]
    try:
        for line in lines[:20]:
            json.loads(line)
    except (ValueError, RecursionError):
        return None
    return JSONL


def detect_format(filename: str, text: str) -> str:
    by_extension = format_from_extension(filename)
    if by_extension is not None:
        return by_extension
    extension = os.path.splitext(filename)[1].lower()
    if extension not in _EXTENSIONS:
        sniffed = _looks_like_json(text)
        if sniffed is not None:
            return sniffed
    return FULLSCRIPT if looks_like_full_script(text) else TEXT
