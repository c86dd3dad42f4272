"""Property and fuzz tests: no input may crash the importer, and valid data must survive.

Writers will feed the importer anything, and one traceback in the GUI is worse than a hundred
clear messages, so (a) random bytes and (b) mutated near-valid files must only ever produce
issues (or a PromptImportError from ``require_prompts``), and (c) well-formed CSV/JSON/JSONL
generated from random prompt data must parse back to exactly that data, line numbers included.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novelgen_desktop.prompts import (
    FORMATS,
    MAX_PROMPT_CHARS,
    ImportResult,
    PromptImportError,
    format_validation_report,
    load_prompt_files,
    parse_text,
    require_prompts,
)

# Sized for the suite's time budget; set NOVELGEN_FUZZ_SCALE=50 for a deep local run.
_SCALE = max(1, int(os.environ.get("NOVELGEN_FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=120 * _SCALE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUND_TRIP = settings(
    max_examples=80 * _SCALE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

EXTENSIONS = [
    ".txt",
    ".csv",
    ".tsv",
    ".json",
    ".jsonl",
    ".ndjson",
    ".md",
    ".script",
    ".fountain",
    "",
    ".dat",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_result(result: ImportResult) -> None:
    """Invariants every result must satisfy, whatever the input."""
    internal = [str(issue) for issue in result.issues if "internal error" in issue.message]
    assert internal == []
    for spec in result.specs:
        assert spec.text == spec.text.strip()
        assert 0 < len(spec.text) <= MAX_PROMPT_CHARS
        assert 1 <= spec.images <= 8
        assert -1000 <= spec.priority <= 1000
        assert spec.page is None or spec.page >= 1
        assert spec.panel is None or spec.panel >= 1
        assert spec.chapter is None or (isinstance(spec.chapter, str) and spec.chapter)
        folded = [name.casefold() for name in spec.characters]
        assert len(folded) == len(set(folded))
        assert all(name for name in spec.characters)
        spec.text.encode("utf-8")  # no lone surrogates reach a spec
    format_validation_report(result)


def check_file(path: Path) -> None:
    check_result(load_prompt_files([path]))
    try:
        require_prompts([path])
    except PromptImportError as exc:
        assert exc.issues


# (a) random input --------------------------------------------------------------------------

BOMS = st.sampled_from([b"", b"", b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE])


@FUZZ
@given(prefix=BOMS, data=st.binary(max_size=2000), extension=st.sampled_from(EXTENSIONS))
def test_random_bytes_never_crash(
    workdir: Path, prefix: bytes, data: bytes, extension: str
) -> None:
    path = workdir / f"random{extension}"
    path.write_bytes(prefix + data)
    check_file(path)


# Text assembled from the tokens the parsers care about reaches much deeper than raw bytes.
TOKENS = [
    "PAGE ",
    "PAGES ",
    "Page ",
    "PANEL ",
    "Panel ",
    "CHAPTER ",
    "ISSUE #",
    "ACT ",
    "PROLOGUE",
    "ONE",
    "TWENTY",
    "-",
    "THREE",
    "HUNDRED",
    " AND ",
    "1",
    "12",
    "0",
    "999999999",
    "IV",
    "(",
    ")",
    "(six panels)",
    ":",
    ".",
    " ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    "CAPTION",
    "SFX",
    "MAREN",
    "OLD TOBIAS",
    "NOTE",
    "NO COPY",
    "(OFF)",
    "1. ",
    "THE END",
    "#",
    "## ",
    "- ",
    "> ",
    "```",
    "<!--",
    "-->",
    "---",
    "* * *",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    "|",
    '"',
    "'",
    "\\",
    "\\u",
    "ud800",
    "prompt",
    "text",
    "page",
    "panel",
    "priority",
    "images",
    "characters",
    "chapter",
    "style",
    "metadata",
    "prompts",
    "true",
    "null",
    "@",
    "@Maren",
    "Wide shot",
    "a lighthouse",
    "é",
    "海",
    "\u2028",
    "\ufeff",
    "\x00",
    "\x85",
    "x" * 300,
]
# Whole line openings, so that rarer combinations (a numbered balloon with a modifier right
# after a panel heading) are actually reached within a small example budget.
LINE_STARTS = [
    "PAGE ONE",
    "PAGES 4-5 (two panels)",
    "Page 12 (six panels)",
    "PAGE TWENTY-THREE:",
    "Panel 1",
    "PANEL 2:",
    "Panel 3.",
    "PANEL FOUR",
    "Panel",
    "CHAPTER TWO: ",
    "ISSUE #3",
    "CAPTION: ",
    "CAPTION (MAREN): ",
    "SFX: ",
    "MAREN: ",
    "1. OLD TOBIAS (OFF): ",
    "2 CAPTION: ",
    "ISAK (whispering):",
    "NOTE: ",
    "NO COPY.",
    "THE END",
    "TITLE: ",
    "# Chapter 1",
    "## Page 2",
    "- ",
    "1. ",
    "> CAPTION: ",
    "> MAREN: ",
    "```",
    "---",
    '{"prompt": "',
    '"',
    "prompt,page,images",
    "[",
    "    ",
    "",
]
soup_lines = st.tuples(st.sampled_from(LINE_STARTS), st.lists(st.sampled_from(TOKENS), max_size=6))


@FUZZ
@given(lines=st.lists(soup_lines, max_size=30))
def test_token_soup_through_every_parser(lines: list[tuple[str, list[str]]]) -> None:
    text = "\n".join(start + "".join(rest) for start, rest in lines)
    for fmt in (*FORMATS, "auto"):
        check_result(parse_text(text, filename=f"soup.{fmt}", format=fmt))


@FUZZ
@given(text=st.text(max_size=400))
def test_arbitrary_unicode_through_every_parser(text: str) -> None:
    for fmt in FORMATS:
        check_result(parse_text(text, filename="u", format=fmt, max_errors=3))


# Generators of valid files -----------------------------------------------------------------

KNOWN = {
    "prompt",
    "text",
    "description",
    "chapter",
    "page",
    "panel",
    "priority",
    "characters",
    "character",
    "style",
    "images",
    "metadata",
    "prompts",
}

PROMPT_ALPHABET = st.one_of(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="@"),
    st.sampled_from(["\n", "\t", '"', ",", ";", "|", " ", "'", "#", ":"]),
)
prompt_texts = st.text(PROMPT_ALPHABET, min_size=1, max_size=60).filter(lambda s: s.strip())
labels = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Z"), blacklist_characters="@"),
    min_size=1,
    max_size=12,
)
names = st.text(st.characters(whitelist_categories=("Lu", "Ll")), min_size=1, max_size=10)
extra_keys = st.from_regex(r"x_[a-z]{1,8}", fullmatch=True)


@st.composite
def prompt_records(draw: st.DrawFn) -> dict[str, Any]:
    """A random prompt as a dict of valid values (some fields absent)."""
    record: dict[str, Any] = {"prompt": draw(prompt_texts)}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "chapter": labels,
        "page": st.integers(1, 10**6),
        "panel": st.integers(1, 10**6),
        "priority": st.integers(-1000, 1000),
        "characters": st.lists(names, max_size=4),
        "style": labels,
        "images": st.integers(1, 8),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            record[key] = draw(strategy)
    return record


def expected_fields(record: dict[str, Any]) -> dict[str, Any]:
    seen: set[str] = set()
    cast = []
    for name in record.get("characters", []):
        if name.casefold() not in seen:
            seen.add(name.casefold())
            cast.append(name)
    return {
        "text": record["prompt"].strip(),
        "chapter": str(record["chapter"]).strip() if "chapter" in record else None,
        "page": record.get("page"),
        "panel": record.get("panel"),
        "priority": record.get("priority", 0),
        "characters": tuple(cast),
        "style": record["style"].strip() if "style" in record else None,
        "images": record.get("images", 1),
    }


def actual_fields(result: ImportResult) -> list[dict[str, Any]]:
    return [
        {
            "text": s.text,
            "chapter": s.chapter,
            "page": s.page,
            "panel": s.panel,
            "priority": s.priority,
            "characters": s.characters,
            "style": s.style,
            "images": s.images,
        }
        for s in result.specs
    ]


def _normalise_newlines(record: dict[str, Any]) -> dict[str, Any]:
    """The reader turns CR and CRLF into LF everywhere, inside quoted cells too."""
    return {
        key: value.replace("\r", "\n") if isinstance(value, str) else value
        for key, value in record.items()
    }


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]], list[int], list[dict]]:
    records = draw(st.lists(prompt_records(), min_size=1, max_size=12))
    extras = draw(st.lists(extra_keys, max_size=2, unique=True))
    columns = ["prompt", "chapter", "page", "panel", "priority", "characters", "style", "images"]
    columns = draw(st.permutations(columns + extras))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    lines, metadata, line = [], [], 2
    for record in records:
        meta = {key: draw(labels) for key in extras if draw(st.booleans())}
        row = []
        for column in columns:
            value: Any = meta.get(column) if column in extras else record.get(column)
            if column == "characters" and value is not None:
                value = draw(st.sampled_from([";", "|", ","])).join(value)
            row.append("" if value is None else str(value))
        before = buffer.tell()
        writer.writerow(row)
        lines.append(line)
        line += buffer.getvalue()[before:].count("\n")
        metadata.append({key: value.strip() for key, value in meta.items() if value.strip()})
    return buffer.getvalue(), records, lines, metadata


# (c) round trips ---------------------------------------------------------------------------


@ROUND_TRIP
@given(generated=csv_files())
def test_csv_round_trip(generated: tuple[str, list[dict[str, Any]], list[int], list[dict]]) -> None:
    text, records, lines, metadata = generated
    result = parse_text(text, filename="r.csv", format="csv")
    assert result.errors == []
    assert actual_fields(result) == [expected_fields(r) for r in records]
    assert [spec.source.line for spec in result.specs] == lines
    assert [spec.metadata for spec in result.specs] == metadata


@st.composite
def json_elements(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    record = draw(prompt_records())
    if len(record) == 1 and draw(st.booleans()):
        return record["prompt"], record
    element = dict(record)
    if "chapter" in element and draw(st.booleans()) and element["chapter"].strip().isdecimal():
        element["chapter"] = int(element["chapter"].strip())
    if draw(st.booleans()):
        key = draw(st.sampled_from(["prompt", "text", "description", "Prompt"]))
        element[key] = element.pop("prompt")
    extra = draw(st.dictionaries(extra_keys, st.none() | st.integers() | labels, max_size=2))
    element.update(extra)
    record["metadata"] = extra
    return element, record


@ROUND_TRIP
@given(
    elements=st.lists(json_elements(), min_size=1, max_size=10),
    indent=st.sampled_from([None, 0, 2, "\t"]),
    wrapped=st.booleans(),
    ensure_ascii=st.booleans(),
)
def test_json_round_trip(
    elements: list[tuple[Any, dict[str, Any]]], indent: Any, wrapped: bool, ensure_ascii: bool
) -> None:
    values = [value for value, _ in elements]
    dumped = [json.dumps(value, indent=indent, ensure_ascii=ensure_ascii) for value in values]
    if indent is None:
        text = "[" + ", ".join(dumped) + "]"
        starts = [1] * len(values)
    else:
        pad = "\t" if indent == "\t" else " " * indent
        body = ",\n".join(pad + d.replace("\n", "\n" + pad) for d in dumped)
        text = "[\n" + body + "\n]"
        starts, line = [], 2
        for d in dumped:
            starts.append(line)
            line += d.count("\n") + 1
    if wrapped:
        text = '{"title": "t",\n"prompts": ' + text + "}"
        starts = [s + 1 for s in starts]
    assert json.loads(text)  # the test itself must produce valid JSON
    result = parse_text(text, filename="r.json", format="json")
    assert result.errors == []
    records = [_normalise_newlines(record) for _, record in elements]
    assert actual_fields(result) == [expected_fields(r) for r in records]
    assert [spec.source.line for spec in result.specs] == starts
    assert [spec.metadata for spec in result.specs] == [r.get("metadata", {}) for r in records]


@ROUND_TRIP
@given(
    elements=st.lists(json_elements(), min_size=1, max_size=10),
    blanks=st.lists(st.integers(0, 2), min_size=10, max_size=10),
)
def test_jsonl_round_trip(elements: list[tuple[Any, dict[str, Any]]], blanks: list[int]) -> None:
    lines, starts = [], []
    for (value, _), blank in zip(elements, blanks, strict=False):
        lines.extend([""] * blank)
        lines.append(json.dumps(value))
        starts.append(len(lines))
    result = parse_text("\n".join(lines), filename="r.jsonl", format="jsonl")
    assert result.errors == []
    records = [record for _, record in elements]
    assert actual_fields(result) == [expected_fields(r) for r in records]
    assert [spec.source.line for spec in result.specs] == starts


# A generated Full Script must come back panel for panel. -----------------------------------

WORDS = [
    "the",
    "lighthouse",
    "storm",
    "maren",
    "climbs",
    "stairs",
    "wave",
    "breaks",
    "over",
    "rocks",
    "gull",
    "dawn",
    "lamp",
    "glows",
    "rain",
    "harbour",
    "boat",
    "rope",
]
SPEAKERS = ["MAREN", "OLD TOBIAS", "ISAK", "DR. HALE", "O'NEILL"]
_UNITS = ["ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]

descriptions = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(
    lambda words: " ".join(words).capitalize() + "."
)
lettering_lines = st.one_of(
    st.tuples(st.just("dialogue"), st.sampled_from(SPEAKERS), descriptions),
    st.tuples(st.just("caption"), st.none(), descriptions),
    st.tuples(st.just("sfx"), st.none(), st.sampled_from(["BOOM", "KRAKOOM", "TAK TAK"])),
)
panels = st.tuples(descriptions, st.lists(lettering_lines, max_size=3))
pages = st.lists(panels, min_size=1, max_size=7)


def _page_heading(number: int, style: int) -> str:
    if style == 0 or number > 9:
        return f"PAGE {number}"
    return f"PAGE {_UNITS[number - 1]}" if style == 1 else f"Page {number}:"


@ROUND_TRIP
@given(
    book=st.lists(pages, min_size=1, max_size=6),
    styles=st.lists(st.integers(0, 2), min_size=60, max_size=60),
)
def test_generated_full_script_round_trip(
    book: list[list[tuple[str, list[Any]]]], styles: list[int]
) -> None:
    out = ["TITLE: Generated", ""]
    expected = []
    for page_number, page in enumerate(book, start=1):
        out += [_page_heading(page_number, styles[page_number]), ""]
        for panel_number, (text, letters) in enumerate(page, start=1):
            style = styles[(page_number * 7 + panel_number) % len(styles)]
            heading = [
                f"Panel {panel_number}",
                f"PANEL {_UNITS[panel_number - 1]}:",
                f"Panel {panel_number}.",
            ][style]
            out += [heading, text]
            cast = []
            for kind, speaker, line in letters:
                label = {"dialogue": speaker, "caption": "CAPTION", "sfx": "SFX"}[kind]
                out.append(f"{label}: {line}")
                if kind == "dialogue" and speaker not in cast:
                    cast.append(speaker)
            out.append("")
            expected.append(
                (
                    "1",
                    page_number,
                    panel_number,
                    text,
                    tuple(cast),
                    [kind for kind, _, _ in letters],
                )
            )
    result = parse_text("\n".join(out), filename="g.script", format="fullscript")
    assert result.issues == []
    assert [
        (
            s.chapter,
            s.page,
            s.panel,
            s.text,
            s.characters,
            [item["kind"] for item in s.metadata["lettering"]],
        )
        for s in result.specs
    ] == expected


# (b) near-valid files, mutated -------------------------------------------------------------


def _valid_markdown(records: list[dict[str, Any]]) -> str:
    out = ["# Chapter 1", "## Page 1"]
    for index, record in enumerate(records):
        if index % 3 == 2:
            out.append(f"## Page {index}")
        out.append("- " + " ".join(record["prompt"].split()))
        if index % 2:
            out.append("> MAREN: a line")
    return "\n".join(out)


def _valid_script(records: list[dict[str, Any]]) -> str:
    out = ["TITLE: Mutant", "PAGE ONE"]
    for index, record in enumerate(records):
        if index % 4 == 3:
            out.append(f"PAGE {index}")
        out += [f"Panel {index % 4 + 1}", " ".join(record["prompt"].split()), "SFX: BOOM", ""]
    return "\n".join(out)


def _valid_json(records: list[dict[str, Any]]) -> str:
    return json.dumps({"chapter": "1", "prompts": records}, indent=2)


def _valid_jsonl(records: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(record) for record in records)


def _valid_text(records: list[dict[str, Any]]) -> str:
    return "\n".join(" ".join(record["prompt"].split()) for record in records)


def _valid_csv(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "page", "priority", "characters"])
    for record in records:
        writer.writerow(
            [
                record["prompt"],
                record.get("page", ""),
                record.get("priority", ""),
                ";".join(record.get("characters", [])),
            ]
        )
    return buffer.getvalue()


BUILDERS: dict[str, Callable[[list[dict[str, Any]]], str]] = {
    ".csv": _valid_csv,
    ".json": _valid_json,
    ".jsonl": _valid_jsonl,
    ".md": _valid_markdown,
    ".script": _valid_script,
    ".txt": _valid_text,
}
NOISE = st.sampled_from(
    [
        '"',
        ",",
        "\n",
        "{",
        "}",
        "[",
        "]",
        ":",
        "PAGE 2\n",
        "Panel\n",
        "#",
        "> ",
        "\\",
        "\x00",
        "é",
        "\ud800",
        "-",
        "```",
        "<!--",
        " ",
        "9" * 20,
    ]
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    extension = draw(st.sampled_from(sorted(BUILDERS)))
    text = BUILDERS[extension](draw(st.lists(prompt_records(), min_size=1, max_size=8)))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["insert", "delete", "truncate", "swap", "duplicate"]))
        lines = text.split("\n")
        if operation == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(NOISE) + text[at:]
        elif operation == "delete" and text:
            start = draw(st.integers(0, len(text) - 1))
            text = text[:start] + text[start + draw(st.integers(1, 10)) :]
        elif operation == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
        elif operation == "swap" and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif operation == "duplicate":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
    return extension, text


@FUZZ
@given(case=mutated(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_mutated_valid_files_never_crash(
    workdir: Path, case: tuple[str, str], encoding: str
) -> None:
    extension, text = case
    path = workdir / f"mutant{extension}"
    path.write_bytes(text.encode(encoding, errors="surrogatepass"))
    check_file(path)
    for fmt in FORMATS:
        check_result(parse_text(text, filename="mutant", format=fmt))
