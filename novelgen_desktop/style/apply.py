"""Composing a whole script with a bible: the specs a job is made of, and a report.

A job stores the *composed* text as each task's prompt (what is sent, every attempt, every
regeneration) and keeps how it was composed in ``metadata["composition"]``: the panel's own
description, the bible's name and version, the reference images, what was trimmed. So a job
never depends on the bible file again: editing the bible changes the next job, not this one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from novelgen_desktop.prompts.issues import WARNING, ImportIssue
from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.style.bible import StyleBible
from novelgen_desktop.style.composer import ComposedPrompt, ComposeError, Composer, panel_of

COMPOSITION_KEY = "composition"


@dataclasses.dataclass
class ComposeReport:
    """Composed specs (in script order, only those that composed) and every issue found."""

    specs: list[PromptSpec] = dataclasses.field(default_factory=list)
    composed: list[ComposedPrompt] = dataclasses.field(default_factory=list)
    issues: list[ImportIssue] = dataclasses.field(default_factory=list)

    @property
    def errors(self) -> list[ImportIssue]:
        return [issue for issue in self.issues if issue.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors


def composition_metadata(composed: ComposedPrompt) -> dict[str, Any]:
    """What a task keeps about its composition (JSON-ready)."""
    data: dict[str, Any] = {
        "bible": composed.bible_name,
        "version": composed.bible_version,
        "description": composed.description,
        "characters": list(composed.characters),
    }
    if composed.locations:
        data["locations"] = list(composed.locations)
    if composed.props:
        data["props"] = list(composed.props)
    if composed.references:
        data["references"] = [
            {"sha256": r.sha256, "name": r.name, "mime": r.mime} for r in composed.references
        ]
    if composed.trimmed:
        data["trimmed"] = list(composed.trimmed)
    return data


def compose_specs(
    specs: Sequence[PromptSpec], bible: StyleBible, *, max_errors: int = 200
) -> ComposeReport:
    """Compose every spec; a panel that cannot be composed is an error at its script line."""
    composer = Composer(bible)
    report = ComposeReport()
    errors = 0
    chapters_seen: set[str] = set()
    for spec in specs:
        if spec.chapter is not None:
            chapters_seen.add(spec.chapter.casefold())
        try:
            composed = composer.compose(panel_of(spec))
        except ComposeError as exc:
            errors += 1
            if errors <= max_errors:
                report.issues.append(
                    ImportIssue(spec.source.file, spec.source.line, str(exc), field="text")
                )
            continue
        for warning in composed.warnings:
            report.issues.append(
                ImportIssue(spec.source.file, spec.source.line, warning, severity=WARNING)
            )
        metadata = {**spec.metadata, COMPOSITION_KEY: composition_metadata(composed)}
        report.specs.append(
            dataclasses.replace(
                spec, text=composed.text, characters=composed.characters, metadata=metadata
            )
        )
        report.composed.append(composed)
    if errors > max_errors:
        report.issues.append(
            ImportIssue(specs[0].source.file, None, f"{errors - max_errors} more panels failed")
        )
    for label, chapter in bible.chapters.items():
        if specs and label.casefold() not in chapters_seen:
            report.issues.append(
                ImportIssue(
                    bible.source or bible.name,
                    chapter.line,
                    f"chapter {label!r} matches no panel of the script (chapters: "
                    + (", ".join(sorted({s.chapter for s in specs if s.chapter})) or "none")
                    + ")",
                    field=f"chapters.{label}",
                    severity=WARNING,
                )
            )
    return report
