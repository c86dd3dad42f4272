"""The prompt composer: panel description + sheets + style + negatives → the exact text sent.

Pure and deterministic: the same panel and the same bible give the same text, byte for byte,
on any machine, which is what lets a regenerated panel match its neighbours and lets the
author read in ``novelgen compose`` exactly what ChatGPT will be sent.

Who is in a panel: every ``@Name`` (``@{Two Words}`` for names with spaces; a possessive
``@Isak's`` is Isak), every name or alias written in the text (as written in the bible, in
capitals as scripts introduce characters, or capitalised at the start of a sentence) unless
the entry says ``link = "mention"``, and everyone the script cast into the panel (speakers).
A panel without a location mention takes its chapter's default location.

Length: a prompt never exceeds the bible's ``max_prompt_chars``. When it would, parts are cut
in a fixed order, least important first, and each cut is reported (``ComposedPrompt.trimmed``)
— props shortened then dropped, the style's ``extra``, the setting shortened, negatives from
the end of the list, lighting, line work, palette, the setting itself, and last the character
sheets (their ``short`` sheet, then their first sentence, then the bare name). A character in
the panel is never dropped: if the description and the names alone do not fit, composing
fails with an error instead of sending a prompt that forgot someone.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.style.bible import (
    ChapterStyle,
    Entity,
    EntityKind,
    LinkMode,
    ReferenceImage,
    StyleBible,
)

_MENTION = re.compile(r"(?<![\w@.])@(?:\{([^{}\n]{1,64})\}|([^\W\d_][\w'’\-]*))")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


class ComposeError(ValueError):
    """A panel cannot be composed (an unknown ``@Name``, or it cannot fit the limit)."""


@dataclass(frozen=True, slots=True)
class PanelInput:
    """What the composer needs of a panel (a ``PromptSpec`` has all of it)."""

    text: str
    chapter: str | None = None
    characters: tuple[str, ...] = ()  # cast by the script (speakers, a characters column)
    style: str | None = None  # the panel's own style note (a CSV/JSON ``style`` field)


@dataclass(frozen=True, slots=True)
class ComposedPrompt:
    """The text to send and everything about how it was made (recorded with the task)."""

    text: str
    description: str  # the panel's own text, mentions resolved
    characters: tuple[str, ...]  # canonical names, in the order the prompt lists them
    locations: tuple[str, ...]
    props: tuple[str, ...]
    references: tuple[ReferenceImage, ...]
    bible_name: str
    bible_version: str
    trimmed: tuple[str, ...] = ()  # what was cut to fit, in order
    warnings: tuple[str, ...] = ()  # cast names the bible does not know, images left out
    unknown_cast: tuple[str, ...] = field(default=())


@dataclass
class _Sheet:
    """One entity's line, at its current level of detail."""

    entity: Entity
    level: int = 0  # 0 full, 1 short, 2 first sentence, 3 name only (characters); 3 = dropped

    def text(self) -> str | None:
        entity = self.entity
        if self.level == 0:
            return entity.description
        if self.level == 1:
            return entity.short or entity.description
        if self.level == 2:
            return _first_sentence(entity.short or entity.description)
        return None


def _first_sentence(text: str) -> str:
    parts = _SENTENCE_END.split(text, maxsplit=1)
    return parts[0]


