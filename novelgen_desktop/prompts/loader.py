"""Entry points: files or in-memory text in, :class:`ImportResult` out.

``load_prompt_files`` and ``parse_text`` never raise for anything in the input — a job
builder, a validator and a network endpoint all want the full list of issues, not the first
exception. ``require_prompts`` is the strict wrapper for code that can only proceed with a
clean set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from novelgen_desktop.prompts import detect
from novelgen_desktop.prompts.csvformat import parse_csv
from novelgen_desktop.prompts.fullscript import parse_fullscript
from novelgen_desktop.prompts.issues import (
    WARNING,
    ImportIssue,
    ImportResult,
    IssueSink,
    PromptImportError,
    TooManyErrorsError,
)
from novelgen_desktop.prompts.jsonformat import parse_json, parse_jsonl
from novelgen_desktop.prompts.markdown import parse_markdown
from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.prompts.plaintext import parse_plaintext
from novelgen_desktop.prompts.reader import DEFAULT_MAX_BYTES, check_prompt_text, read_prompt_file

Parser = Callable[[str, IssueSink, list[PromptSpec], dict[str, Any]], None]

_PARSERS: dict[str, Parser] = {
    detect.TEXT: parse_plaintext,
    detect.JSON: parse_json,
    detect.JSONL: parse_jsonl,
    detect.MARKDOWN: parse_markdown,
    detect.FULLSCRIPT: parse_fullscript,
}
UNKNOWN_FORMAT = "unknown"


def _parse_csv_for(filename: str) -> Parser:
    default = "\t" if filename.lower().endswith(".tsv") else ","

    def parse(text: str, sink: IssueSink, specs: list[PromptSpec], job: dict[str, Any]) -> None:
        parse_csv(text, sink, specs, job, default_delimiter=default)

    return parse


def _run_parser(fmt: str, filename: str, text: str, sink: IssueSink) -> ImportResult:
    specs: list[PromptSpec] = []
    job: dict[str, Any] = {}
    parser = _parse_csv_for(filename) if fmt == detect.CSV else _PARSERS[fmt]
    issues_before = len(sink.issues)
    try:
        parser(text, sink, specs, job)
    except TooManyErrorsError:
        pass
    except Exception as exc:  # a bug must not take the whole import (or the GUI) down
        message = f"internal error while reading this file ({type(exc).__name__}: {exc})"
        with contextlib.suppress(TooManyErrorsError):
            sink.error(None, message[:500] + "; please report it")
    if not text.strip():
        sink.warning(None, "file is empty")
    elif not specs and len(sink.issues) == issues_before:
        # Only when nothing else explains it: a parser's own message is more specific.
        sink.warning(None, "no prompts found in this file")
    result = ImportResult(specs=specs, issues=sink.finish(), format_by_file={filename: fmt})
    if job:
        result.job_metadata[filename] = job
    return result


def _resolve_format(format: str | None) -> tuple[str | None, str | None]:
    """(canonical format or None for auto-detection, error message)."""
    if format is None:
        return None, None
    canonical = detect.normalize_format(format)
    if canonical is None:
        return None, detect.unknown_format_message(format)
    return (None if canonical == detect.AUTO else canonical), None


def parse_text(
    text: str,
    *,
    filename: str,
    format: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_errors: int = 50,
) -> ImportResult:
    """Parse in-memory content (inline prompts from the API, pasted text in the GUI).

    ``format`` may be ``"auto"`` to detect it from ``filename`` and the content, like files.
    The same size limit and text checks as for files apply, measured in UTF-8 bytes.
    """
    sink = IssueSink(filename, max_errors)
    fmt, problem = _resolve_format(format)
    if problem is not None:
        return ImportResult(
            issues=[ImportIssue(filename, None, problem)],
            format_by_file={filename: UNKNOWN_FORMAT},
        )
    if len(text) > max_bytes // 4 and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        return ImportResult(
            issues=[
                ImportIssue(
                    filename, None, f"text is too large: more than {max_bytes:,} bytes as UTF-8"
                )
            ],
            format_by_file={filename: fmt or UNKNOWN_FORMAT},
        )
    try:
        clean = check_prompt_text(text, filename)
    except PromptImportError as exc:
        return ImportResult(issues=exc.issues, format_by_file={filename: fmt or UNKNOWN_FORMAT})
    if fmt is None:
        fmt = detect.detect_format(filename, clean)
    return _run_parser(fmt, filename, clean, sink)


def load_prompt_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_errors: int = 50,
) -> ImportResult:
    """Read, detect and parse every file; problems come back as issues, never as exceptions.

    ``max_errors`` applies per file. A path listed twice is read once (with a warning) so
    a shell glob overlapping an explicit name does not double a job.
    """
    result = ImportResult()
    fmt, problem = _resolve_format(format)
    seen: set[str] = set()
    for path in paths:
        name = os.fsdecode(os.fspath(path))
        if name in seen:
            result.issues.append(
                ImportIssue(name, None, "listed more than once; read only once", severity=WARNING)
            )
            continue
        seen.add(name)
        if problem is not None:
            result.issues.append(ImportIssue(name, None, problem))
            result.format_by_file[name] = UNKNOWN_FORMAT
            continue
        try:
            text = read_prompt_file(path, max_bytes=max_bytes, display_name=name)
        except PromptImportError as exc:
            result.issues.extend(exc.issues)
            guess = fmt or detect.format_from_extension(name)
            result.format_by_file[name] = guess or UNKNOWN_FORMAT
            continue
        sink = IssueSink(name, max_errors)
        if fmt is not None:
            file_format = fmt
        else:
            file_format = detect.detect_format(name, text)
            extension = os.path.splitext(name)[1]
            if extension and not detect.is_known_extension(extension):
                # A stray .py or .docx-as-text in a glob should not silently become prompts.
                sink.warning(
                    None,
                    f"'{extension}' is not a prompt file extension; read as {file_format} "
                    "(choose the format explicitly to silence this)",
                )
        result.extend(_run_parser(file_format, name, text, sink))
    return result


def require_prompts(
    paths: Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_errors: int = 50,
) -> list[PromptSpec]:
    """All prompts, or :class:`PromptImportError` if anything is fatal or nothing was found.

    The exception carries only the errors; warnings never block a job.
    """
    result = load_prompt_files(paths, format=format, max_bytes=max_bytes, max_errors=max_errors)
    errors = result.errors
    if errors:
        raise PromptImportError(errors)
    if not result.specs:
        names = [os.fsdecode(os.fspath(path)) for path in paths] or ["(no files)"]
        raise PromptImportError(
            [ImportIssue(name, None, "no prompts found") for name in dict.fromkeys(names)]
        )
    return result.specs
