"""Line numbers for the keys of a TOML document.

``tomllib`` reports where the *syntax* is wrong but returns plain dicts, so a value that is
valid TOML and still wrong ("description must not be empty", "no such file") would have no
line to point at. This scanner reads the text once more and remembers on which line each
table header and each key was written, so every error names ``file:line``.

It understands what a style bible uses: ``[table.headers]`` with bare or quoted parts,
``[[arrays.of.tables]]`` (numbered like Python lists), dotted and quoted keys, and multi-line
strings and arrays (their inner lines are skipped). Anything it cannot place falls back to
the nearest enclosing table's line, never to a wrong one.
"""

from __future__ import annotations

import re

KeyPath = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(text: str) -> tuple[list[str], str] | None:
    """Parse a dotted key at the start of ``text``; return its parts and the rest of the line."""
    parts: list[str] = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return None
        quote = text[i]
        if quote in "\"'":
            end = i + 1
            chars: list[str] = []
            while end < n and text[end] != quote:
                if quote == '"' and text[end] == "\\" and end + 1 < n:
                    chars.append(text[end + 1])
                    end += 2
                    continue
                chars.append(text[end])
                end += 1
            if end >= n:
                return None
            parts.append("".join(chars))
            i = end + 1
        else:
            match = _BARE.match(text, i)
            if match is None:
                return None
            parts.append(match.group())
            i = match.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, text[i:]


def _open_brackets(value: str) -> int:
    """How many ``[``/``{`` a value leaves open (strings and comments skipped)."""
    depth = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "#":
            break
        if ch in "\"'":
            triple = value[i : i + 3] == ch * 3
            if triple:
                end = value.find(ch * 3, i + 3)
                if end < 0:
                    return depth  # a multi-line string: handled by the caller
                i = end + 3
                continue
            end = i + 1
            while end < n and value[end] != ch:
                end += 2 if ch == '"' and value[end] == "\\" else 1
            i = end + 1
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


def _opens_multiline_string(value: str) -> str | None:
    """The delimiter of a multi-line string the value starts and does not close, if any."""
    for delim in ('"""', "'''"):
        start = value.find(delim)
        if start >= 0 and value.find(delim, start + 3) < 0:
            before = value[:start]
            if before.count('"') % 2 == 0 and before.count("'") % 2 == 0:
                return delim
    return None


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every table and key path of a TOML document to its 1-based line."""
    lines: dict[KeyPath, int] = {}
    table: KeyPath = ()
    array_counts: dict[KeyPath, int] = {}
    in_string: str | None = None
    depth = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if in_string in raw:
                in_string = None
            continue
        if depth > 0:
            depth = max(0, depth + _open_brackets(raw))
            continue
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            parsed = _split_key(stripped[2:])
            if parsed is not None:
                path = tuple(parsed[0])
                index = array_counts.get(path, 0)
                array_counts[path] = index + 1
                table = (*path, index)
                lines.setdefault(path, lineno)
                lines[table] = lineno
            continue
        if stripped.startswith("["):
            parsed = _split_key(stripped[1:])
            if parsed is not None:
                table = tuple(parsed[0])
                lines.setdefault(table, lineno)
                for cut in range(1, len(table)):
                    lines.setdefault(table[:cut], lineno)
            continue
        parsed = _split_key(stripped)
        if parsed is None or not parsed[1].startswith("="):
            continue
        parts, rest = parsed
        value = rest[1:]
        for cut in range(1, len(parts) + 1):
            lines.setdefault((*table, *parts[:cut]), lineno)
        in_string = _opens_multiline_string(value)
        if in_string is None:
            depth = max(0, _open_brackets(value))
    return lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    for cut in range(len(path), 0, -1):
        found = lines.get(path[:cut])
        if found is not None:
            return found
    return None
