from __future__ import annotations

import pytest

from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.prompts import ImportIssue, ImportResult, PromptImportError
from novelgen_desktop.prompts.issues import IssueSink, TooManyErrorsError


def test_issue_str_with_line_column_and_field() -> None:
    issue = ImportIssue("script.csv", 14, "expected an integer, got 'high'", field="priority")
    assert str(issue) == "script.csv:14: field 'priority': expected an integer, got 'high'"
    located = ImportIssue("a.json", 3, "invalid JSON: Expecting value", column=7)
    assert str(located) == "a.json:3:7: invalid JSON: Expecting value"


def test_issue_str_without_line_and_warning() -> None:
    assert str(ImportIssue("x.txt", None, "file not found")) == "x.txt: file not found"
    warning = ImportIssue("x.md", 4, "empty list item skipped", severity="warning")
    assert str(warning) == "x.md:4: warning: empty list item skipped"
    assert not warning.is_error


def test_column_is_ignored_without_line() -> None:
    assert str(ImportIssue("f", None, "m", column=3)) == "f: m"


def test_prompt_import_error_lists_issues_one_per_line() -> None:
    issues = [ImportIssue("a.csv", 2, "one"), ImportIssue("b.csv", None, "two", field="page")]
    error = PromptImportError(issues)
    assert isinstance(error, NovelGenError)
    assert error.issues == issues
    assert str(error).splitlines() == ["a.csv:2: one", "b.csv: field 'page': two"]


def test_import_result_splits_errors_and_warnings() -> None:
    error = ImportIssue("f", 1, "bad")
    warning = ImportIssue("f", 2, "odd", severity="warning")
    result = ImportResult(issues=[error, warning])
    assert result.errors == [error]
    assert result.warnings == [warning]
    assert not result.ok


def test_sink_stops_after_max_errors_with_a_final_issue() -> None:
    sink = IssueSink("f.csv", max_errors=3)
    sink.error(1, "a")
    sink.error(2, "b")
    with pytest.raises(TooManyErrorsError):
        sink.error(3, "c")
    messages = [issue.message for issue in sink.finish()]
    assert messages == ["a", "b", "c", "too many errors; stopping after 3"]


def test_sink_caps_warnings_and_summarises_the_rest() -> None:
    sink = IssueSink("f.md", max_errors=2)
    for line in range(5):
        sink.warning(line + 1, "odd")
    issues = sink.finish()
    assert len(issues) == 3
    assert issues[-1].message == "3 more warnings not shown"
    assert all(not issue.is_error for issue in issues)
    assert sink.finish() == issues  # idempotent
