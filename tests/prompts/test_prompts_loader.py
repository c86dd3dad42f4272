from __future__ import annotations

from pathlib import Path

import pytest
from prompts_testutil import errors, texts, warnings, write

from novelgen_desktop.prompts import (
    PromptImportError,
    load_prompt_files,
    loader,
    parse_text,
    require_prompts,
)


def test_files_are_combined_in_order(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "one\ntwo\n")
    b = write(tmp_path, "b.jsonl", '"three"\n')
    result = load_prompt_files([str(a), b])
    assert texts(result) == ["one", "two", "three"]
    assert [spec.source.file for spec in result.specs] == [str(a), str(a), str(b)]


def test_a_path_listed_twice_is_read_once(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "one\n")
    result = load_prompt_files([a, a])
    assert texts(result) == ["one"]
    assert warnings(result) == [f"{a}: warning: listed more than once; read only once"]


def test_max_errors_applies_per_file(tmp_path: Path) -> None:
    bad = "prompt,page\n" + "x,0\n" * 10
    a = write(tmp_path, "a.csv", bad)
    b = write(tmp_path, "b.csv", bad)
    result = load_prompt_files([a, b], max_errors=2)
    assert [str(issue) for issue in result.errors if issue.line is None] == [
        f"{a}: too many errors; stopping after 2",
        f"{b}: too many errors; stopping after 2",
    ]
    assert len(result.errors) == 6


def test_require_prompts_returns_specs_when_clean(tmp_path: Path) -> None:
    a = write(tmp_path, "a.csv", "prompt,mood\nA,dark\n")
    specs = require_prompts([a])
    assert [spec.text for spec in specs] == ["A"]  # the unknown-column warning does not block


def test_require_prompts_raises_with_errors_only(tmp_path: Path) -> None:
    a = write(tmp_path, "a.csv", "prompt,page,mood\nA,x,1\nB,1,2\n")
    with pytest.raises(PromptImportError) as caught:
        require_prompts([a])
    assert str(caught.value) == f"{a}:2: field 'page': expected a positive integer, got 'x'"
    assert all(issue.is_error for issue in caught.value.issues)


def test_require_prompts_raises_when_nothing_was_found(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "# nothing\n")
    b = write(tmp_path, "b.md", "")
    with pytest.raises(PromptImportError) as caught:
        require_prompts([a, b])
    assert str(caught.value).splitlines() == [f"{a}: no prompts found", f"{b}: no prompts found"]
    with pytest.raises(PromptImportError):
        require_prompts([])


def test_require_prompts_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(PromptImportError) as caught:
        require_prompts([tmp_path / "gone.script"])
    assert str(caught.value) == f"{tmp_path / 'gone.script'}: file not found"


def test_parse_text_inline() -> None:
    result = parse_text('{"prompt": "inline", "page": 2}', filename="api-request", format="jsonl")
    assert result.format_by_file == {"api-request": "jsonl"}
    assert result.specs[0].source.file == "api-request"
    assert result.specs[0].page == 2


def test_parse_text_auto_detects() -> None:
    result = parse_text("PAGE 1\nPanel 1\nA.\n", filename="pasted", format="auto")
    assert result.format_by_file == {"pasted": "fullscript"}


def test_parse_text_size_limit() -> None:
    result = parse_text("é" * 600, filename="big", format="text", max_bytes=1000)
    assert errors(result) == ["big: text is too large: more than 1,000 bytes as UTF-8"]
    assert texts(parse_text("é" * 400, filename="ok", format="text", max_bytes=1000)) == ["é" * 400]


def test_a_parser_bug_becomes_an_issue_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(loader._PARSERS, "text", broken)
    result = parse_text("a", filename="f", format="text")
    assert errors(result) == [
        "f: internal error while reading this file (ZeroDivisionError: boom); please report it"
    ]


def test_issues_of_valid_and_invalid_prompts_coexist(tmp_path: Path) -> None:
    a = write(tmp_path, "a.jsonl", '"good"\n{"prompt": ""}\n"also good"\n')
    result = load_prompt_files([a])
    assert texts(result) == ["good", "also good"]
    assert not result.ok
