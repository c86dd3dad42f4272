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

from novelgen_desktop.engine.composition import COMPOSITION_KEY
from novelgen_desktop.engine.model import DEFAULT_MAX_CHAT_TURNS, MAX_CHAT_TURNS, ChatStrategy
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.prompts.issues import WARNING, ImportIssue, PromptImportError
from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.style.bible import MAX_MAX_PROMPT_CHARS, StyleBible
from novelgen_desktop.style.composer import ComposedPrompt, ComposeError, Composer, panel_of


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
    specs: Sequence[PromptSpec],
    bible: StyleBible,
    *,
    max_errors: int = 200,
    check_chapters: bool = True,
) -> ComposeReport:
    """Compose every spec; a panel that cannot be composed is an error at its script line.

    ``check_chapters`` warns about bible chapters no panel belongs to (off when only some of a
    script's panels are composed)."""
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
                spec,
                text=composed.text,
                # Speakers the bible does not know are still in the panel (and the manifest).
                characters=(*composed.characters, *composed.unknown_cast),
                metadata=metadata,
            )
        )
        report.composed.append(composed)
    if errors > max_errors:
        report.issues.append(
            ImportIssue(specs[0].source.file, None, f"{errors - max_errors} more panels failed")
        )
    for label, chapter in bible.chapters.items():
        if check_chapters and specs and label.casefold() not in chapters_seen:
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


@dataclasses.dataclass(frozen=True)
class StyledJob:
    """What a job is created from when it has a bible or a chat strategy: composed specs,
    the job settings that record both, and the reference images to copy into the job."""

    specs: list[PromptSpec]
    settings: dict[str, Any]
    references: tuple[tuple[str, str, str], ...]
    report: ComposeReport | None


def style_job(
    specs: Sequence[PromptSpec],
    bible: StyleBible | None,
    chat_strategy: ChatStrategy | str = ChatStrategy.PANEL,
    max_chat_turns: int = DEFAULT_MAX_CHAT_TURNS,
) -> StyledJob:
    """Compose ``specs`` with ``bible`` (if any) and check the chat settings.

    Raises :class:`PromptImportError` listing every panel that cannot be composed (nothing is
    created then), :class:`ConfigError` for a bad strategy or turn count.
    """
    try:
        strategy = ChatStrategy(chat_strategy)
    except ValueError:
        raise ConfigError(
            f"chat strategy {chat_strategy!r}: expected one of "
            + ", ".join(s.value for s in ChatStrategy)
        ) from None
    if isinstance(max_chat_turns, bool) or not 1 <= max_chat_turns <= MAX_CHAT_TURNS:
        raise ConfigError(f"max chat turns {max_chat_turns!r}: expected 1 to {MAX_CHAT_TURNS}")
    settings: dict[str, Any] = {"chat_strategy": strategy.value}
    if strategy is not ChatStrategy.PANEL:
        settings["max_chat_turns"] = max_chat_turns
    if bible is None:
        styled = [_with_panel_style(spec) for spec in specs]
        too_long = [
            ImportIssue(
                spec.source.file,
                spec.source.line,
                f"the prompt with its style is {len(spec.text)} characters; at most "
                f"{MAX_MAX_PROMPT_CHARS} can be sent",
                field="style",
            )
            for spec in styled
            if len(spec.text) > MAX_MAX_PROMPT_CHARS
        ]
        if too_long:
            raise PromptImportError(too_long)
        return StyledJob(styled, settings, (), None)
    report = compose_specs(specs, bible)
    if report.errors:
        raise PromptImportError(report.errors)
    settings["style_bible"] = {
        "name": bible.name,
        "version": bible.version,
        "file": bible.source,
    }
    used = {ref["sha256"] for spec in report.specs for ref in _references_of(spec)}
    references = tuple(
        (ref.sha256, ref.mime, ref.path)
        for sha, ref in sorted(bible.all_references().items())
        if sha in used
    )
    return StyledJob(report.specs, settings, references, report)


def _with_panel_style(spec: PromptSpec) -> PromptSpec:
    """Without a bible a panel's own ``style`` (a CSV column, the import dialog's default
    style) is still part of what is asked for: it follows the description."""
    if not spec.style:
        return spec
    text = f"{spec.text}\n\nStyle: {spec.style.strip().rstrip('.')}."
    metadata = {**spec.metadata, COMPOSITION_KEY: {"description": spec.text}}
    return dataclasses.replace(spec, text=text, metadata=metadata)


def _references_of(spec: PromptSpec) -> list[dict[str, str]]:
    composition = spec.metadata.get(COMPOSITION_KEY) or {}
    return list(composition.get("references", ()))
