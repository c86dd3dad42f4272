"""Issues, the import error, the import result, and the per-file issue collector.

A script of a thousand panels with twelve mistakes should be fixed in one editing pass, so
importers never stop at the first problem: they report every issue (up to a cap) through an
:class:`IssueSink`, and only the caller decides whether the issues are fatal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.prompts.model import PromptSpec

ERROR = "error"
WARNING = "warning"


@dataclasses.dataclass(frozen=True)
class ImportIssue:
    """One problem found in one input file, located as precisely as the format allows.

    ``str()`` gives the ``file:line[:col]: field 'x': message`` form that editors and terminals
    turn into clickable links; warnings say ``warning:`` so they can't be mistaken for errors.
    """

    file: str
    line: int | None
    message: str
    column: int | None = None
    field: str | None = None
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity != WARNING

    def __str__(self) -> str:
        location = self.file
        if self.line is not None:
            location += f":{self.line}"
            if self.column is not None:
                location += f":{self.column}"
        parts = [location]
        if self.severity == WARNING:
            parts.append("warning")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)


class PromptImportError(NovelGenError):
    """The input cannot become a job; ``issues`` lists everything wrong, not just the first."""

    def __init__(self, issues: Sequence[ImportIssue]) -> None:
        self.issues: list[ImportIssue] = list(issues)
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.issues:
            return "prompt import failed"
        return "\n".join(str(issue) for issue in self.issues)

    def __str__(self) -> str:
        return self._render()


@dataclasses.dataclass
class ImportResult:
    """Everything an import produced, good and bad, so a validator can show both at once.

    ``specs`` holds the prompts that passed validation even when other parts of a file failed:
    ``novelgen validate`` counts them, while :func:`require_prompts` refuses the whole set.
    ``job_metadata`` keeps per-file front matter (a Full Script's ``TITLE:``/``BY:`` block, a
    JSON file's extra top-level keys) that describes the job rather than any panel.
    """

    specs: list[PromptSpec] = dataclasses.field(default_factory=list)
    issues: list[ImportIssue] = dataclasses.field(default_factory=list)
    format_by_file: dict[str, str] = dataclasses.field(default_factory=dict)
    job_metadata: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def errors(self) -> list[ImportIssue]:
        return [issue for issue in self.issues if issue.is_error]

    @property
    def warnings(self) -> list[ImportIssue]:
        return [issue for issue in self.issues if not issue.is_error]

    @property
    def ok(self) -> bool:
        """True when nothing is fatal (there may still be zero prompts)."""
        return not self.errors

    def extend(self, other: ImportResult) -> None:
        self.specs.extend(other.specs)
        self.issues.extend(other.issues)
        self.format_by_file.update(other.format_by_file)
        self.job_metadata.update(other.job_metadata)


class TooManyErrorsError(Exception):
    """Internal: unwinds a parser once a file has produced ``max_errors`` errors.

    Past that point the rest of the list is noise (usually one systematic mistake, such as the
    wrong delimiter), and stopping keeps a 20 MB file of garbage from producing 20 MB of
    messages. Never escapes the loader.
    """


class IssueSink:
    """Collects one file's issues and enforces the per-file caps."""

    def __init__(self, file: str, max_errors: int = 50) -> None:
        self.file = file
        self.max_errors = max(1, max_errors)
        # Warnings never stop a parse, but a script with hundreds of empty panels should not
        # bury its errors, so they are capped at the same size and summarised.
        self.max_warnings = self.max_errors
        self.issues: list[ImportIssue] = []
        self.error_count = 0
        self.warning_count = 0
        self._finished = False

    def error(
        self,
        line: int | None,
        message: str,
        *,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        """Record an error; raises :class:`TooManyErrorsError` when the cap is reached."""
        self.issues.append(ImportIssue(self.file, line, message, column, field, ERROR))
        self.error_count += 1
        if self.error_count >= self.max_errors:
            self.issues.append(
                ImportIssue(self.file, None, f"too many errors; stopping after {self.max_errors}")
            )
            raise TooManyErrorsError

    def warning(
        self,
        line: int | None,
        message: str,
        *,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.warning_count += 1
        if self.warning_count <= self.max_warnings:
            self.issues.append(ImportIssue(self.file, line, message, column, field, WARNING))

    def add(self, issue: ImportIssue) -> None:
        """Take an issue produced elsewhere (e.g. by the reader), counting it like our own."""
        if issue.is_error:
            self.error(issue.line, issue.message, column=issue.column, field=issue.field)
        else:
            self.warning(issue.line, issue.message, column=issue.column, field=issue.field)

    def finish(self) -> list[ImportIssue]:
        if not self._finished:
            self._finished = True
            hidden = self.warning_count - self.max_warnings
            if hidden > 0:
                self.issues.append(
                    ImportIssue(
                        self.file,
                        None,
                        f"{hidden} more warning{'s' if hidden != 1 else ''} not shown",
                        severity=WARNING,
                    )
                )
        return self.issues
