"""Recognising the lines of a comic Full Script: headings, lettering, notes.

There is no Full Script standard, only habits (``PAGE ONE``, ``Page 12 (six panels)``,
``PANEL 3: Wide on the harbour.``, ``MAREN (OFF): Tobias!``). The rules here accept those
habits while refusing look-alikes that are really panel description — ``Wide shot: the city at
dawn.`` or ``CLOSE ON: her hands.`` — because drawing dialogue, or dropping a description,
both cost real images. Markdown reuses the same rules for its headings and blockquotes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final

from novelgen_desktop.prompts.numbers import NUMBER_WORDS, take_number

# --------------------------------------------------------------------------------------------
# Headings


@dataclasses.dataclass(frozen=True)
class PageHeading:
    """``number`` is None when the line is clearly a heading but its number is unreadable."""

    number: int | None
    spread_to: int | None = None
    note: str | None = None
    stated_panels: int | None = None
    raw_number: str = ""


@dataclasses.dataclass(frozen=True)
class PanelHeading:
    number: int | None
    note: str | None = None
    rest: str = ""
    unreadable: bool = False


@dataclasses.dataclass(frozen=True)
class ChapterHeading:
    label: str
    title: str | None = None


_PAGE_KW: Final = re.compile(r"(PAGES?)\b[ \t]*(?:#[ \t]*)?", re.IGNORECASE)
_PANEL_KW: Final = re.compile(r"(PANEL)\b[ \t]*(?:#[ \t]*)?", re.IGNORECASE)
_CHAPTER_KW: Final = re.compile(
    r"(?:(CHAPTER|ISSUE|ACT|PART|BOOK|EPISODE)\b|(CH)\.)[ \t]*(?:#[ \t]*)?", re.IGNORECASE
)
_NAMED_CHAPTER: Final = re.compile(
    r"(PROLOGUE|EPILOGUE|INTERLUDE)[ \t]*(?:[:.\-–—][ \t]*(?P<rest>.*))?", re.IGNORECASE
)
_SPREAD_SEP: Final = re.compile(
    r"[ \t]*(?:-|–|—|&|/|\band\b|\bto\b|\bthrough\b|\bthru\b)[ \t]*", re.IGNORECASE
)
# Possessive quantifiers (``*+``) everywhere a run of blanks could be split two ways: without
# them a heading followed by 200,000 spaces and one stray letter backtracks quadratically.
_TAIL: Final = re.compile(
    r"[ \t]*+(?:\((?P<paren>[^()]*+)\))?[ \t]*+(?:[:.\-–—][ \t]*+(?P<rest>.*))?", re.DOTALL
)
_LOOSE_TAIL: Final = re.compile(r"[ \t]*+(?:\((?P<paren>[^()]*+)\))?[ \t]*+(?P<rest>.*)", re.DOTALL)
_PANEL_COUNT: Final = re.compile(r"[ \t]*panels?[ \t]*\.?", re.IGNORECASE)
_HEADING_MARKUP_LEAD: Final = re.compile(r"^#{1,6}[ \t]*")


def clean_heading(line: str) -> str:
    """Drop Markdown decoration writers put on headings (``## **PAGE ONE**``)."""
    text = _HEADING_MARKUP_LEAD.sub("", line.strip())
    return text.strip("*_ \t")


def _stated_panels(text: str) -> int | None:
    """``six panels`` / ``5 PANELS`` → the count the writer announced, else None."""
    number = take_number(text.strip(), 0)
    if number is None:
        return None
    value, end = number
    if _PANEL_COUNT.fullmatch(text.strip(), end) is None:
        return None
    return value


def _tail(text: str, pos: int, *, loose: bool = False) -> tuple[str | None, str] | None:
    """What may follow a heading's number: ``(note)`` then nothing or ``: rest``."""
    match = _TAIL.fullmatch(text, pos)
    if match is None and loose:
        match = _LOOSE_TAIL.fullmatch(text, pos)
        glued = pos < len(text) and not text[pos].isspace()
        if match is not None and match.group("rest") and glued:
            match = None  # "Panel 2The..." is not a heading
    if match is None:
        return None
    paren = match.group("paren")
    return (paren.strip() if paren is not None else None), (match.group("rest") or "").strip()


def _is_shouted(text: str) -> bool:
    return text.upper() == text


def _looks_numeric(text: str) -> bool:
    """Does an unreadable heading number at least start like a number (``TWENTYTHREE``)?"""
    words = re.split(r"[\s\-]+", text.strip().lower(), maxsplit=1)
    first = words[0] if words else ""
    return bool(first) and (first[0].isdigit() or any(first.startswith(w) for w in NUMBER_WORDS))


def parse_page_heading(line: str) -> PageHeading | None:
    text = clean_heading(line)
    keyword = _PAGE_KW.match(text)
    if keyword is None:
        return None
    after = text[keyword.end() :]
    first = take_number(text, keyword.end())
    if first is None:
        # "PAGE TWENTY TWENTY" is a heading with a typo; "Page after page of..." is prose.
        if _is_shouted(text) and _looks_numeric(after):
            return PageHeading(None, raw_number=after.strip())
        return None
    number, pos = first
    spread_to: int | None = None
    separator = _SPREAD_SEP.match(text, pos)
    if separator is not None:
        second = take_number(text, separator.end())
        if second is not None:
            spread_to, pos = second
    tail = _tail(text, pos)
    if tail is None and _is_shouted(text):
        # "PAGE ONE SPLASH" is a heading with a note; "PAGE TWENTY TWENTY" is a typo.
        tail = _tail(text, pos, loose=True)
        if tail is not None and _looks_numeric(tail[1]):
            return PageHeading(None, raw_number=after.strip())
    if tail is None:
        return None
    paren, rest = tail
    stated = None
    notes: list[str] = []
    for part in (paren, rest):
        if not part:
            continue
        count = _stated_panels(part)
        if count is not None and stated is None:
            stated = count
        else:
            notes.append(part)
    return PageHeading(number, spread_to, "; ".join(notes) or None, stated)


def parse_panel_heading(line: str) -> PanelHeading | None:
    text = clean_heading(line)
    keyword = _PANEL_KW.match(text)
    if keyword is None:
        return None
    after = text[keyword.end() :]
    number = take_number(text, keyword.end())
    if number is None:
        tail = _tail(text, keyword.end())
        if tail is None:
            if _is_shouted(text) and _looks_numeric(after):
                return PanelHeading(None, note=after.strip(), unreadable=True)
            return None
        paren, rest = tail
        return PanelHeading(None, paren or None, rest)
    value, pos = number
    digits = text[keyword.end() : pos].strip().lstrip("#").strip().isdigit()
    tail = _tail(text, pos, loose=digits or _is_shouted(text))
    if tail is None:
        return None
    paren, rest = tail
    return PanelHeading(value, paren or None, rest)


def parse_chapter_heading(line: str) -> ChapterHeading | None:
    text = clean_heading(line)
    named = _NAMED_CHAPTER.fullmatch(text)
    if named is not None:
        return ChapterHeading(named.group(1).title(), (named.group("rest") or "").strip() or None)
    keyword = _CHAPTER_KW.match(text)
    if keyword is None:
        return None
    number = take_number(text, keyword.end(), allow_roman=True)
    if number is None:
        return None
    value, pos = number
    tail = _tail(text, pos)
    if tail is None:
        return None
    paren, rest = tail
    title = rest or paren or None
    return ChapterHeading(str(value), title)


# --------------------------------------------------------------------------------------------
# Lettering

CAPTION: Final = "caption"
SFX: Final = "sfx"
DIALOGUE: Final = "dialogue"
NOTE: Final = "note"

_LETTERING_RE: Final = re.compile(
    r"[ \t]*(?:\d{1,3}[.)]?[ \t]+)?"
    r"(?P<name>[^:()\n]{1,60}?)[ \t]*"
    r"(?:\((?P<modifier>[^()\n]{0,80})\)[ \t]*)?"
    r":(?P<text>.*)",
    re.DOTALL,
)
_NAME_WORD_CHARS: Final = frozenset("'’.-")

_SFX_FIRST_WORDS: Final = frozenset({"SFX", "FX", "SOUND", "SOUNDS", "SFX/FX", "BG-SFX"})
_CAPTION_WORDS: Final = frozenset({"CAPTION", "CAPTIONS", "CAP", "NARRATION", "NARRATOR", "TITLE"})
_NOTE_WORDS: Final = frozenset({"NOTE", "NOTES", "REF", "REFERENCE", "REFS"})

# Camera and staging directions that writers put before a colon in capitals. They introduce
# description, so a line such as "CLOSE ON: her hands" must be drawn, not lettered.
_SHOT_FIRST_WORDS: Final = frozenset(
    {
        "ANGLE",
        "CLOSE",
        "CLOSE-UP",
        "CLOSEUP",
        "CU",
        "ECU",
        "XCU",
        "MCU",
        "WIDE",
        "ESTABLISHING",
        "INSET",
        "INSERT",
        "POV",
        "P.O.V.",
        "SPLASH",
        "INT",
        "INT.",
        "EXT",
        "EXT.",
        "INT/EXT",
        "EXTREME",
        "MEDIUM",
        "TIGHT",
        "AERIAL",
        "OVERHEAD",
        "REVERSE",
        "TRACKING",
        "ZOOM",
        "PAN",
        "FLASHBACK",
        "SETTING",
        "LOCATION",
        "TIME",
        "SCENE",
        "CUT",
        "SMASH",
        "MONTAGE",
        "TRANSITION",
        "DESCRIPTION",
        "ACTION",
        "ART",
        "PANEL",
        "PAGE",
    }
)
_SHOT_LAST_WORDS: Final = frozenset(
    {"SHOT", "SHOTS", "ANGLE", "VIEW", "PANEL", "PAGE", "ON", "UP", "IN", "OUT", "TO", "BACK"}
)
_SHOT_NAMES: Final = frozenset(
    {
        "LATER",
        "MEANWHILE",
        "SAME",
        "CONTINUED",
        "CONT'D",
        "SILENT",
        "BEAT",
        "NIGHT",
        "DAY",
        "DAWN",
        "DUSK",
        "MORNING",
        "EVENING",
    }
)
# Speakers that are voices, not people to draw; their lines are lettered but they are not cast.
NON_CHARACTER_SPEAKERS: Final = frozenset(
    {
        "TV",
        "RADIO",
        "PHONE",
        "SIGN",
        "SCREEN",
        "INTERCOM",
        "SPEAKER",
        "PA",
        "P.A.",
        "VOICE",
        "VOICES",
        "CROWD",
        "ALL",
        "BOTH",
        "EVERYONE",
        "OTHERS",
        "TEXT",
        "NEWSPAPER",
        "LETTER",
        "BURST",
        "RECORDING",
        "COMPUTER",
        "LOUDSPEAKER",
        "HEADLINE",
    }
)
_NO_COPY_RE: Final = re.compile(
    r"[(\[]?[ \t]*+(?:NO[ \t]++(?:COPY|DIALOGUE|DIALOG|TEXT|LETTERING|CAPTIONS?|BALLOONS?)"
    r"|SILENT(?:[ \t]++PANEL)?)[ \t]*+[.!]?[ \t]*+[)\]]?",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class LetteringLine:
    """A classified lettering line. ``kind`` is caption, sfx, dialogue or note."""

    kind: str
    speaker: str | None
    modifier: str | None
    text: str
    is_character: bool = False

    def as_metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "speaker": self.speaker,
            "modifier": self.modifier,
            "text": self.text,
        }


def _valid_speaker_name(name: str) -> bool:
    words = name.split()
    if not 1 <= len(words) <= 4 or not name.isupper():
        return False
    for word in words:
        if not any(ch.isalpha() for ch in word):
            return False
        if not all(ch.isalpha() or ch in _NAME_WORD_CHARS for ch in word):
            return False
    return True


def _is_direction(words: list[str], name: str) -> bool:
    return words[0] in _SHOT_FIRST_WORDS or words[-1] in _SHOT_LAST_WORDS or name in _SHOT_NAMES


def parse_lettering(line: str) -> LetteringLine | None:
    """Classify ``NAME (MODIFIER): text`` lines; None means "this is description".

    A speaker is 1–4 upper-case words (letters, apostrophes, hyphens, dots), so prose with a
    colon stays description, and known camera directions are excluded by name.
    """
    stripped = line.strip()
    if not stripped:
        return None
    if _NO_COPY_RE.fullmatch(stripped) or (stripped.startswith("[") and stripped.endswith("]")):
        return LetteringLine(NOTE, None, None, stripped.strip("[]").strip())
    match = _LETTERING_RE.match(stripped[:400])
    if match is None:
        return None
    name = " ".join(match.group("name").split())
    if not _valid_speaker_name(name):
        return None
    words = name.split()
    modifier = match.group("modifier")
    modifier = " ".join(modifier.split()) if modifier is not None else None
    modifier = modifier or None
    # The text may continue past the 400-character window used for the name.
    text = stripped[match.start("text") :].strip()
    if words[0] in _SFX_FIRST_WORDS:
        return LetteringLine(SFX, None, modifier, text)
    if any(word in _CAPTION_WORDS for word in words):
        return LetteringLine(CAPTION, None, modifier, text)
    if any(word in _NOTE_WORDS for word in words):
        return LetteringLine(NOTE, None, modifier, text)
    if _is_direction(words, name):
        return None
    return LetteringLine(DIALOGUE, name, modifier, text, name not in NON_CHARACTER_SPEAKERS)


# --------------------------------------------------------------------------------------------
# Script-level markers

_END_MARKER_RE: Final = re.compile(
    r"(?:THE[ \t]++END|END|FIN|END[ \t]++OF[ \t]++(?:ISSUE|CHAPTER|BOOK|PART|ACT|SCRIPT|EPISODE)"
    r"(?:[ \t]++#?[ \t]*+\w++)?)[ \t]*+[.!]*+"
)
_FRONT_MATTER_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9 #'_\-]{0,40}?)[ \t]*:[ \t]*(.+)")


def is_end_marker(line: str) -> bool:
    """``THE END`` / ``END OF ISSUE #1`` close the script; they are not panel description."""
    return _END_MARKER_RE.fullmatch(clean_heading(line)) is not None


def parse_front_matter(line: str) -> tuple[str, str] | None:
    """``TITLE: The Lighthouse Keeper`` → ``("title", "The Lighthouse Keeper")``."""
    match = _FRONT_MATTER_RE.fullmatch(line.strip())
    if match is None:
        return None
    key = "_".join(match.group(1).lower().replace("#", " ").split())
    value = match.group(2).strip()
    return (key, value) if key and value else None


def has_text(line: str) -> bool:
    """Lines of only punctuation (``---``, ``* * *``) are layout, never content."""
    return any(ch.isalnum() for ch in line)


_OFF_PANEL_MODIFIERS = frozenset(
    {
        "OFF",
        "OS",
        "OFFPANEL",
        "OP",
        "VO",
        "PHONE",
        "RADIO",
        "TV",
        "INTERCOM",
        "SPEAKER",
        "TELEPATHY",
    }
)


def is_off_panel(modifier: str | None) -> bool:
    """``(OFF)``, ``(O.S.)``, ``(off-panel)``, ``(V.O.)``: the speaker is heard, not seen."""
    if not modifier:
        return False
    key = "".join(ch for ch in modifier.upper() if ch.isalpha())
    return key in _OFF_PANEL_MODIFIERS
