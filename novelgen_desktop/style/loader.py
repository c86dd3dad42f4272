"""Reading and validating a style bible file (TOML).

Every problem is reported at once, each with ``file:line``, the field and what was expected,
the way the prompt importers do: a bible with six mistakes is fixed in one editing pass.
Unknown keys are errors (a typo such as ``colour`` must not be silently ignored: the book
would be drawn without it). Reference images are opened and checked here, once, so that a
missing or broken file is found before a job is created, not at panel 2,400.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from novelgen_desktop.engine.model import MAX_REFERENCE_BYTES, MAX_REFERENCES
from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.output.imagecheck import InvalidImageError, inspect_image
from novelgen_desktop.prompts.issues import ImportIssue, IssueSink, TooManyErrorsError
from novelgen_desktop.style.bible import (
    DEFAULT_MAX_PROMPT_CHARS,
    DEFAULT_MAX_REFERENCES,
    MAX_MAX_PROMPT_CHARS,
    MIN_MAX_PROMPT_CHARS,
    STYLE_FIELDS,
    ChapterOverride,
    Entity,
    EntityKind,
    EntityOverride,
    LinkMode,
    ReferenceImage,
    StyleBible,
    content_hash,
)
from novelgen_desktop.style.toml_lines import KeyPath, key_lines, line_of

MAX_BIBLE_BYTES = 4 * 2**20
MAX_TEXT_CHARS = 4000  # one description; the whole prompt has its own limit
_NAME_RE = re.compile(r"[^\W\d_](?:[\w .'’&-]{0,62}[\w.])?")
_NAME_RULE = (
    "must start with a letter, end with a letter, digit or '.', and be at most 64 letters, "
    "digits, spaces or . ' & -"
)
_SYNTAX_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")

_TOP_KEYS = ("bible", "style", "negative", "characters", "locations", "props", "chapters")
_BIBLE_KEYS = ("name", "version", "max_prompt_chars", "max_references")
_ENTITY_KEYS = ("description", "short", "aliases", "references", "link")
_OVERRIDE_KEYS = ("description", "short", "references")
_CHAPTER_KEYS = ("style", "location", "characters", "locations", "props")
_MIME_BY_FORMAT = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class StyleBibleError(NovelGenError):
    """The bible cannot be used; ``issues`` lists everything wrong with it."""

    def __init__(self, issues: list[ImportIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues) or "invalid style bible")


def _expected_keys(keys: tuple[str, ...]) -> str:
    return ", ".join(keys)


class _BibleReader:
    """One pass over the parsed TOML, reporting into an :class:`IssueSink`."""

    def __init__(self, file: str, text: str, base_dir: Path, sink: IssueSink) -> None:
        self.file = file
        self.base_dir = base_dir
        self.sink = sink
        self.lines = key_lines(text)
        self._reference_cache: dict[Path, ReferenceImage | None] = {}

    # -- reporting ----------------------------------------------------------------------

    def line(self, path: KeyPath) -> int | None:
        return line_of(self.lines, path)

    def error(self, path: KeyPath, message: str) -> None:
        self.sink.error(self.line(path), message, field=_dotted(path))

    def warning(self, path: KeyPath, message: str) -> None:
        self.sink.warning(self.line(path), message, field=_dotted(path))

    def check_keys(self, table: Mapping[str, Any], path: KeyPath, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                where = f"[{_dotted(path)}]" if path else "the top level"
                self.error(
                    (*path, key),
                    f"unknown key {key!r} in {where}; expected one of: {_expected_keys(allowed)}",
                )

    # -- values -------------------------------------------------------------------------

    def table(self, value: Any, path: KeyPath) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"expected a table, got {_kind(value)}")
            return {}
        return value

    def text(
        self, value: Any, path: KeyPath, *, required: bool = False, limit: int = MAX_TEXT_CHARS
    ) -> str | None:
        if value is None:
            if required:
                self.error(path, "is required")
            return None
        if not isinstance(value, str):
            self.error(path, f"expected text, got {_kind(value)}")
            return None
        cleaned = " ".join(value.split())
        if not cleaned:
            self.error(path, "must not be empty")
            return None
        if len(cleaned) > limit:
            self.error(path, f"is {len(cleaned)} characters long; at most {limit} allowed")
            return None
        return cleaned

    def text_list(self, value: Any, path: KeyPath) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.error(path, f"expected a list of text, got {_kind(value)}")
            return ()
        items: list[str] = []
        for index, item in enumerate(value):
            cleaned = self.text(item, (*path, index), limit=500)
            if cleaned is not None and cleaned not in items:
                items.append(cleaned)
        return tuple(items)

    def integer(self, value: Any, path: KeyPath, default: int, low: int, high: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"expected a whole number from {low} to {high}, got {_kind(value)}")
            return default
        if not low <= value <= high:
            self.error(path, f"expected a whole number from {low} to {high}, got {value}")
            return default
        return value

    def reference(self, value: Any, path: KeyPath) -> ReferenceImage | None:
        if not isinstance(value, str) or not value.strip():
            self.error(path, f"expected the path of an image file, got {_kind(value)}")
            return None
        target = Path(value.strip()).expanduser()
        if not target.is_absolute():
            target = self.base_dir / target
        target = target.resolve()
        if target in self._reference_cache:
            return self._reference_cache[target]
        found = self._read_reference(target, value, path)
        self._reference_cache[target] = found
        return found

    def _read_reference(self, target: Path, written: str, path: KeyPath) -> ReferenceImage | None:
        if not target.is_file():
            self.error(path, f"reference image {written!r} not found (looked for {target})")
            return None
        try:
            size = target.stat().st_size
            if size > MAX_REFERENCE_BYTES:
                self.error(
                    path,
                    f"reference image {written!r} is {size:,} bytes; at most "
                    f"{MAX_REFERENCE_BYTES:,} (8 MiB) allowed",
                )
                return None
            data = target.read_bytes()
        except OSError as exc:
            self.error(path, f"reference image {written!r} cannot be read: {exc.strerror or exc}")
            return None
        try:
            info = inspect_image(data, max_bytes=MAX_REFERENCE_BYTES)
        except InvalidImageError as exc:
            self.error(path, f"reference image {written!r} is not a PNG, JPEG or WebP: {exc}")
            return None
        return ReferenceImage(
            path=str(target),
            name=target.name,
            sha256=hashlib.sha256(data).hexdigest(),
            mime=_MIME_BY_FORMAT[info.format],
            size=len(data),
            width=info.width,
            height=info.height,
        )

    def references(self, value: Any, path: KeyPath) -> tuple[ReferenceImage, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.error(path, f"expected a list of image paths, got {_kind(value)}")
            return ()
        found: list[ReferenceImage] = []
        for index, item in enumerate(value):
            ref = self.reference(item, (*path, index))
            if ref is not None and all(r.sha256 != ref.sha256 for r in found):
                found.append(ref)
        return tuple(found)

    # -- sections -----------------------------------------------------------------------

    def style(self, value: Any, path: KeyPath) -> tuple[dict[str, str], tuple[str, ...]]:
        table = self.table(value, path)
        self.check_keys(table, path, (*STYLE_FIELDS, "negative"))
        style: dict[str, str] = {}
        for name in STYLE_FIELDS:
            cleaned = self.text(table.get(name), (*path, name), limit=1000)
            if cleaned is not None:
                style[name] = cleaned
        negative = self.text_list(table.get("negative"), (*path, "negative"))
        return style, negative

    def entities(self, data: Mapping[str, Any]) -> list[Entity]:
        found: list[Entity] = []
        for kind in EntityKind:
            section = self.table(data.get(kind.table), (kind.table,))
            for name, body in section.items():
                entity = self.entity(kind, name, body)
                if entity is not None:
                    found.append(entity)
        return found

    def entity(self, kind: EntityKind, name: str, body: Any) -> Entity | None:
        path: KeyPath = (kind.table, name)
        if not _NAME_RE.fullmatch(name):
            self.error(
                path,
                f"{kind.value} name {name!r} {_NAME_RULE}",
            )
            return None
        if isinstance(body, str):  # [characters] Maren = "description" shorthand
            body = {"description": body}
        table = self.table(body, path)
        if not isinstance(body, dict):
            return None  # reported: not a table (its missing description would be noise)
        self.check_keys(table, path, _ENTITY_KEYS)
        description = self.text(table.get("description"), (*path, "description"), required=True)
        short = self.text(table.get("short"), (*path, "short"))
        aliases = self.text_list(table.get("aliases"), (*path, "aliases"))
        for index, alias in enumerate(aliases):
            if not _NAME_RE.fullmatch(alias):
                self.error(
                    (*path, "aliases", index),
                    f"alias {alias!r} {_NAME_RULE}",
                )
        references = self.references(table.get("references"), (*path, "references"))
        link_value = table.get("link", LinkMode.AUTO.value)
        try:
            link = LinkMode(link_value)
        except ValueError:
            self.error((*path, "link"), f"expected 'auto' or 'mention', got {link_value!r}")
            link = LinkMode.AUTO
        if description is None:
            return None
        return Entity(
            kind=kind,
            name=name,
            description=description,
            aliases=tuple(a for a in aliases if a != name),
            short=short,
            references=references,
            link=link,
            line=self.line(path),
        )

    def check_names_unique(self, entities: list[Entity]) -> None:
        owner: dict[str, Entity] = {}
        for entity in entities:
            for written in entity.names:
                key = written.casefold()
                other = owner.get(key)
                if other is None:
                    owner[key] = entity
                elif other is not entity:
                    self.error(
                        (entity.kind.table, entity.name),
                        f"the name {written!r} is also used by {other.kind.value} "
                        f"{other.name!r} (line {other.line}); every name and alias must be unique",
                    )

    def chapters(self, value: Any, entities: list[Entity]) -> dict[str, ChapterOverride]:
        section = self.table(value, ("chapters",))
        by_name = {entity.name.casefold(): entity for entity in entities}
        chapters: dict[str, ChapterOverride] = {}
        for label, body in section.items():
            path: KeyPath = ("chapters", label)
            table = self.table(body, path)
            self.check_keys(table, path, _CHAPTER_KEYS)
            style, negative = self.style(table.get("style"), (*path, "style"))
            location = None
            written = self.text(table.get("location"), (*path, "location"), limit=64)
            if written is not None:
                entity = by_name.get(written.casefold())
                if entity is None or entity.kind is not EntityKind.LOCATION:
                    self.error(
                        (*path, "location"),
                        f"{written!r} is not a location of this bible; known: "
                        + (
                            ", ".join(e.name for e in entities if e.kind is EntityKind.LOCATION)
                            or "none"
                        ),
                    )
                else:
                    location = entity.name
            overrides: dict[str, EntityOverride] = {}
            for kind in EntityKind:
                kind_path: KeyPath = (*path, kind.table)
                for name, change in self.table(table.get(kind.table), kind_path).items():
                    entity = by_name.get(name.casefold())
                    if entity is None or entity.kind is not kind:
                        self.error(
                            (*kind_path, name),
                            f"chapter {label!r} changes {kind.value} {name!r}, which the bible "
                            f"does not define under [{kind.table}]",
                        )
                        continue
                    override = self.override((*kind_path, name), change)
                    if override is not None:
                        overrides[entity.name] = override
            chapters[label] = ChapterOverride(
                label=label,
                style=style,
                negative=negative,
                location=location,
                entities=overrides,
                line=self.line(path),
            )
        return chapters

    def override(self, path: KeyPath, value: Any) -> EntityOverride | None:
        if isinstance(value, str):
            value = {"description": value}
        table = self.table(value, path)
        self.check_keys(table, path, _OVERRIDE_KEYS)
        description = self.text(table.get("description"), (*path, "description"))
        short = self.text(table.get("short"), (*path, "short"))
        references = (
            self.references(table.get("references"), (*path, "references"))
            if "references" in table
            else None
        )
        if description is None and short is None and references is None:
            self.error(path, "changes nothing; give description, short or references")
            return None
        return EntityOverride(description=description, short=short, references=references)


def _dotted(path: KeyPath) -> str:
    parts = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _BARE_KEY.fullmatch(part):
            parts.append(f".{part}")
        else:
            parts.append(f'."{part}"')
    return "".join(parts).lstrip(".")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "text" if value.strip() else "empty text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if value is None:
        return "nothing"
    return type(value).__name__


def parse_style_bible(text: str, *, file: str, base_dir: Path, max_errors: int = 50) -> StyleBible:
    """Validate bible ``text`` (read from ``file``; reference paths are relative to
    ``base_dir``). Raises :class:`StyleBibleError` listing every problem."""
    sink = IssueSink(file, max_errors=max_errors)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        if Path(file).suffix.lower() in (".yaml", ".yml"):
            raise StyleBibleError(
                [
                    ImportIssue(
                        file,
                        None,
                        "style bibles are TOML files, not YAML: write the same keys as "
                        "[tables] and key = value lines (see docs/style-bible.md)",
                    )
                ]
            ) from None
        message = str(exc)
        position = _SYNTAX_POSITION.search(message)
        line = column = None
        if position:
            line, column = int(position.group(1)), int(position.group(2))
            message = message[: position.start()].rstrip()
        raise StyleBibleError(
            [ImportIssue(file, line, f"not valid TOML: {message}", column=column)]
        ) from None
    reader = _BibleReader(file, text, base_dir, sink)
    try:
        bible = _read(reader, data, file)
    except TooManyErrorsError:
        bible = None
    issues = sink.finish()
    errors = [issue for issue in issues if issue.is_error]
    if errors or bible is None:
        raise StyleBibleError(errors)
    return bible


def _read(reader: _BibleReader, data: dict[str, Any], file: str) -> StyleBible:
    reader.check_keys(data, (), _TOP_KEYS)
    header = reader.table(data.get("bible"), ("bible",))
    reader.check_keys(header, ("bible",), _BIBLE_KEYS)
    name = reader.text(header.get("name"), ("bible", "name"), limit=200)
    label_value = header.get("version")
    if isinstance(label_value, int) and not isinstance(label_value, bool):
        label_value = str(label_value)
    label = reader.text(label_value, ("bible", "version"), limit=64)
    if label is not None and not re.fullmatch(r"[\w.:-]+", label):
        reader.error(("bible", "version"), f"use letters, digits and . : - _ only, got {label!r}")
        label = None
    max_chars = reader.integer(
        header.get("max_prompt_chars"),
        ("bible", "max_prompt_chars"),
        DEFAULT_MAX_PROMPT_CHARS,
        MIN_MAX_PROMPT_CHARS,
        MAX_MAX_PROMPT_CHARS,
    )
    max_refs = reader.integer(
        header.get("max_references"),
        ("bible", "max_references"),
        DEFAULT_MAX_REFERENCES,
        0,
        MAX_REFERENCES,
    )
    style, negative = reader.style(data.get("style"), ("style",))
    # ``negative = [...]`` before the first table is where many authors put it: the same list.
    top_negative = reader.text_list(data.get("negative"), ("negative",))
    negative = tuple(dict.fromkeys((*top_negative, *negative)))
    if "style" not in data:
        reader.error(("style",), 'a bible needs a [style] table (at least medium = "...")')
    elif (
        isinstance(data["style"], dict)  # otherwise reported: not a table
        and "medium" not in style
        and not any(i.field == "style.medium" for i in reader.sink.issues)
    ):
        reader.error(("style",), '[style] needs medium = "..." (what kind of picture this is)')
    entities = reader.entities(data)
    reader.check_names_unique(entities)
    chapters = reader.chapters(data.get("chapters"), entities)
    bible = StyleBible(
        name=name or Path(file).stem,
        style=style,
        negative=negative,
        entities=tuple(entities),
        chapters=chapters,
        label=label,
        max_prompt_chars=max_chars,
        max_references=max_refs,
        source=file,
    )
    return _with_hash(bible)


def _with_hash(bible: StyleBible) -> StyleBible:
    return dataclasses.replace(bible, content_hash=content_hash(bible))


def load_style_bible(path: str | Path) -> StyleBible:
    """Read and validate the bible at ``path``. Raises :class:`StyleBibleError`."""
    target = Path(path).expanduser()
    file = str(path)
    try:
        size = target.stat().st_size
        if size > MAX_BIBLE_BYTES:
            raise StyleBibleError(
                [ImportIssue(file, None, f"is {size:,} bytes; a style bible is at most 4 MiB")]
            )
        raw = target.read_bytes()
    except FileNotFoundError:
        raise StyleBibleError([ImportIssue(file, None, "style bible not found")]) from None
    except IsADirectoryError:
        raise StyleBibleError([ImportIssue(file, None, "is a folder, not a style bible")]) from None
    except OSError as exc:
        raise StyleBibleError(
            [ImportIssue(file, None, f"cannot be read: {exc.strerror or exc}")]
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise StyleBibleError(
            [ImportIssue(file, line, "is not UTF-8 text (save it as UTF-8)")]
        ) from None
    return parse_style_bible(text, file=file, base_dir=target.resolve().parent)
