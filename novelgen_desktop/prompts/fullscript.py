"""The comic Full Script format: ``PAGE``/``Panel`` headings, description, lettering.

Decisions (documented here because writers will ask):

* The prompt is the panel *description* only. Captions, SFX and dialogue go to
  ``metadata["lettering"]`` in script order — they are lettered later, never drawn into the
  image. ``NOTE:``/``ARTIST NOTE:``/``[bracketed]``/``NO COPY`` lines go to
  ``metadata["notes"]``.
* Every dialogue speaker is cast into ``characters`` (as written, deduplicated ignoring case),
  except voices that are not people (``TV``, ``RADIO``, ``CROWD``…) and speakers who are not
  in the panel (``(OFF)``, ``(O.S.)``, ``(V.O.)``, ``(PHONE)``…: drawing them would be wrong);
  caption narrators are not.
* Text between a ``PAGE`` heading and its first ``Panel`` heading is a page note
  (``metadata["page_note_text"]``) when the page has panels, and the single panel of a splash
  page when it has none.
* Missing panel numbers continue from the highest number so far on the page. A duplicate
  panel number is a warning; the panel is kept in order and renumbered to the next free
  number (``metadata["panel_as_written"]`` keeps the original) so ``chapter/page/panel``
  stays unique for output file names. Duplicate pages in a chapter are warned about the same
  way and their panels continue the earlier page's numbering.
* ``PAGES 4-5`` is a spread: ``page`` is 4 and ``metadata["spread_to"]`` is 5. A count in the
  heading (``Page 12 (six panels)``) is checked against the panels found (a warning if they
  differ); any other parenthetical or ``— note`` goes to ``metadata["page_note"]``, and a
  panel heading's parenthetical (``PANEL 3 (INSET)``) to ``metadata["panel_note"]``.
* Empty panels, panels with lettering but no description, and pages without panels are
  skipped with a warning: an image of nothing costs as much as an image of something.
* Lines before the first ``PAGE`` are front matter: ``KEY: value`` lines become job metadata,
  other lines are ignored. ``CHAPTER``/``ISSUE``/``ACT``/``PART``/``BOOK`` headings (and
  ``PROLOGUE``/``EPILOGUE``/``INTERLUDE``) set the chapter label; the default label is ``"1"``.
* ``THE END`` / ``END OF ISSUE`` closes the current page; text after it is ignored.
* A lettering line may continue on following lines only if they are indented deeper than it,
  or if the line itself had no text (``MAREN:`` then the balloon on the next line); otherwise
  a following line is description again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from novelgen_desktop.prompts.fields import make_spec
from novelgen_desktop.prompts.issues import IssueSink
from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.prompts.script_syntax import (
    DIALOGUE,
    NOTE,
    LetteringLine,
    has_text,
    is_end_marker,
    is_off_panel,
    parse_chapter_heading,
    parse_front_matter,
    parse_lettering,
    parse_page_heading,
    parse_panel_heading,
)

MAX_SPREAD_PAGES = 10
_HEADING_PREFIXES = (
    "PAGE",
    "PANEL",
    "CHAPTER",
    "CH.",
    "ISSUE",
    "ACT",
    "PART",
    "BOOK",
    "EPISODE",
    "PROLOGUE",
    "EPILOGUE",
    "INTERLUDE",
)


@dataclasses.dataclass
class _Balloon:
    """A lettering line still open for continuation lines (joined once, at the end)."""

    item: LetteringLine
    more: list[str] = dataclasses.field(default_factory=list)

    @property
    def has_text(self) -> bool:
        return bool(self.item.text or self.more)

    def finished(self) -> LetteringLine:
        return dataclasses.replace(self.item, text=" ".join([self.item.text, *self.more]).strip())


@dataclasses.dataclass
class _Panel:
    line: int
    number: int | None = None
    note: str | None = None
    description: list[str] = dataclasses.field(default_factory=list)
    first_description_line: int | None = None
    lettering: list[_Balloon] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add_description(self, text: str, line: int) -> None:
        if self.first_description_line is None:
            self.first_description_line = line
        self.description.append(text)


@dataclasses.dataclass
class _Page:
    line: int
    number: int
    spread_to: int | None
    note: str | None
    stated_panels: int | None
    intro: _Panel
    panels: list[_Panel] = dataclasses.field(default_factory=list)

    @property
    def target(self) -> _Panel:
        return self.panels[-1] if self.panels else self.intro


@dataclasses.dataclass
class _Chapter:
    label: str
    title: str | None
    line: int
    implicit: bool = False
    # Panel numbers used so far per page number, shared by duplicate pages of the chapter.
    used_panels: dict[int, set[int]] = dataclasses.field(default_factory=dict)
    highest_panel: dict[int, int] = dataclasses.field(default_factory=dict)
    seen_pages: dict[int, int] = dataclasses.field(default_factory=dict)


def _short(text: str) -> str:
    return "'" + (text if len(text) <= 40 else text[:37] + "...") + "'"


def _could_be_heading(stripped: str) -> bool:
    head = stripped.lstrip("#*_ \t")[:9].upper()
    return head.startswith(_HEADING_PREFIXES)


class FullScriptParser:
    """One pass over the lines; pages are emitted when the next heading (or EOF) closes them."""

    def __init__(self, sink: IssueSink, specs: list[PromptSpec], job: dict[str, Any]) -> None:
        self.sink = sink
        self.specs = specs
        self.job = job
        self.chapters: dict[str, _Chapter] = {}
        self.chapter = self._enter_chapter("1", None, 0)
        self.chapter.implicit = True
        self.page: _Page | None = None
        self.seen_page = False
        self.after_end = False
        self.warned_orphan_panel = False
        self.last_lettering: tuple[_Balloon, int] | None = None  # balloon, its indent

    # -- structure ---------------------------------------------------------------------------

    def _enter_chapter(self, label: str, title: str | None, line: int) -> _Chapter:
        existing = self.chapters.get(label)
        if existing is not None and existing.implicit:
            # A script that starts with CHAPTER 1 simply names the default chapter.
            existing.implicit = False
            existing.line = line
            existing.title = title
            return existing
        if existing is not None:
            self.sink.warning(
                line,
                f"chapter {label} appears twice (first at line {existing.line}); "
                "its pages are checked together",
            )
            existing.title = title or existing.title
            return existing
        chapter = _Chapter(label, title, line)
        self.chapters[label] = chapter
        return chapter

    def _start_page(
        self, line: int, number: int, spread_to: int | None, note: str | None, stated: int | None
    ) -> None:
        self._close_page()
        self.page = _Page(line, number, spread_to, note, stated, _Panel(line))
        self.seen_page = True
        self.after_end = False

    def _close_page(self) -> None:
        page, self.page = self.page, None
        self.last_lettering = None
        if page is not None:
            self._emit_page(page)

    def _emit_page(self, page: _Page) -> None:
        chapter = self.chapter
        label = f"page {page.number}" + (f"-{page.spread_to}" if page.spread_to else "")
        first_seen = chapter.seen_pages.get(page.number)
        if first_seen is not None:
            self.sink.warning(
                page.line,
                f"{label} appears twice in chapter {chapter.label} (first at line {first_seen}); "
                "its panels are numbered after the earlier page's",
            )
        else:
            chapter.seen_pages[page.number] = page.line
            if page.spread_to is not None:
                for covered in range(page.number + 1, page.spread_to + 1):
                    chapter.seen_pages.setdefault(covered, page.line)
        used = chapter.used_panels.setdefault(page.number, set())

        intro = page.intro
        panels = page.panels
        page_note_text: str | None = None
        if panels:
            if intro.description:
                page_note_text = " ".join(intro.description)
            if intro.lettering or intro.notes:
                # Lettering placed under the page heading belongs to the first panel.
                panels[0].lettering[:0] = intro.lettering
                panels[0].notes[:0] = intro.notes
        elif intro.description:
            panels = [dataclasses.replace(intro, line=intro.first_description_line or intro.line)]
        elif intro.lettering:
            self.sink.warning(
                page.line,
                f"{label} has lettering but no panel description; nothing to draw, skipped",
            )
            return
        else:
            self.sink.warning(page.line, f"{label} has no panels")
            return

        if page.stated_panels is not None and page.stated_panels != len(panels):
            self.sink.warning(
                page.line,
                f"{label} says {page.stated_panels} panel"
                f"{'s' if page.stated_panels != 1 else ''} but has {len(panels)}",
            )

        for panel in panels:
            written = panel.number
            highest = chapter.highest_panel.get(page.number, 0)
            if written is None:
                number = highest + 1
            elif written in used:
                number = highest + 1
                self.sink.warning(
                    panel.line,
                    f"panel {written} appears twice on {label}; this one is numbered {number}",
                )
            else:
                number = written
            used.add(number)
            chapter.highest_panel[page.number] = max(highest, number)
            self._emit_panel(page, panel, number, page_note_text, written)

    def _emit_panel(
        self,
        page: _Page,
        panel: _Panel,
        number: int,
        page_note_text: str | None,
        written: int | None,
    ) -> None:
        where = f"panel {number} on page {page.number}"
        if not panel.description:
            if panel.lettering:
                self.sink.warning(
                    panel.line,
                    f"{where} has lettering but no description; the prompt would be empty, "
                    "so it is skipped",
                )
            else:
                self.sink.warning(panel.line, f"{where} is empty; skipped")
            return
        metadata: dict[str, Any] = {
            "lettering": [balloon.finished().as_metadata() for balloon in panel.lettering],
        }
        if panel.notes:
            metadata["notes"] = list(panel.notes)
        if panel.note:
            metadata["panel_note"] = panel.note
        if written is not None and written != number:
            metadata["panel_as_written"] = written
        if page.spread_to is not None:
            metadata["spread_to"] = page.spread_to
        if page.note:
            metadata["page_note"] = page.note
        if page_note_text:
            metadata["page_note_text"] = page_note_text
        if self.chapter.title:
            metadata["chapter_title"] = self.chapter.title
        speakers = [
            balloon.item.speaker
            for balloon in panel.lettering
            if balloon.item.kind == DIALOGUE
            and balloon.item.is_character
            and balloon.item.speaker
            and not is_off_panel(balloon.item.modifier)
        ]
        spec = make_spec(
            self.sink,
            panel.line,
            " ".join(panel.description),
            text_field=None,
            what=f"the description of {where}",
            fields={"chapter": self.chapter.label, "page": page.number, "panel": number},
            characters=speakers,
            metadata=metadata,
        )
        if spec is not None:
            self.specs.append(spec)

    # -- lines -------------------------------------------------------------------------------

    def feed(self, lineno: int, raw: str) -> None:
        stripped = raw.strip()
        if not stripped:
            self.last_lettering = None
            return
        if not has_text(stripped):
            return
        if _could_be_heading(stripped) and self._heading(lineno, stripped):
            return
        if self.page is not None and is_end_marker(stripped):
            self._close_page()
            self.after_end = True
            return
        if self.page is None:
            self._outside_page(lineno, stripped)
            return
        indent = len(raw) - len(raw.lstrip())
        if self._continue_lettering(stripped, indent):
            return
        item = parse_lettering(stripped)
        target = self.page.target
        if item is None:
            self.last_lettering = None
            target.add_description(stripped, lineno)
        elif item.kind == NOTE:
            self.last_lettering = None
            target.notes.append(item.text)
        else:
            balloon = _Balloon(item)
            target.lettering.append(balloon)
            self.last_lettering = (balloon, indent)

    def _continue_lettering(self, stripped: str, indent: int) -> bool:
        if self.last_lettering is None:
            return False
        balloon, base_indent = self.last_lettering
        if balloon.has_text and indent <= base_indent:
            return False
        if parse_lettering(stripped) is not None:
            return False
        balloon.more.append(stripped)
        return True

    def _heading(self, lineno: int, stripped: str) -> bool:
        chapter = parse_chapter_heading(stripped)
        if chapter is not None:
            self._close_page()
            self.chapter = self._enter_chapter(chapter.label, chapter.title, lineno)
            return True
        page = parse_page_heading(stripped)
        if page is not None:
            number = page.number
            if number is None:
                previous = self.page.number if self.page is not None else 0
                self.sink.error(
                    lineno,
                    f"cannot read the page number {_short(page.raw_number)}; write it as digits "
                    "(PAGE 23) or words (PAGE TWENTY-THREE)",
                )
                number = previous + 1
            elif number < 1:
                self.sink.error(lineno, "page numbers start at 1, got 0")
                number = 1
            spread_to = page.spread_to
            if spread_to is not None and not number < spread_to <= number + MAX_SPREAD_PAGES:
                self.sink.error(
                    lineno,
                    f"a spread must run forward over at most {MAX_SPREAD_PAGES + 1} pages, "
                    f"got pages {number}-{spread_to}",
                )
                spread_to = None
            self._start_page(lineno, number, spread_to, page.note, page.stated_panels)
            return True
        panel = parse_panel_heading(stripped)
        if panel is not None:
            if self.page is None:
                if not self.warned_orphan_panel:
                    self.sink.warning(
                        lineno, "panel before the first PAGE heading; assuming page 1"
                    )
                    self.warned_orphan_panel = True
                self._start_page(lineno, 1, None, None, None)
            assert self.page is not None
            self.last_lettering = None
            number = panel.number
            if panel.unreadable:
                self.sink.error(
                    lineno,
                    f"cannot read the panel number {_short(panel.note or '')}; write it as digits "
                    "(PANEL 3) or words (PANEL THREE)",
                )
            elif number is not None and number < 1:
                self.sink.error(lineno, "panel numbers start at 1, got 0")
                number = None
            new_panel = _Panel(lineno, number, None if panel.unreadable else panel.note)
            self.page.panels.append(new_panel)
            if panel.rest:
                self._panel_rest(new_panel, panel.rest, lineno)
            return True
        return False

    def _panel_rest(self, panel: _Panel, rest: str, lineno: int) -> None:
        item = parse_lettering(rest)
        if item is None:
            panel.add_description(rest, lineno)
        elif item.kind == NOTE:
            panel.notes.append(item.text)
        else:
            panel.lettering.append(_Balloon(item))

    def _outside_page(self, lineno: int, stripped: str) -> None:
        if self.seen_page or self.after_end:
            return  # chapter intros and back matter are not drawn
        entry = parse_front_matter(stripped)
        if entry is not None:
            key, value = entry
            self.job.setdefault(key, value)

    def finish(self, text: str) -> None:
        self._close_page()
        if not self.seen_page and text.strip():
            self.sink.warning(
                None,
                "no PAGE headings found; a Full Script needs 'PAGE 1' (or 'PAGE ONE') headings "
                "followed by 'Panel 1' headings",
            )


def parse_fullscript(
    text: str, sink: IssueSink, specs: list[PromptSpec], job: dict[str, Any]
) -> None:
    parser = FullScriptParser(sink, specs, job)
    try:
        for lineno, line in enumerate(text.split("\n"), start=1):
            parser.feed(lineno, line)
    finally:
        # Even when too many errors stop the parse, the open page holds valid panels.
        if sink.error_count < sink.max_errors:
            parser.finish(text)
