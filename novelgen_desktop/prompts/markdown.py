"""Markdown: for writers who outline a book in Obsidian, Notion or a README.

Structure (documented choices):

* ``# Heading`` starts a chapter. Its label is the number when the heading reads
  ``Chapter 3``/``Ch. 3``/``Chapter Three: The Fall`` (also ``Issue``/``Act``/``Part``/``Book``;
  the title after the colon goes to ``metadata["chapter_title"]``), ``Prologue``/``Epilogue``/
  ``Interlude`` as such, otherwise the heading text itself.
* ``## Heading`` starts a page: ``Page 4`` (or ``Page Four``, ``Pages 4-5`` for a spread)
  gives the number; any other heading is numbered one after the previous page of the chapter
  and kept in ``metadata["page_heading"]``.
* Every list item (``-``, ``*``, ``+``, ``1.``, ``1)``) and every paragraph is one panel,
  numbered in order within its page. Content before any ``#``/``##`` heading has chapter
  and/or page ``None``; panels are still numbered.
* ``> CAPTION: text`` / ``> MAREN: line`` blockquotes are lettering of the panel right above
  them (``metadata["lettering"]``, same rules as the Full Script; a dialogue speaker joins
  ``characters`` unless marked off-panel like ``(OFF)``); a blockquote without a ``NAME:``
  is a caption.
* Fenced code blocks, HTML comments, ``###``-and-deeper headings, horizontal rules and a
  leading ``---`` YAML-ish front-matter block (kept as job metadata) are not panels.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from novelgen_desktop.prompts.fields import make_spec
from novelgen_desktop.prompts.issues import IssueSink
from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.prompts.script_syntax import (
    CAPTION,
    DIALOGUE,
    NOTE,
    LetteringLine,
    is_off_panel,
    parse_chapter_heading,
    parse_front_matter,
    parse_lettering,
    parse_page_heading,
)

_FENCE_RE = re.compile(r" {0,3}(`{3,}|~{3,})")
_HEADING_RE = re.compile(r" {0,3}(#{1,6})(?:[ \t]++(.*)|[ \t]*+)", re.DOTALL)
_CLOSING_HASHES_RE = re.compile(r"(?:^|[ \t])#++[ \t]*+$")
_RULE_RE = re.compile(r" {0,3}([-*_])(?:[ \t]*+\1){2,}+[ \t]*+")
_QUOTE_RE = re.compile(r" {0,3}>[ \t]?(.*)")
_ITEM_RE = re.compile(r" {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]+(.*)|[ \t]*)")


@dataclasses.dataclass
class _Draft:
    line: int
    lines: list[str]
    lettering: list[LetteringLine] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


class MarkdownParser:
    def __init__(self, sink: IssueSink, specs: list[PromptSpec], job: dict[str, Any]) -> None:
        self.sink = sink
        self.specs = specs
        self.job = job
        self.chapter: str | None = None
        self.chapter_title: str | None = None
        self.page: int | None = None
        self.page_line = 0
        self.page_meta: dict[str, Any] = {}
        self.page_number_in_chapter = 0
        self.panel_count = 0
        self.open: _Draft | None = None
        self.drafts: list[_Draft] = []
        self.page_had_panels = False

    # -- sections ----------------------------------------------------------------------------

    def _close_item(self) -> None:
        if self.open is not None:
            self.drafts.append(self.open)
            self.open = None

    def _flush(self) -> None:
        self._close_item()
        for draft in self.drafts:
            self._emit(draft)
        if self.page is not None and not self.page_had_panels:
            self.sink.warning(self.page_line, f"page {self.page} has no panels")
        self.drafts = []

    def _emit(self, draft: _Draft) -> None:
        # Whitespace is not significant in Markdown, so runs (left by comments) collapse.
        text = " ".join(" ".join(draft.lines).split())
        if not text:
            self.sink.warning(draft.line, "empty list item skipped")
            return
        self.panel_count += 1
        self.page_had_panels = True
        metadata: dict[str, Any] = dict(self.page_meta)
        if draft.lettering:
            metadata["lettering"] = [item.as_metadata() for item in draft.lettering]
        if draft.notes:
            metadata["notes"] = list(draft.notes)
        if self.chapter_title:
            metadata["chapter_title"] = self.chapter_title
        fields: dict[str, Any] = {"panel": self.panel_count}
        if self.chapter is not None:
            fields["chapter"] = self.chapter
        if self.page is not None:
            fields["page"] = self.page
        speakers = [
            item.speaker
            for item in draft.lettering
            if item.kind == DIALOGUE
            and item.is_character
            and item.speaker
            and not is_off_panel(item.modifier)
        ]
        spec = make_spec(
            self.sink,
            draft.line,
            text,
            text_field=None,
            fields=fields,
            characters=speakers,
            metadata=metadata,
        )
        if spec is not None:
            self.specs.append(spec)

    def _chapter(self, heading: str) -> None:
        self._flush()
        parsed = parse_chapter_heading(heading)
        if parsed is not None:
            self.chapter, self.chapter_title = parsed.label, parsed.title
        else:
            self.chapter, self.chapter_title = heading or None, None
        self.page = None
        self.page_meta = {}
        self.page_number_in_chapter = 0
        self.panel_count = 0
        self.page_had_panels = False

    def _page(self, heading: str, lineno: int) -> None:
        self._flush()
        parsed = parse_page_heading(heading)
        self.page_meta = {}
        if parsed is not None and parsed.number is not None and parsed.number >= 1:
            number = parsed.number
            if parsed.spread_to is not None and parsed.spread_to > number:
                self.page_meta["spread_to"] = parsed.spread_to
            if parsed.note:
                self.page_meta["page_note"] = parsed.note
        else:
            number = self.page_number_in_chapter + 1
            if heading:
                self.page_meta["page_heading"] = heading
        self.page = number
        self.page_number_in_chapter = max(number, self.page_meta.get("spread_to", number))
        self.page_line = lineno
        self.panel_count = 0
        self.page_had_panels = False

    # -- lines -------------------------------------------------------------------------------

    def _quote(self, lineno: int, content: str) -> None:
        self._close_item()
        if not content.strip():
            return
        if not self.drafts:
            self.sink.warning(lineno, "blockquote before any panel on this page is ignored")
            return
        target = self.drafts[-1]
        item = parse_lettering(content)
        if item is None:
            target.lettering.append(LetteringLine(CAPTION, None, None, content.strip()))
        elif item.kind == NOTE:
            target.notes.append(item.text)
        else:
            target.lettering.append(item)

    def feed(self, lineno: int, line: str) -> None:
        if not line.strip():
            self._close_item()
            return
        heading = _HEADING_RE.fullmatch(line)
        if heading is not None:
            level = len(heading.group(1))
            title = _CLOSING_HASHES_RE.sub("", (heading.group(2) or "").rstrip()).strip()
            if level == 1:
                self._chapter(title)
            elif level == 2:
                self._page(title, lineno)
            else:
                self._close_item()
            return
        if _RULE_RE.fullmatch(line):
            self._close_item()
            return
        quote = _QUOTE_RE.fullmatch(line)
        if quote is not None:
            self._quote(lineno, quote.group(1))
            return
        item = _ITEM_RE.fullmatch(line)
        if item is not None:
            self._close_item()
            self.open = _Draft(lineno, [item.group(1) or ""])
            return
        if self.open is None:
            self.open = _Draft(lineno, [])
        self.open.lines.append(line)

    def finish(self) -> None:
        self._flush()


def _strip_comments(line: str, in_comment: bool) -> tuple[str, bool]:
    """Remove ``<!-- -->`` spans from one line, carrying an open comment to the next line."""
    out: list[str] = []
    pos = 0
    while pos < len(line):
        if in_comment:
            end = line.find("-->", pos)
            if end < 0:
                return "".join(out), True
            pos = end + 3
            in_comment = False
        else:
            start = line.find("<!--", pos)
            if start < 0:
                out.append(line[pos:])
                break
            out.append(line[pos:start])
            pos = start + 4
            in_comment = True
    return "".join(out), in_comment


def parse_markdown(
    text: str, sink: IssueSink, specs: list[PromptSpec], job: dict[str, Any]
) -> None:
    lines = text.split("\n")
    parser = MarkdownParser(sink, specs, job)
    start = 0
    if lines and lines[0].strip() == "---":
        for index in range(1, len(lines)):
            if lines[index].strip() in ("---", "..."):
                for front in lines[1:index]:
                    entry = parse_front_matter(front)
                    if entry is not None:
                        job.setdefault(*entry)
                start = index + 1
                break
    fence: str | None = None
    fence_line = 0
    in_comment = False
    try:
        for lineno, raw in enumerate(lines[start:], start=start + 1):
            if fence is not None:
                stripped = raw.strip()
                if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                    fence = None
                continue
            line, was_in_comment = raw, in_comment
            if in_comment or "<!--" in raw:
                line, in_comment = _strip_comments(raw, in_comment)
                if (was_in_comment or in_comment) and not line.strip():
                    continue  # a comment-only line is not a paragraph break
            opening = _FENCE_RE.match(line)
            if opening is not None:
                parser._close_item()
                fence, fence_line = opening.group(1), lineno
                continue
            parser.feed(lineno, line)
        if fence is not None:
            sink.warning(fence_line, "code block is never closed; the rest of the file was ignored")
        if in_comment:
            sink.warning(None, "an HTML comment (<!--) is never closed; the rest was ignored")
    finally:
        if sink.error_count < sink.max_errors:
            parser.finish()
