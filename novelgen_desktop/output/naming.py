"""Where each image goes, relative to the job's output folder.

Names are the user's interface to thousands of files, so they follow the script
(``{chapter}/{page:03d}-{panel:02d}.png`` by default) rather than internal ids. They are also
built from user-controlled text (chapter labels, prompts), so every path component is
sanitized here to be valid and harmless on Windows, macOS and Linux: a chapter label such as
``"a/../b"`` or ``"CON"`` must never create an unexpected directory or an unopenable file.

Rules, in the order they apply:

* Field values are rendered with :class:`string.Formatter` semantics, so format specs such as
  ``{page:03d}`` work; only the fields in :data:`FIELD_TYPES` exist, without attribute or index
  lookups or conversions (``{chapter.__class__}`` is refused, not evaluated).
* Path separators come only from the template's own text (``/`` or ``\\``); a separator inside
  a field value is just an invalid character and becomes ``_``.
* **Fallback:** if any field the template uses is missing for a task (``None``, or an empty
  string; a plain list of prompts has no chapter, page or panel), the *whole* name falls back
  to ``{seq:05d}`` at the top of the output folder. Mixing a partial name with holes would be
  worse than a plain sequence number. :meth:`NamingTemplate.uses_fallback` tells whether it
  happened, :meth:`NamingTemplate.missing_fields` which fields caused it.
* **Variants:** when a task may produce several images (``images > 1``) and the template does
  not use ``{variant}``, ``-v{variant}`` is inserted before the extension, so variants never
  collide (every variant gets it, ``-v1`` included, so they sort together).
* **Extension:** a trailing image extension in the template (``.png``, ``.jpg`` …) is only a
  placeholder; the real image's extension replaces it (a JPEG result is saved as ``.jpg``).
* Each component: NFC-normalised; control characters removed; ``<>:"/\\|?*`` replaced by
  ``_``; surrounding whitespace and trailing dots removed; leading dots replaced by ``_`` (no
  hidden files, never ``.`` or ``..``); an empty result becomes ``_``; Windows device names
  (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM1``-``COM9``, ``LPT1``-``LPT9``, with any extension,
  any case) get a ``_`` after the device name; at most :data:`MAX_COMPONENT_BYTES` bytes of
  UTF-8, cut on a character boundary (the file name keeps its extension).
* The whole relative path is at most :data:`MAX_PATH_CHARS` characters, leaving room under the
  classic Windows 260-character limit for a short output folder; the longest components are
  shortened first.

Sanitizing and shortening can make two tasks' names equal, and so can a script that repeats a
page/panel number; :func:`disambiguate` resolves that against what is already taken.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

from novelgen_desktop.errors import OutputError

__all__ = [
    "DEFAULT_TEMPLATE",
    "FALLBACK_TEMPLATE",
    "FIELD_TYPES",
    "MAX_COMPONENT_BYTES",
    "MAX_PATH_CHARS",
    "MAX_TEMPLATE_DEPTH",
    "NameFields",
    "NamingTemplate",
    "TemplateError",
    "disambiguate",
    "render_name",
    "sanitize_component",
    "slugify",
    "validate_template",
]

DEFAULT_TEMPLATE: Final = "{chapter}/{page:03d}-{panel:02d}.png"
FALLBACK_TEMPLATE: Final = "{seq:05d}"

FIELD_TYPES: Final[Mapping[str, type]] = {
    "chapter": str,
    "page": int,
    "panel": int,
    "seq": int,
    "variant": int,
    "job": str,
    "task": int,
    "slug": str,
}
"""Every field a template may use, with the type its format spec must suit."""

MAX_COMPONENT_BYTES: Final = 120
MAX_PATH_CHARS: Final = 240
MAX_TEMPLATE_DEPTH: Final = 8
SLUG_MAX_CHARS: Final = 40

_SAMPLES: Final[Mapping[type, object]] = {int: 1, str: "x"}
_INVALID_CHARS: Final = frozenset('<>:"/\\|?*')
_SEPARATORS: Final = re.compile(r"[/\\]")
# Text direction overrides can disguise a name ("gnp.exe"); they are never wanted in a path.
_BIDI_CONTROLS: Final = frozenset(
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_TEMPLATE_EXTENSION: Final = re.compile(r"\.(?:png|jpe?g|jfif|webp|gif|avif)\Z", re.IGNORECASE)
_TRAILING: Final = re.compile(r"[.\s]+\Z")
_DRIVE: Final = re.compile(r"[A-Za-z]:")
_EXTENSION: Final = re.compile(r"\.[a-z0-9]{1,10}")
_WINDOWS_RESERVED: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"}
)
_DISAMBIGUATE_LIMIT: Final = 10_000


class TemplateError(OutputError):
    """A naming template cannot be used; the message says which field or spec is wrong."""


@dataclass(frozen=True, slots=True)
class NameFields:
    """Everything a template can refer to for one image, plus facts that shape the name.

    ``seq`` is the task's 1-based position in the job and is always present, so the fallback
    name always exists. ``images`` is how many images the task wants; it decides whether
    variants need telling apart. ``extension`` is the real image's (from ``ImageInfo``).
    """

    seq: int
    extension: str
    chapter: str | None = None
    page: int | None = None
    panel: int | None = None
    variant: int = 1
    images: int = 1
    job: str | None = None
    task: int | None = None
    slug: str | None = None

    def __post_init__(self) -> None:
        if self.seq < 1 or self.variant < 1 or self.images < 1:
            raise ValueError("seq, variant and images are 1-based")
        extension = self.extension.lower()
        if not extension.startswith("."):
            extension = "." + extension
        if not _EXTENSION.fullmatch(extension):
            raise ValueError(f"invalid file extension {self.extension!r}")
        object.__setattr__(self, "extension", extension)

    def value(self, name: str) -> object | None:
        """The value of template field ``name``; ``None`` (or a blank string) means missing."""
        value: object | None = getattr(self, name)
        if isinstance(value, str) and not value.strip():
            return None
        return value


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    spec: str


_Part = str | _Field
_Component = tuple[_Part, ...]


class NamingTemplate:
    """A validated template, parsed once and rendered for every finished image."""

    __slots__ = ("_components", "_fields", "template")

    def __init__(self, template: str = DEFAULT_TEMPLATE) -> None:
        self.template = template
        self._components = _parse(template)
        self._fields = frozenset(
            part.name for comp in self._components for part in comp if isinstance(part, _Field)
        )

    def __repr__(self) -> str:
        return f"NamingTemplate({self.template!r})"

    @property
    def fields(self) -> frozenset[str]:
        """The field names this template uses."""
        return self._fields

    def missing_fields(self, fields: NameFields) -> tuple[str, ...]:
        """The fields this template needs that ``fields`` lacks, sorted; empty if none."""
        return tuple(sorted(name for name in self._fields if fields.value(name) is None))

    def uses_fallback(self, fields: NameFields) -> bool:
        """Whether :meth:`render` will return the ``{seq:05d}`` fallback for ``fields``."""
        return bool(self.missing_fields(fields))

    def render(self, fields: NameFields) -> PurePosixPath:
        """The sanitized relative path for one image (see the module docs for every rule)."""
        several = fields.images > 1 or fields.variant > 1
        if self.uses_fallback(fields):
            components: tuple[_Component, ...] = ((_Field("seq", "05d"),),)
            tag_variant = several
        else:
            components = self._components
            tag_variant = several and "variant" not in self._fields
        texts = [_render_component(comp, fields) for comp in components]
        tail = (f"-v{fields.variant}" if tag_variant else "") + fields.extension
        return _assemble(texts[:-1], texts[-1], tail)


def validate_template(template: str) -> None:
    """Raise :class:`TemplateError` if ``template`` cannot be used, so a settings dialog or
    the CLI can reject it before a job starts rather than after the first image."""
    _parse(template)


def render_name(template: str | NamingTemplate, fields: NameFields) -> PurePosixPath:
    """One-off rendering; returns the ``{seq:05d}`` fallback when a needed field is missing."""
    compiled = template if isinstance(template, NamingTemplate) else NamingTemplate(template)
    return compiled.render(fields)


def slugify(text: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """The first words of ``text`` as ``lower-case-words``, at most ``max_chars`` long.

    Letters of every script are kept (a Japanese prompt keeps its words); punctuation and
    emoji are dropped. Returns ``""`` when nothing is left, which templates treat as missing.
    """
    words = re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_chars:
            if not slug:
                slug = word[:max_chars]
            break
        slug = candidate
    return slug


def sanitize_component(text: str, max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """Make ``text`` a safe single path component on every desktop OS (rules in module docs)."""
    if max_bytes < 8:
        raise ValueError("max_bytes must leave room for a device name and its '_' suffix")
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in _INVALID_CHARS:
            out.append("_")
        elif ch in "\t\n\r\v\f\x85\u2028\u2029":
            out.append(" ")
        elif ch in _BIDI_CONTROLS:
            continue
        else:
            category = unicodedata.category(ch)
            if category == "Cc":
                continue
            out.append("_" if category == "Cs" else ch)
    name = _trim(_truncate_bytes("".join(out).strip(), max_bytes))
    stripped = name.lstrip(".")
    if len(stripped) != len(name):
        name = "_" * (len(name) - len(stripped)) + stripped
    name = name or "_"
    head, dot, rest = name.partition(".")
    if head.rstrip(" ").upper() in _WINDOWS_RESERVED:
        name = _trim(_truncate_bytes(f"{head}_{dot}{rest}", max_bytes))
    return name


def disambiguate(
    path: PurePosixPath,
    taken: Callable[[PurePosixPath], bool],
    *,
    limit: int = _DISAMBIGUATE_LIMIT,
) -> PurePosixPath:
    """``path`` if it is free, else the first free ``stem-2.ext``, ``stem-3.ext``, ….

    ``taken`` is asked about each candidate; it should answer for files on disk *and* names
    already given to other tasks, and compare case-insensitively if the output folder may be
    on a case-insensitive filesystem (Windows, macOS by default). The suffixed name still
    respects the component and path limits.
    """
    if not taken(path):
        return path
    name = path.name
    suffix = PurePosixPath(name).suffix
    stem = name[: len(name) - len(suffix)] if suffix else name
    parent_chars = len(str(path.parent)) + 1 if str(path.parent) != "." else 0
    for n in range(2, limit + 1):
        counter = f"-{n}{suffix}"
        byte_budget = MAX_COMPONENT_BYTES - len(counter.encode("utf-8"))
        char_budget = MAX_PATH_CHARS - parent_chars - len(counter)
        short = _trim(_truncate_bytes(stem, byte_budget)[: max(1, char_budget)]) or "_"
        candidate = path.with_name(sanitize_component(short + counter))
        if not taken(candidate):
            return candidate
    raise OutputError(f"no free name for {path} after {limit} attempts")


# --- internals ------------------------------------------------------------------------------


def _parse(template: str) -> tuple[_Component, ...]:
    if not isinstance(template, str) or not template.strip():
        raise TemplateError("empty naming template")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"invalid naming template {template!r}: {exc}") from exc

    components: list[list[_Part]] = [[]]
    for literal, name, spec, conversion in parsed:
        pieces = _SEPARATORS.split(literal)
        if pieces[0]:
            components[-1].append(pieces[0])
        for piece in pieces[1:]:
            components.append([piece] if piece else [])
        if name is None:
            continue
        components[-1].append(_check_field(name, spec or "", conversion))

    first = components[0]
    if (not first and len(components) > 1) or (
        len(first) == 1 and isinstance(first[0], str) and _DRIVE.fullmatch(first[0])
    ):
        raise TemplateError(f"naming template {template!r} must be a relative path")
    for comp in components:
        if not comp:
            raise TemplateError(
                f"naming template {template!r} has an empty path component "
                "(a doubled or trailing '/')"
            )
        if all(isinstance(p, str) for p in comp) and "".join(map(str, comp)).strip() in (
            ".",
            "..",
        ):
            raise TemplateError(f"naming template {template!r} must not contain '.' or '..'")
    if len(components) > MAX_TEMPLATE_DEPTH:
        raise TemplateError(
            f"naming template {template!r} is {len(components)} levels deep; "
            f"at most {MAX_TEMPLATE_DEPTH} are allowed"
        )
    if not any(isinstance(p, _Field) for comp in components for p in comp):
        raise TemplateError(
            f"naming template {template!r} uses no field, so every image would get the same "
            f"name; known fields: {_known()}"
        )

    last = components[-1]
    if isinstance(last[-1], str):
        stripped = _TEMPLATE_EXTENSION.sub("", last[-1])
        if stripped:
            last[-1] = stripped
        else:
            last.pop()
        if not last:
            raise TemplateError(
                f"naming template {template!r} has no file name before the extension"
            )
    return tuple(tuple(comp) for comp in components)


def _check_field(name: str, spec: str, conversion: str | None) -> _Field:
    if name == "" or name.isdigit():
        raise TemplateError(
            f"positional field {{{name}}} is not allowed; use a name. Known fields: {_known()}"
        )
    if not name.isidentifier():
        raise TemplateError(
            f"field {{{name}}}: attribute and index lookups are not allowed; "
            f"known fields: {_known()}"
        )
    if name not in FIELD_TYPES:
        raise TemplateError(f"unknown field {name!r}; known fields: {_known()}")
    if conversion is not None:
        raise TemplateError(f"field {name!r}: conversions such as '!{conversion}' are not allowed")
    if "{" in spec or "}" in spec:
        raise TemplateError(f"field {name!r}: nested fields in a format spec are not allowed")
    kind = FIELD_TYPES[name]
    try:
        sample = format(_SAMPLES[kind], spec)
    except (ValueError, TypeError) as exc:
        raise TemplateError(
            f"invalid format spec {spec!r} for field {name!r} ({kind.__name__}): {exc}"
        ) from exc
    if len(sample) > MAX_PATH_CHARS:
        raise TemplateError(f"format spec {spec!r} for field {name!r} is wider than a path")
    return _Field(name, spec)


def _known() -> str:
    return ", ".join(sorted(FIELD_TYPES))


def _render_component(comp: _Component, fields: NameFields) -> str:
    out: list[str] = []
    for part in comp:
        if isinstance(part, str):
            out.append(part)
            continue
        value = fields.value(part.name)
        try:
            text = format(value, part.spec)
        except (ValueError, TypeError) as exc:
            raise TemplateError(
                f"field {part.name!r} value {value!r} does not suit format spec {part.spec!r}"
            ) from exc
        out.append(text[:MAX_PATH_CHARS])
    return "".join(out)


def _assemble(dirs: list[str], stem: str, tail: str) -> PurePosixPath:
    stem_budget = MAX_COMPONENT_BYTES - len(tail.encode("utf-8"))
    budgets = [MAX_COMPONENT_BYTES] * len(dirs) + [stem_budget]
    parts = [
        sanitize_component(text, budget)
        for text, budget in zip([*dirs, stem], budgets, strict=True)
    ]
    allowed = MAX_PATH_CHARS - len(tail) - (len(parts) - 1)
    # Cut the over-long components down to a common length, so one long chapter label does
    # not wipe out the others. Sanitizing a cut name can add a character back (a device name
    # gets "_"), hence the second pass; the depth limit guarantees a fit exists.
    for _ in range(4):
        if sum(map(len, parts)) <= allowed:
            break
        level = max(map(len, parts))
        while level > 1 and sum(min(len(part), level) for part in parts) > allowed:
            level -= 1
        parts = [
            part if len(part) <= level else sanitize_component(part[:level], budget)
            for part, budget in zip(parts, budgets, strict=True)
        ]
    if sum(map(len, parts)) > allowed:  # pragma: no cover - impossible within the depth limit
        raise OutputError("cannot shorten the output path below the length limit")
    parts[-1] += tail
    return PurePosixPath(*parts)


def _truncate_bytes(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def _trim(text: str) -> str:
    """Windows silently drops trailing dots and spaces, so a name ending in one would not be
    the name that gets created; drop them (and any other trailing whitespace) first."""
    return _TRAILING.sub("", text)
