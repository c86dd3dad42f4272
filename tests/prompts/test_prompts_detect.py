from __future__ import annotations

from pathlib import Path

import pytest
from prompts_testutil import errors, load, parse, texts, write

from novelgen_desktop.prompts import FORMATS, detect_format, load_prompt_files

SCRIPT = "PAGE ONE\n\nPanel 1\nA lighthouse at dusk.\nMAREN: Hello.\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("A.CSV", "csv"),
        ("a.tsv", "csv"),
        ("a.json", "json"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.md", "markdown"),
        ("a.markdown", "markdown"),
        ("a.script", "fullscript"),
        ("a.fountain", "fullscript"),
    ],
)
def test_extension_decides(name: str, expected: str) -> None:
    assert detect_format(name, "anything") == expected


def test_txt_is_sniffed_for_a_full_script() -> None:
    assert detect_format("book.txt", SCRIPT) == "fullscript"
    assert detect_format("list.txt", "A lighthouse\nPage two of the letter\n") == "text"
    # A page heading alone (no panel heading) is not enough to call it a script.
    assert detect_format("list.txt", "PAGE 1\nA lighthouse\n") == "text"


def test_unknown_extensions_try_json_then_script_then_text() -> None:
    assert detect_format("prompts", '[{"prompt": "a"}]') == "json"
    assert detect_format("stdin", '{"prompt": "a"}\n{"prompt": "b"}\n') == "jsonl"
    assert detect_format("notes.doc", SCRIPT) == "fullscript"
    assert detect_format("notes.log", "[not json\n") == "text"


def test_detected_format_is_recorded_per_file(tmp_path: Path) -> None:
    a = write(tmp_path, "script.txt", SCRIPT)
    b = write(tmp_path, "list.txt", "one\ntwo\n")
    result = load_prompt_files([a, b])
    assert result.format_by_file == {str(a): "fullscript", str(b): "text"}
    assert len(result.specs) == 3


def test_format_override_and_aliases(tmp_path: Path) -> None:
    result = load(tmp_path, "p.txt", "prompt,page\nA,2\n", format="CSV")
    assert result.specs[0].page == 2
    assert (
        load(tmp_path, "s.txt", SCRIPT, format="script").format_by_file[str(tmp_path / "s.txt")]
        == "fullscript"
    )
    assert texts(load(tmp_path, "x.csv", SCRIPT, format="text"))[0] == "PAGE ONE"
    assert load(tmp_path, "y.txt", SCRIPT, format="auto").specs[0].page == 1


def test_unknown_format_is_an_issue_naming_the_accepted_ones(tmp_path: Path) -> None:
    result = load(tmp_path, "p.txt", "x", format="yaml")
    assert errors(result) == [
        f"{tmp_path / 'p.txt'}: unknown format 'yaml'; accepted formats are text, csv, json, "
        "jsonl, markdown, fullscript"
    ]
    assert result.format_by_file == {str(tmp_path / "p.txt"): "unknown"}
    assert errors(parse("x", "docx", "inline")) == [
        "inline: unknown format 'docx'; accepted formats are text, csv, json, jsonl, markdown, "
        "fullscript"
    ]


def test_formats_constant() -> None:
    assert FORMATS == ("text", "csv", "json", "jsonl", "markdown", "fullscript")


def test_unknown_extension_warns_but_still_reads(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.py", "print('x')\n")
    result = load_prompt_files([path])
    assert texts(result) == ["print('x')"]
    assert [str(issue) for issue in result.warnings] == [
        f"{path}: warning: '.py' is not a prompt file extension; read as text (choose the "
        "format explicitly to silence this)"
    ]
    assert load_prompt_files([path], format="text").warnings == []
    assert load_prompt_files([write(tmp_path, "noext", "a\n")]).warnings == []