@dataclass
class _Draft:
    description: str
    panel_style: str | None
    characters: list[_Sheet]
    locations: list[_Sheet]
    props: list[_Sheet]
    style: dict[str, str]
    negative: list[str]
    reference_names: dict[str, tuple[str, ...]]  # entity name -> its attached file names

    def render(self) -> str:
        blocks = [self.description]
        if self.panel_style:
            blocks.append(f"Panel style: {_sentence(self.panel_style)}")
        lines: list[str] = []
        if self.characters:
            lines.append("Characters:")
            for sheet in self.characters:
                lines.append(f"- {self._label(sheet.entity)}" + _colon(sheet.text()))
        for title, sheets in (("Setting", self.locations), ("Props", self.props)):
            kept = [s for s in sheets if s.level < 3]
            if kept:
                clauses = (self._label(s.entity) + _clause(s.text()) for s in kept)
                lines.append(f"{title}: " + "; ".join(clauses) + ".")
        style_parts = []
        for key, label in (
            ("medium", ""),
            ("palette", "palette: "),
            ("line_work", "line work: "),
            ("lighting", "lighting: "),
            ("extra", ""),
        ):
            if key in self.style:
                style_parts.append(label + self.style[key].rstrip("."))
        if style_parts:
            lines.append("Style: " + "; ".join(style_parts) + ".")
        if "aspect" in self.style:
            lines.append(f"Format: {_sentence(self.style['aspect'])}")
        if self.negative:
            lines.append("Avoid: " + ", ".join(n.rstrip(".") for n in self.negative) + ".")
        if lines:
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def _label(self, entity: Entity) -> str:
        files = self.reference_names.get(entity.name)
        if files:
            noun = "reference image" if len(files) == 1 else "reference images"
            return f"{entity.name} ({noun}: {', '.join(files)})"
        return entity.name


def _colon(text: str | None) -> str:
    return f": {text}" if text else ""


def _clause(text: str | None) -> str:
    """A sheet inside a ``;``-separated line: its own full stop would read ``.;``."""
    return _colon(text.rstrip(".") if text else text)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


