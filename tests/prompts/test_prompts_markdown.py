from __future__ import annotations

from prompts_testutil import errors, keys, parse, texts, warnings

BOOK = """\
---
title: The Lighthouse Keeper
author: Ada Marsh
---

A loose panel before any heading.

# Chapter 3: The Fall

## Page 4

- Maren at the cliff edge.
> CAPTION: The wind never stopped.
> MAREN (SHOUTING): Hold on!
> A plain quote is a caption.
* Tobias runs,
  the item continues here
and lazily here.
+ Plus item.

1. Numbered item.
2) Other numbered item.

A paragraph panel
over two lines.

<!-- a comment
spanning lines -->
```python
print("code is ignored")
```
~~~
- not a panel either
~~~

## The harbour at night

- Unnamed page is numbered after page 4.

### Notes for the artist are ignored

---

# Prologue

## Pages 7-8 (spread)

- A spread panel. <!-- inline comment --> Still the same panel.

# Interlude at Sea

- Chapter label is the heading text.
"""


def test_structure_of_a_markdown_book() -> None:
    result = parse(BOOK, "markdown", "book.md")
    assert errors(result) == []
    assert warnings(result) == []
    assert keys(result) == [
        (None, None, 1),
        ("3", 4, 1),
        ("3", 4, 2),
        ("3", 4, 3),
        ("3", 4, 4),
        ("3", 4, 5),
        ("3", 4, 6),
        ("3", 5, 1),
        ("Prologue", 7, 1),
        ("Interlude at Sea", None, 1),
    ]
    assert texts(result) == [
        "A loose panel before any heading.",
        "Maren at the cliff edge.",
        "Tobias runs, the item continues here and lazily here.",
        "Plus item.",
        "Numbered item.",
        "Other numbered item.",
        "A paragraph panel over two lines.",
        "Unnamed page is numbered after page 4.",
        "A spread panel. Still the same panel.",
        "Chapter label is the heading text.",
    ]
    assert [spec.source.line for spec in result.specs[:4]] == [6, 12, 16, 19]
    assert result.job_metadata == {
        "book.md": {"title": "The Lighthouse Keeper", "author": "Ada Marsh"}
    }


def test_blockquotes_are_lettering_of_the_panel_above() -> None:
    spec = parse(BOOK, "markdown").specs[1]
    assert spec.metadata["lettering"] == [
        {"kind": "caption", "speaker": None, "modifier": None, "text": "The wind never stopped."},
        {"kind": "dialogue", "speaker": "MAREN", "modifier": "SHOUTING", "text": "Hold on!"},
        {
            "kind": "caption",
            "speaker": None,
            "modifier": None,
            "text": "A plain quote is a caption.",
        },
    ]
    assert spec.characters == ("MAREN",)
    assert spec.metadata["chapter_title"] == "The Fall"


def test_page_metadata() -> None:
    specs = parse(BOOK, "markdown").specs
    assert specs[7].metadata["page_heading"] == "The harbour at night"
    assert specs[8].metadata["spread_to"] == 8
    assert specs[8].metadata["page_note"] == "spread"


def test_chapter_heading_variants() -> None:
    text = "# Ch. 2\n- a\n# Chapter Twelve\n- b\n# Act IV: Storm\n- c\n# Chapters of old\n- d\n"
    assert [spec.chapter for spec in parse(text, "markdown").specs] == [
        "2",
        "12",
        "4",
        "Chapters of old",
    ]


def test_page_numbering_continues_after_explicit_numbers() -> None:
    text = "## Page 3\n- a\n## Extra\n- b\n## Page Ten\n- c\n## Last\n- d\n"
    assert [spec.page for spec in parse(text, "markdown").specs] == [3, 4, 10, 11]


def test_warnings_for_empty_items_pages_and_orphan_quotes() -> None:
    text = "## Page 1\n> CAPTION: before any panel\n- \n-\n- real\n## Page 2\n\n## Page 3\n- x\n"
    result = parse(text, "markdown", "w.md")
    assert warnings(result) == [
        "w.md:2: warning: blockquote before any panel on this page is ignored",
        "w.md:3: warning: empty list item skipped",
        "w.md:4: warning: empty list item skipped",
        "w.md:6: warning: page 2 has no panels",
    ]
    assert keys(result) == [(None, 1, 1), (None, 3, 1)]


def test_unclosed_fence_and_comment_warn() -> None:
    fence = parse("- a\n```\n- hidden\n", "markdown", "f.md")
    assert texts(fence) == ["a"]
    assert warnings(fence) == [
        "f.md:2: warning: code block is never closed; the rest of the file was ignored"
    ]
    comment = parse("- a\n<!-- open\n- hidden\n", "markdown", "c.md")
    assert texts(comment) == ["a"]
    assert warnings(comment) == [
        "c.md: warning: an HTML comment (<!--) is never closed; the rest was ignored"
    ]


def test_closing_hashes_and_markup_in_headings() -> None:
    text = "# Chapter 1 #\n## **Page 2** ##\n- a\n"
    assert keys(parse(text, "markdown")) == [("1", 2, 1)]


def test_mentions_in_markdown() -> None:
    assert parse("- @Maren waves\n", "markdown").specs[0].characters == ("Maren",)


def test_overlong_panel_is_an_error() -> None:
    result = parse("- " + "x" * 5000 + "\n- ok\n", "markdown", "l.md")
    assert texts(result) == ["ok"]
    assert errors(result) == ["l.md:1: prompt is 5,000 characters long; the maximum is 4,000"]


def test_off_panel_speakers_in_blockquotes_are_not_cast() -> None:
    from novelgen_desktop.prompts import parse_text

    text = "# Chapter 1\n## Page 1\n- The lamp room.\n> TOBIAS (OFF): Maren!\n> MAREN: Here.\n"
    result = parse_text(text, filename="x.md", format="markdown")
    (spec,) = result.specs
    assert spec.characters == ("MAREN",)
    assert [b["speaker"] for b in spec.metadata["lettering"]] == ["TOBIAS", "MAREN"]
