from __future__ import annotations

from pathlib import Path

from prompts_testutil import write

from novelgen_desktop.prompts import (
    ImportIssue,
    ImportResult,
    PromptSpec,
    SourceLocation,
    format_validation_report,
    load_prompt_files,
    summarize,
)


def _spec(chapter: str | None, page: int | None, file: str = "f", images: int = 1) -> PromptSpec:
    return PromptSpec("x", SourceLocation(file, 1), chapter, page, None, images=images)


def test_summarize_counts_pages_in_source_order() -> None:
    specs = [
        _spec("1", 2),
        _spec("1", 2),
        _spec("1", 1),
        _spec("2", 1),
        _spec("1", 2),
        _spec(None, None),
    ]
    assert summarize(specs) == [("1", 2, 3), ("1", 1, 1), ("2", 1, 1), (None, None, 1)]
    assert summarize([]) == []


def test_report_for_a_script_and_a_list(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "book.script",
        "CHAPTER 1\nPAGE 1\nPanel 1\nA.\nPanel 2\nB.\nPAGES 2-3\nPanel 1\nC.\n"
        "PAGE 4\nPanel 1\nD.\nPanel 2\nMAREN: only words\n"
        "CHAPTER 2\nPAGE 1\nPanel 1\nE.\n",
    )
    listing = write(tmp_path, "list.csv", "prompt,images\none,3\ntwo,x\nthree,2\n")
    report = format_validation_report(load_prompt_files([script, listing]))
    assert report.splitlines() == [
        f"{script}",
        "  format: fullscript",
        "  prompts: 5",
        "  Chapter 1: 4 panels on 3 pages (p1: 2, p2-3: 1, p4: 1)",
        "  Chapter 2: 1 panel on 1 page (p1: 1)",
        "  images wanted: 5",
        "  1 warning:",
        f"    {script}:13: warning: panel 2 on page 4 has lettering but no description; the "
        "prompt would be empty, so it is skipped",
        "",
        f"{listing}",
        "  format: csv",
        "  prompts: 2",
        "  images wanted: 5",
        "  1 error:",
        f"    {listing}:3: field 'images': expected an integer, got 'x'",
        "",
        "FAILED: 7 prompts, 10 images wanted, from 2 files; 1 error, 1 warning",
    ]


def test_long_chapters_are_abbreviated() -> None:
    specs = [_spec("1", page) for page in range(1, 21) for _ in range(2)]
    report = format_validation_report(ImportResult(specs=specs, format_by_file={"f": "csv"}))
    assert (
        "  Chapter 1: 40 panels on 20 pages (p1: 2, p2: 2, p3: 2, p4: 2, p5: 2, p6: 2, p7: 2, "
        "p8: 2, p9: 2, p10: 2, p11: 2, p12: 2, …)" in report.splitlines()
    )
    assert (
        report.splitlines()[-1] == "OK: 40 prompts, 40 images wanted, from 1 file; 0 errors, "
        "0 warnings"
    )


def test_named_chapters_and_missing_pages() -> None:
    specs = [_spec("Prologue", None), _spec(None, 3), _spec("2", None)]
    lines = format_validation_report(ImportResult(specs=specs, format_by_file={"f": "md"}))
    assert "  Prologue: 1 panel" in lines.splitlines()
    assert "  No chapter: 1 panel on 1 page (p3: 1)" in lines.splitlines()
    assert "  Chapter 2: 1 panel" in lines.splitlines()


def test_errors_are_capped_across_the_report() -> None:
    issues = [ImportIssue("a", n, f"bad {n}") for n in range(1, 8)]
    issues += [ImportIssue("b", 1, "bad too")]
    result = ImportResult(issues=issues, format_by_file={"a": "csv", "b": "json"})
    lines = format_validation_report(result, max_errors=5).splitlines()
    assert lines[lines.index("  7 errors:") + 1 : lines.index("  7 errors:") + 7] == [
        "    a:1: bad 1",
        "    a:2: bad 2",
        "    a:3: bad 3",
        "    a:4: bad 4",
        "    a:5: bad 5",
        "    … and 2 more errors",
    ]
    assert "    … and 1 more error" in lines
    assert lines[-1] == "FAILED: 0 prompts, 0 images wanted, from 2 files; 8 errors, 0 warnings"


def test_unreadable_file_appears_in_the_report(tmp_path: Path) -> None:
    result = load_prompt_files([tmp_path / "missing.md"])
    report = format_validation_report(result).splitlines()
    assert report[:4] == [
        str(tmp_path / "missing.md"),
        "  format: markdown",
        "  prompts: 0",
        "  images wanted: 0",
    ]
    assert f"    {tmp_path / 'missing.md'}: file not found" in report


def test_empty_result() -> None:
    assert format_validation_report(ImportResult()) == (
        "FAILED: 0 prompts, 0 images wanted, from 0 files; 0 errors, 0 warnings"
    )


def test_the_stopping_line_is_never_hidden_behind_the_error_cap(tmp_path: Path) -> None:
    from novelgen_desktop.prompts import format_validation_report, load_prompt_files

    path = tmp_path / "bad.csv"
    path.write_text("prompt,priority\n" + "".join(f"p{i},high\n" for i in range(80)), "utf-8")
    report = format_validation_report(load_prompt_files([path]))
    assert report.splitlines()[-3].endswith("bad.csv: too many errors; stopping after 50")
    assert "… and" not in report
