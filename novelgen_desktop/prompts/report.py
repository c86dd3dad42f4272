"""What ``novelgen validate`` prints: enough to see at a glance that the book was read right.

Before spending money on 3,000 images a writer wants to check that the tool saw the same
book they wrote — the right chapters, pages and panel counts — and what it complained about.
"""

from __future__ import annotations

from collections.abc import Iterable

from novelgen_desktop.prompts.issues import ImportIssue, ImportResult
from novelgen_desktop.prompts.model import PromptSpec

MAX_PAGES_SHOWN = 12


def summarize(specs: Iterable[PromptSpec]) -> list[tuple[str | None, int | None, int]]:
    """``(chapter, page, prompt count)`` per page, in order of first appearance."""
    counts: dict[tuple[str | None, int | None], int] = {}
    for spec in specs:
        key = (spec.chapter, spec.page)
        counts[key] = counts.get(key, 0) + 1
    return [(chapter, page, count) for (chapter, page), count in counts.items()]


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _chapter_name(label: str | None) -> str:
    if label is None:
        return "No chapter"
    return f"Chapter {label}" if label.isdigit() else label


def _chapter_lines(specs: list[PromptSpec]) -> list[str]:
    chapters: dict[str | None, dict[int | None, int]] = {}
    spreads: dict[tuple[str | None, int | None], object] = {}
    for spec in specs:
        pages = chapters.setdefault(spec.chapter, {})
        pages[spec.page] = pages.get(spec.page, 0) + 1
        if "spread_to" in spec.metadata:
            spreads[(spec.chapter, spec.page)] = spec.metadata["spread_to"]
    if list(chapters) == [None] and list(chapters[None]) == [None]:
        return []  # a plain list: nothing to break down
    lines: list[str] = []
    for chapter, pages in chapters.items():
        total = sum(pages.values())
        numbered = [(page, count) for page, count in pages.items() if page is not None]
        line = f"{_chapter_name(chapter)}: {_plural(total, 'panel')}"
        if numbered:
            line += f" on {_plural(len(numbered), 'page')}"
            shown = []
            for page, count in numbered[:MAX_PAGES_SHOWN]:
                spread = spreads.get((chapter, page))
                label = f"p{page}-{spread}" if spread is not None else f"p{page}"
                shown.append(f"{label}: {count}")
            if len(numbered) > MAX_PAGES_SHOWN:
                shown.append("…")
            line += f" ({', '.join(shown)})"
        lines.append(line)
    return lines


def format_validation_report(result: ImportResult, *, max_errors: int = 50) -> str:
    """Per file: format, prompt count, chapters/pages, images; then warnings and errors.

    ``max_errors`` caps the error (and, separately, warning) lines across the whole report,
    because a thousand identical errors hide the one line that explains them.
    """
    files = list(result.format_by_file)
    for issue in result.issues:
        if issue.file not in result.format_by_file and issue.file not in files:
            files.append(issue.file)
    by_file: dict[str, list[PromptSpec]] = {name: [] for name in files}
    for spec in result.specs:
        by_file.setdefault(spec.source.file, []).append(spec)
    issues_by_file: dict[str, list[ImportIssue]] = {name: [] for name in by_file}
    for issue in result.issues:
        issues_by_file.setdefault(issue.file, []).append(issue)

    out: list[str] = []
    budget = {"error": max(0, max_errors), "warning": max(0, max_errors)}

    def listing(kind: str, issues: list[ImportIssue]) -> None:
        if not issues:
            return
        # "too many errors; stopping" says the file was not read to the end: never hide it.
        stops = [i for i in issues if i.line is None and i.message.startswith("too many errors")]
        issues = [i for i in issues if i not in stops]
        out.append(f"  {_plural(len(issues), kind)}:")
        shown = issues[: budget[kind]]
        budget[kind] -= len(shown)
        out.extend(f"    {issue}" for issue in shown)
        hidden = len(issues) - len(shown)
        if hidden:
            out.append(f"    … and {_plural(hidden, 'more ' + kind)}")
        out.extend(f"    {issue}" for issue in stops)

    for name, specs in by_file.items():
        fmt = result.format_by_file.get(name, "unknown")
        images = sum(spec.images for spec in specs)
        out.append(f"{name}")
        out.append(f"  format: {fmt}")
        out.append(f"  prompts: {len(specs):,}")
        out.extend(f"  {line}" for line in _chapter_lines(specs))
        out.append(f"  images wanted: {images:,}")
        file_issues = issues_by_file.get(name, [])
        listing("warning", [issue for issue in file_issues if not issue.is_error])
        listing("error", [issue for issue in file_issues if issue.is_error])
        out.append("")

    total_images = sum(spec.images for spec in result.specs)
    errors, warnings = len(result.errors), len(result.warnings)
    verdict = "OK" if not errors and result.specs else "FAILED"
    out.append(
        f"{verdict}: {_plural(len(result.specs), 'prompt')}, {_plural(total_images, 'image')} "
        f"wanted, from {_plural(len(by_file), 'file')}; "
        f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"
    )
    return "\n".join(out)
