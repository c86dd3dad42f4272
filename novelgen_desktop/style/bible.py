"""The style bible as data: global style, negatives, the cast, places and props, per chapter.

A graphic novel fails when panel 2,400 does not look like panel 1, so the look of a book is
written down once (a TOML file, see ``docs/style-bible.md``) and every prompt is composed
from it. These types hold only what was validated by :mod:`novelgen_desktop.style.loader`;
they do no I/O, so the composer that uses them stays pure and deterministic.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

STYLE_FIELDS: tuple[str, ...] = ("medium", "palette", "line_work", "lighting", "aspect", "extra")
"""The global style, in the order the composed prompt states it."""

DEFAULT_MAX_PROMPT_CHARS = 4000
"""ChatGPT's image tool rewrites long prompts and ignores what does not fit: 4,000 characters
is what it takes reliably (the DALL·E 3 limit), and the default every bible starts from."""
MIN_MAX_PROMPT_CHARS = 200
MAX_MAX_PROMPT_CHARS = 32_000  # the protocol's MAX_PROMPT_CHARS
DEFAULT_MAX_REFERENCES = 4


class EntityKind(enum.StrEnum):
    """What a named entry of the bible is: it decides its section of the composed prompt."""

    CHARACTER = "character"
    LOCATION = "location"
    PROP = "prop"

    @property
    def table(self) -> str:
        """The TOML table the entries of this kind live in (``characters``...)."""
        return f"{self.value}s"


class LinkMode(enum.StrEnum):
    """How panels pick up an entry: ``auto`` also by its name in the text, ``mention`` only by
    ``@Name`` (or the script casting it): for names that are ordinary words (``Will``)."""

    AUTO = "auto"
    MENTION = "mention"


@dataclass(frozen=True, slots=True)
class ReferenceImage:
    """A reference image of an entry, checked when the bible was loaded.

    ``path`` is absolute; ``sha256`` names the bytes everywhere after (the job's copy, the
    protocol's ``reference_image``), so a file edited after submission cannot change a job.
    """

    path: str
    name: str
    sha256: str
    mime: str
    size: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Entity:
    """A character, location or prop: its canonical sheet and how the text may name it."""

    kind: EntityKind
    name: str
    description: str
    aliases: tuple[str, ...] = ()
    short: str | None = None  # a shorter sheet, used when the prompt would be too long
    references: tuple[ReferenceImage, ...] = ()
    link: LinkMode = LinkMode.AUTO
    line: int | None = None  # where it is defined in the bible

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class EntityOverride:
    """A chapter's change to one entry (a costume, an injury, a repainted boat)."""

    description: str | None = None
    short: str | None = None
    references: tuple[ReferenceImage, ...] | None = None


@dataclass(frozen=True, slots=True)
class ChapterOverride:
    """What differs in one chapter: style fields, extra negatives, a default location, sheets."""

    label: str
    style: Mapping[str, str] = field(default_factory=dict)
    negative: tuple[str, ...] = ()
    location: str | None = None  # canonical name of the chapter's default setting
    entities: Mapping[str, EntityOverride] = field(default_factory=dict)  # by canonical name
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ChapterStyle:
    """The bible as it applies to one chapter: overrides merged in (see ``StyleBible.chapter``)."""

    style: Mapping[str, str]
    negative: tuple[str, ...]
    location: str | None
    entities: Mapping[str, Entity]  # casefolded canonical name -> entity


@dataclass(frozen=True, slots=True)
class StyleBible:
    """One book's look. ``version`` identifies the content: two bibles with the same version
    compose the same prompts (it hashes every field and every reference image's bytes)."""

    name: str
    style: Mapping[str, str]
    negative: tuple[str, ...]
    entities: tuple[Entity, ...]
    chapters: Mapping[str, ChapterOverride] = field(default_factory=dict)
    label: str | None = None  # the author's own version label (``version = "3"``)
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    max_references: int = DEFAULT_MAX_REFERENCES
    source: str | None = None  # the file it came from
    content_hash: str = ""

    @property
    def version(self) -> str:
        """What is recorded on every attempt and manifest row: ``3+1a2b3c4d5e6f``, or the
        content hash alone when the author gave no label."""
        return f"{self.label}+{self.content_hash}" if self.label else self.content_hash

    def entity(self, name: str) -> Entity | None:
        key = name.casefold()
        for entity in self.entities:
            if entity.name.casefold() == key:
                return entity
        return None

    def by_kind(self, kind: EntityKind) -> Iterator[Entity]:
        return (entity for entity in self.entities if entity.kind is kind)

    def chapter_override(self, label: str | None) -> ChapterOverride | None:
        if label is None:
            return None
        found = self.chapters.get(label)
        if found is not None:
            return found
        key = label.casefold()
        return next((c for k, c in self.chapters.items() if k.casefold() == key), None)

    def chapter(self, label: str | None) -> ChapterStyle:
        """The global style with chapter ``label``'s overrides applied (style fields replace,
        negatives add, entity sheets replace field by field; a changed description drops the
        book's short sheet unless the chapter gives its own)."""
        override = self.chapter_override(label)
        entities = {entity.name.casefold(): entity for entity in self.entities}
        if override is None:
            return ChapterStyle(dict(self.style), self.negative, None, entities)
        style = {**self.style, **override.style}
        negative = tuple(dict.fromkeys((*self.negative, *override.negative)))
        for name, change in override.entities.items():
            base = entities[name.casefold()]
            entities[name.casefold()] = replace(
                base,
                description=change.description or base.description,
                # A new description without its own short sheet must not fall back to the
                # book's (it would describe the old look): the composer cuts the new one.
                short=change.short
                if change.short is not None or change.description is not None
                else base.short,
                references=base.references if change.references is None else change.references,
            )
        return ChapterStyle(style, negative, override.location, entities)

    def all_references(self) -> dict[str, ReferenceImage]:
        """Every reference image, chapter overrides included, by sha256."""
        found: dict[str, ReferenceImage] = {}
        for entity in self.entities:
            for ref in entity.references:
                found.setdefault(ref.sha256, ref)
        for chapter in self.chapters.values():
            for change in chapter.entities.values():
                for ref in change.references or ():
                    found.setdefault(ref.sha256, ref)
        return found


def _reference_data(ref: ReferenceImage) -> dict[str, Any]:
    # The bytes (sha256) and the name the page sees matter; where the file lies does not.
    return {"name": ref.name, "sha256": ref.sha256}


def content_hash(bible: StyleBible) -> str:
    """12 hex digits of a SHA-256 over everything that changes a composed prompt or an
    attachment, in a canonical JSON form (so key order and whitespace in the file do not)."""

    def entity_data(entity: Entity) -> dict[str, Any]:
        return {
            "kind": entity.kind.value,
            "name": entity.name,
            "description": entity.description,
            "aliases": list(entity.aliases),
            "short": entity.short,
            "references": [_reference_data(r) for r in entity.references],
            "link": entity.link.value,
        }

    def chapter_data(chapter: ChapterOverride) -> dict[str, Any]:
        return {
            "style": dict(sorted(chapter.style.items())),
            "negative": list(chapter.negative),
            "location": chapter.location,
            "entities": {
                name: {
                    "description": change.description,
                    "short": change.short,
                    "references": None
                    if change.references is None
                    else [_reference_data(r) for r in change.references],
                }
                for name, change in sorted(chapter.entities.items())
            },
        }

    data = {
        "style": dict(sorted(bible.style.items())),
        "negative": list(bible.negative),
        # Sorted: the order of the tables in the file changes no prompt, so not the version.
        "entities": [
            entity_data(e)
            for e in sorted(bible.entities, key=lambda e: (e.kind.value, e.name.casefold()))
        ],
        "chapters": {label: chapter_data(c) for label, c in sorted(bible.chapters.items())},
        "max_prompt_chars": bible.max_prompt_chars,
        "max_references": bible.max_references,
    }
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