class Composer:
    """Composes panels for one bible (its name patterns compiled once)."""

    def __init__(self, bible: StyleBible) -> None:
        self.bible = bible
        self._by_name: dict[str, Entity] = {}
        for entity in bible.entities:
            for name in entity.names:
                self._by_name[_fold(name).casefold()] = entity
        # Characters link as written, in capitals or capitalised (a name may be a word:
        # "Will"); places and things are common nouns and link in any case ("the lamp room").
        variants: dict[str, Entity] = {}
        nouns: dict[str, Entity] = {}
        for entity in bible.entities:
            if entity.link is not LinkMode.AUTO:
                continue
            for name in map(_fold, entity.names):
                if entity.kind is EntityKind.CHARACTER:
                    for variant in (name, name.upper(), name[:1].upper() + name[1:]):
                        variants.setdefault(variant, entity)
                else:
                    nouns.setdefault(name.casefold(), entity)
        self._variants = variants
        self._nouns = nouns
        self._auto = _alternation(variants, 0)
        self._auto_nouns = _alternation(nouns, re.IGNORECASE)

    def resolve(self, name: str) -> Entity | None:
        return self._by_name.get(_fold(name.strip()).casefold())

    def suggestion(self, name: str) -> str:
        names = sorted({n for e in self.bible.entities for n in e.names})
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        close += [n for n in names if n.casefold().startswith(name.casefold()) and n not in close]
        if not close:
            return "known names: " + (", ".join(names[:12]) or "none")
        return "did you mean " + " or ".join(_mention(n) for n in close[:3]) + "?"

    def _resolve_mentions(self, text: str) -> tuple[str, list[tuple[int, Entity]]]:
        found: list[tuple[int, Entity]] = []
        unknown: list[str] = []
        pieces: list[str] = []
        last = 0
        for match in _MENTION.finditer(text):
            written = match.group(1) or match.group(2)
            suffix = ""
            if match.group(2) and written[-2:].lower() in ("'s", "’s"):
                written, suffix = written[:-2], written[-2:]
            stripped = written.rstrip("'’-")
            suffix = written[len(stripped) :] + suffix
            entity = self.resolve(stripped)
            if entity is None:
                unknown.append(stripped)
                continue
            pieces.append(text[last : match.start()])
            pieces.append(entity.name + suffix)
            found.append((len("".join(pieces)) - len(entity.name + suffix), entity))
            last = match.end()
        if unknown:
            raise ComposeError(
                "; ".join(
                    f"{_mention(name)} is not in style bible {self.bible.name!r} "
                    f"({self.suggestion(name)})"
                    for name in dict.fromkeys(unknown)
                )
            )
        pieces.append(text[last:])
        return "".join(pieces), found

    def _auto_links(self, text: str) -> list[tuple[int, Entity]]:
        text = _fold(text)  # same length: positions stay valid
        found: list[tuple[int, Entity]] = []
        taken: list[tuple[int, int]] = []
        if self._auto is not None:
            for match in self._auto.finditer(text):
                found.append((match.start(), self._variants[match.group(1)]))
                taken.append(match.span())
        if self._auto_nouns is not None:
            for match in self._auto_nouns.finditer(text):
                start, end = match.span()
                # "the Harbour Master" is a character, not also the harbour.
                if not any(start < t_end and t_start < end for t_start, t_end in taken):
                    found.append((start, self._nouns[match.group(1).casefold()]))
        return found

    def compose(self, panel: PanelInput) -> ComposedPrompt:
        """Compose one panel. Raises :class:`ComposeError` with a message for the author."""
        bible = self.bible
        chapter = bible.chapter(panel.chapter)
        description, mentioned = self._resolve_mentions(" ".join(panel.text.split()))
        linked = sorted([*mentioned, *self._auto_links(description)], key=lambda p: p[0])
        order: list[Entity] = []
        for _, entity in linked:
            if entity not in order:
                order.append(entity)
        warnings: list[str] = []
        unknown_cast: list[str] = []
        for name in panel.characters:
            cast = self.resolve(name)
            if cast is None:
                unknown_cast.append(name)
            elif cast not in order:
                order.append(cast)
        if unknown_cast:
            warnings.append(
                "not in the style bible (drawn without a sheet): " + ", ".join(unknown_cast)
            )
        sheets = {kind: [] for kind in EntityKind}  # type: dict[EntityKind, list[_Sheet]]
        for entity in order:
            current = chapter.entities[entity.name.casefold()]
            sheets[current.kind].append(_Sheet(current))
        if not sheets[EntityKind.LOCATION] and chapter.location is not None:
            sheets[EntityKind.LOCATION].append(
                _Sheet(chapter.entities[chapter.location.casefold()])
            )
        references, reference_names = self._references(sheets, warnings)
        draft = _Draft(
            description=description,
            panel_style=" ".join(panel.style.split()) if panel.style else None,
            characters=sheets[EntityKind.CHARACTER],
            locations=sheets[EntityKind.LOCATION],
            props=sheets[EntityKind.PROP],
            style=dict(chapter.style),
            negative=list(chapter.negative),
            reference_names=reference_names,
        )
        trimmed = _fit(draft, bible.max_prompt_chars, chapter)
        return ComposedPrompt(
            text=draft.render(),
            description=description,
            characters=tuple(s.entity.name for s in draft.characters),
            locations=tuple(s.entity.name for s in draft.locations if s.level < 3),
            props=tuple(s.entity.name for s in draft.props if s.level < 3),
            references=references,
            bible_name=bible.name,
            bible_version=bible.version,
            trimmed=tuple(trimmed),
            warnings=tuple(warnings),
            unknown_cast=tuple(unknown_cast),
        )

    def _references(
        self, sheets: dict[EntityKind, list[_Sheet]], warnings: list[str]
    ) -> tuple[tuple[ReferenceImage, ...], dict[str, tuple[str, ...]]]:
        limit = self.bible.max_references
        chosen: list[ReferenceImage] = []
        names: dict[str, tuple[str, ...]] = {}
        left_out: list[str] = []
        for kind in (EntityKind.CHARACTER, EntityKind.LOCATION, EntityKind.PROP):
            for sheet in sheets[kind]:
                files: list[str] = []
                for ref in sheet.entity.references:
                    if any(r.sha256 == ref.sha256 for r in chosen):
                        files.append(ref.name)
                    elif len(chosen) < limit:
                        chosen.append(ref)
                        files.append(ref.name)
                    else:
                        left_out.append(f"{ref.name} ({sheet.entity.name})")
                if files:
                    names[sheet.entity.name] = tuple(files)
        if left_out:
            warnings.append(
                f"reference images over the limit of {limit} not attached: " + ", ".join(left_out)
            )
        return tuple(chosen), names


