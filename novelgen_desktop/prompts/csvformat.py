"""CSV/TSV: the format of everyone who plans a book in a spreadsheet.

* The first non-empty row is the header. A ``prompt`` column is required (header names are
  case-insensitive); ``text`` or ``description`` is accepted instead only when there is no
  ``prompt`` column. Other known columns: ``chapter``, ``page``, ``panel``, ``priority``,
  ``characters`` (``character`` also accepted; names separated by ``;``, ``|`` or ``,``),
  ``style``, ``images``. Every other column is kept in ``metadata`` (one warning per column,
  at the header, so a misspelt ``prioritty`` is noticed).
* The delimiter is whatever :class:`csv.Sniffer` finds among ``, ; TAB |`` — but only if it
  splits the header into recognisable columns; otherwise the candidate that yields the most
  known column names wins (a sniffer fooled by commas inside prompts must not turn one
  column into nine). A one-column header means no delimiter at all, so unquoted commas in
  prompts are harmless. Fallback: ``,`` (``TAB`` for ``.tsv``).
* Errors carry the physical line where the row starts, which differs from the row number as
  soon as a quoted cell spans lines. A multi-line row with an odd number of quote characters
  is an unclosed quote (which would otherwise silently swallow the rest of the file into one
  prompt) and is reported as such. Rows whose cells are all empty are skipped silently
  (spreadsheets export them by the hundred).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from novelgen_desktop.prompts.fields import (
    OPTIONAL_FIELDS,
    TEXT_FIELDS,
    check_prompt_text,
    coerce_fields,
    make_spec,
)
from novelgen_desktop.prompts.issues import IssueSink
from novelgen_desktop.prompts.model import PromptSpec

DELIMITERS = ",;\t|"
_NO_DELIMITER = "\x1f"  # ASCII unit separator: never in a real prompt, so "one column"
_SNIFF_CHARS = 8 * 1024
_ALIASES = {"character": "characters"}


class _Dialect(csv.Dialect):
    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = True
    lineterminator = "\n"
    quoting = csv.QUOTE_MINIMAL
    strict = False


def _reader(text: str, delimiter: str) -> Any:
    return csv.reader(io.StringIO(text), dialect=_Dialect, delimiter=delimiter)


def _canonical(name: str) -> str:
    key = " ".join(name.strip().lstrip("\ufeff").lower().split())
    return _ALIASES.get(key, key)


def _first_row(text: str, delimiter: str) -> list[str] | None:
    try:
        for row in _reader(text, delimiter):
            if any(cell.strip() for cell in row):
                return [str(cell) for cell in row]
    except csv.Error:
        return None
    return None


def _score(header: list[str] | None) -> tuple[int, int]:
    if header is None:
        return (-1, 0)
    known = {*TEXT_FIELDS, *OPTIONAL_FIELDS}
    return (sum(1 for cell in header if _canonical(cell) in known), len(header))


def choose_delimiter(text: str, *, default: str = ",") -> str:
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rfind("\n")]
    try:
        sniffed: str | None = str(csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter)
    except csv.Error:
        sniffed = None
    candidates = [d for d in (sniffed, default, *DELIMITERS) if d is not None]
    ordered: list[str] = list(dict.fromkeys(candidates))
    scores = {d: _score(_first_row(text, d)) for d in ordered}
    best: str = max(ordered, key=lambda d: scores[d])  # max() keeps the first of equals
    if scores[best][1] <= 1:
        return _NO_DELIMITER
    return best


def parse_csv(
    text: str,
    sink: IssueSink,
    specs: list[PromptSpec],
    job: dict[str, Any],
    *,
    default_delimiter: str = ",",
) -> None:
    delimiter = choose_delimiter(text, default=default_delimiter)
    reader = _reader(text, delimiter)
    previous_end = 0
    header: list[str] | None = None
    header_line = 0
    columns: dict[str, int] = {}
    metadata_columns: list[tuple[int, str]] = []
    text_field = "prompt"
    lines: list[str] | None = None  # split only if a row spans lines
    while True:
        start = previous_end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            sink.error(start, f"cannot read this CSV row: {exc}")
            return  # the reader cannot resynchronise reliably after a low-level error
        previous_end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if any("\n" in cell for cell in row):
            if lines is None:
                lines = text.split("\n")
            if sum(line.count('"') for line in lines[start - 1 : previous_end]) % 2:
                sink.error(
                    start,
                    f"a quoted value starting on this line is never closed (it runs to line "
                    f"{previous_end}); check the quotes",
                )
                continue
        if header is None:
            header, header_line = row, start
            parsed = _read_header(sink, header, header_line)
            if parsed is None:
                return
            columns, metadata_columns, text_field = parsed
            continue
        _parse_row(
            sink,
            specs,
            row,
            start,
            header=header,
            columns=columns,
            metadata_columns=metadata_columns,
            text_field=text_field,
        )
    if header is None and text.strip():
        sink.error(1, "no header row found; the first row must name a 'prompt' column")


def _read_header(
    sink: IssueSink, header: list[str], line: int
) -> tuple[dict[str, int], list[tuple[int, str]], str] | None:
    names = [_canonical(cell) for cell in header]
    text_field = next((name for name in TEXT_FIELDS if name in names), None)
    if text_field is None:
        found = ", ".join(f"'{cell.strip()}'" for cell in header if cell.strip())[:200]
        sink.error(
            line,
            f"the header row has no 'prompt' column (found: {found}); name the column of "
            "prompts 'prompt' (or 'text' / 'description')",
        )
        return None
    columns: dict[str, int] = {}
    metadata_columns: list[tuple[int, str]] = []
    used_metadata: set[str] = set()
    known = {text_field, *OPTIONAL_FIELDS}
    for index, (cell, name) in enumerate(zip(header, names, strict=True)):
        if name in known:
            if name in columns:
                sink.error(
                    line,
                    f"column '{name}' appears twice (columns {columns[name] + 1} and "
                    f"{index + 1}); only the first is used",
                    field=name,
                )
                continue
            columns[name] = index
            continue
        key = cell.strip().lstrip("\ufeff") or f"column {index + 1}"
        if key in used_metadata:
            sink.warning(line, f"column '{key}' appears twice; only the first is kept")
            continue
        used_metadata.add(key)
        metadata_columns.append((index, key))
        if cell.strip():
            sink.warning(line, f"unknown column '{key}' is kept as metadata")
    return columns, metadata_columns, text_field


def _parse_row(
    sink: IssueSink,
    specs: list[PromptSpec],
    row: list[str],
    line: int,
    *,
    header: list[str],
    columns: dict[str, int],
    metadata_columns: list[tuple[int, str]],
    text_field: str,
) -> None:
    extra = [cell for cell in row[len(header) :] if cell.strip()]
    if extra:
        sink.error(
            line,
            f"row has {len(row)} fields but the header has {len(header)} columns; "
            "quote any value that contains the delimiter",
        )
        return
    cells = row + [""] * (len(header) - len(row))
    raw = {name: cells[index] for name, index in columns.items()}
    metadata = {
        key: cells[index].strip() for index, key in metadata_columns if cells[index].strip()
    }
    # Check the text and every field before giving up, so one pass reports the whole row.
    text = check_prompt_text(sink, line, raw.get(text_field, ""), text_field)
    fields = coerce_fields(sink, line, raw)
    if text is None or fields is None:
        return
    spec = make_spec(sink, line, text, text_field=text_field, fields=fields, metadata=metadata)
    if spec is not None:
        specs.append(spec)