def _fold(text: str) -> str:
    """Typographic apostrophes as plain ones, for matching names (O’Neill is O'Neill)."""
    return text.replace("’", "'")


def _alternation(names: dict[str, Entity], flags: int) -> re.Pattern[str] | None:
    """One pattern for whole-word matches of ``names``, longest first ("Old Tobias" wins over
    "Tobias" at the same place)."""
    if not names:
        return None
    ordered = sorted(names, key=lambda v: (-len(v), v))
    alternation = "|".join(re.escape(v) for v in ordered)
    return re.compile(r"(?<![\w@])(" + alternation + r")(?!\w)", flags)


def _mention(name: str) -> str:
    return f"@{name}" if re.fullmatch(r"[^\W\d_][\w'’\-]*", name) else f"@{{{name}}}"


def _fit(draft: _Draft, limit: int, chapter: ChapterStyle) -> list[str]:
    """Cut the draft, least important first, until it fits ``limit``; return what was cut."""
    trimmed: list[str] = []
    if len(draft.render()) <= limit:
        return trimmed

    def steps() -> Iterable[tuple[str, Callable[[], bool]]]:
        for sheet in reversed(draft.props):
            yield f"prop {sheet.entity.name}: short sheet", _level(sheet, 1)
        for sheet in reversed(draft.props):
            yield f"prop {sheet.entity.name}: left out", _level(sheet, 3)
        yield "style: extra", _drop_style(draft, "extra")
        for sheet in reversed(draft.locations):
            yield f"setting {sheet.entity.name}: short sheet", _level(sheet, 1)
        for kept in range(len(draft.negative) - 1, 0, -1):
            yield f"avoid: {draft.negative[kept]!r}", _keep_negatives(draft, kept)
        yield "style: lighting", _drop_style(draft, "lighting")
        yield "style: line work", _drop_style(draft, "line_work")
        yield "style: palette", _drop_style(draft, "palette")
        for sheet in reversed(draft.locations):
            yield f"setting {sheet.entity.name}: left out", _level(sheet, 3)
        for level, what in ((1, "short sheet"), (2, "first sentence"), (3, "name only")):
            for sheet in reversed(draft.characters):
                yield f"character {sheet.entity.name}: {what}", _level(sheet, level)

    for what, apply in steps():
        if apply():
            trimmed.append(what)
            if len(draft.render()) <= limit:
                return trimmed
    raise ComposeError(
        f"the composed prompt is {len(draft.render())} characters even with every sheet cut "
        f"down to the names; the bible allows {limit} (max_prompt_chars): shorten the panel "
        f"description ({len(draft.description)} characters) or raise max_prompt_chars"
    )


def _level(sheet: _Sheet, level: int) -> Callable[[], bool]:
    def apply() -> bool:
        before = sheet.text()
        if sheet.level >= level:
            return False
        sheet.level = level
        return sheet.text() != before or level == 3

    return apply


def _drop_style(draft: _Draft, key: str) -> Callable[[], bool]:
    def apply() -> bool:
        return draft.style.pop(key, None) is not None

    return apply


def _keep_negatives(draft: _Draft, count: int) -> Callable[[], bool]:
    def apply() -> bool:
        if len(draft.negative) <= count:
            return False
        del draft.negative[count:]
        return True

    return apply


def compose(panel: PanelInput, bible: StyleBible) -> ComposedPrompt:
    """One-off composition; build a :class:`Composer` to compose many panels."""
    return Composer(bible).compose(panel)


def panel_of(spec: PromptSpec) -> PanelInput:
    """The composer's view of a parsed panel."""
    return PanelInput(
        text=spec.text, chapter=spec.chapter, characters=spec.characters, style=spec.style
    )
