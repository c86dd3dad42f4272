from __future__ import annotations

import pytest
from prompts_testutil import errors, keys, parse, texts, warnings

from novelgen_desktop.prompts import parse_text
from novelgen_desktop.prompts.numbers import parse_number, roman_to_int, take_number
from novelgen_desktop.prompts.script_syntax import (
    parse_chapter_heading,
    parse_lettering,
    parse_page_heading,
    parse_panel_heading,
)

REALISTIC = """\
TITLE: SALT AND IRON
ISSUE #2
BY: Ada Marsh
DRAFT: 3 (for lettering)

Notes: everything here is front matter and is not drawn.
Maren is 19. Tobias is in his seventies.

PAGE ONE (SPLASH)

Establishing shot: Hallow Point lighthouse on its rock at night, the beam cutting through
driving rain. Tiny in the lower corner, a rowing boat.

CAPTION: Hallow Point. Three nights after the wreck.
SFX: HWOOOOM

PAGE TWO (five panels)

PANEL 1
Interior, the lamp room. Maren trims the wick, her face lit from below.
MAREN: Steady... steady...
  Come on, old girl.

PANEL 2: Close on the wick catching.
SFX: FWUMP

Panel 3.
Wide shot: the stairwell below, a lantern climbing toward us.
OLD TOBIAS (OFF): Maren! Is she lit?
MAREN (whispering): She's lit.

PANEL FOUR
Tobias reaches the top step, winded, one hand on the rail.
1. OLD TOBIAS: Forty years... never... dark.
2. MAREN: I know. Sit down before you fall down.
NOTE: Tobias should look frailer than in issue one.

Panel 5
CLOSE ON: Tobias's hand, trembling, on Maren's sleeve.
NO COPY.

PAGES 3-4 (six panels)

Panel 1 Double-page spread, top tier: the storm seen from the gallery, a ship's lights far out.
CAPTION (MAREN): That was when we saw her.

Panel 2
Maren points, rain streaming off her oilskin.
MAREN: There! Three points off the headland!

Panel 3
Tobias squints into the dark.
OLD TOBIAS: The Alder. God help them.

Panel 4
@Isak runs up the causeway below, waving a lantern.
ISAK (distant): Maren! The boat's ready!

Panel 5
Maren, torn, looks from Tobias to the sea.

Panel 6
She's already moving. Tobias reaches after her, too slow.
OLD TOBIAS: Maren -- don't you dare!

PAGE FIVE
Panel 1
The rowing boat climbs the face of a huge wave. Maren and Isak at the oars.
SFX: KRAKOOM
ISAK: PULL!

Panel 2
Silent panel. The boat hangs at the crest, the lighthouse beam sweeping over them.

THE END
"""


def test_realistic_script() -> None:
    result = parse(REALISTIC, "fullscript", "salt.script")
    assert errors(result) == []
    assert warnings(result) == []
    assert result.job_metadata["salt.script"] == {
        "title": "SALT AND IRON",
        "by": "Ada Marsh",
        "draft": "3 (for lettering)",
        "notes": "everything here is front matter and is not drawn.",
    }
    assert keys(result) == [
        ("2", 1, 1),
        ("2", 2, 1),
        ("2", 2, 2),
        ("2", 2, 3),
        ("2", 2, 4),
        ("2", 2, 5),
        ("2", 3, 1),
        ("2", 3, 2),
        ("2", 3, 3),
        ("2", 3, 4),
        ("2", 3, 5),
        ("2", 3, 6),
        ("2", 5, 1),
        ("2", 5, 2),
    ]
    specs = result.specs
    splash = specs[0]
    assert splash.text == (
        "Establishing shot: Hallow Point lighthouse on its rock at night, the beam cutting "
        "through driving rain. Tiny in the lower corner, a rowing boat."
    )
    assert splash.source.line == 11
    assert splash.metadata["page_note"] == "SPLASH"
    assert splash.metadata["lettering"] == [
        {
            "kind": "caption",
            "speaker": None,
            "modifier": None,
            "text": "Hallow Point. Three nights after the wreck.",
        },
        {"kind": "sfx", "speaker": None, "modifier": None, "text": "HWOOOOM"},
    ]

    lamp = specs[1]
    assert lamp.source.line == 19
    assert lamp.text == "Interior, the lamp room. Maren trims the wick, her face lit from below."
    assert lamp.metadata["lettering"] == [
        {
            "kind": "dialogue",
            "speaker": "MAREN",
            "modifier": None,
            "text": "Steady... steady... Come on, old girl.",
        },
    ]
    assert lamp.characters == ("MAREN",)

    assert specs[2].text == "Close on the wick catching."
    stair = specs[3]
    assert stair.text == "Wide shot: the stairwell below, a lantern climbing toward us."
    # OLD TOBIAS speaks (OFF): heard, not seen, so he is not cast into the panel.
    assert stair.characters == ("MAREN",)
    assert [item["modifier"] for item in stair.metadata["lettering"]] == ["OFF", "whispering"]

    numbered = specs[4]
    assert [item["speaker"] for item in numbered.metadata["lettering"]] == ["OLD TOBIAS", "MAREN"]
    assert numbered.metadata["notes"] == ["Tobias should look frailer than in issue one."]

    close = specs[5]
    assert close.text == "CLOSE ON: Tobias's hand, trembling, on Maren's sleeve."
    assert close.metadata["lettering"] == []
    assert close.metadata["notes"] == ["NO COPY."]

    spread = specs[6]
    assert spread.metadata["spread_to"] == 4
    assert spread.text.startswith("Double-page spread, top tier")
    assert spread.metadata["lettering"][0]["kind"] == "caption"
    assert spread.metadata["lettering"][0]["modifier"] == "MAREN"
    assert spread.characters == ()  # a narrating caption does not put Maren in the panel

    assert specs[9].characters == ("ISAK",)  # ISAK speaks and is @mentioned: cast once
    assert specs[10].metadata["lettering"] == []
    assert specs[12].characters == ("ISAK",)
    assert specs[13].text.startswith("Silent panel.")
    assert all(spec.chapter == "2" for spec in specs)


def test_realistic_script_is_detected_from_txt(tmp_path: object) -> None:
    from novelgen_desktop.prompts import detect_format

    assert detect_format("salt.txt", REALISTIC) == "fullscript"
    assert detect_format("salt.script", "") == "fullscript"


# Headings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "number", "spread_to", "note", "stated"),
    [
        ("PAGE 1", 1, None, None, None),
        ("PAGE ONE", 1, None, None, None),
        ("Page 12 (six panels)", 12, None, None, 6),
        ("PAGE 12 (6 PANELS)", 12, None, None, 6),
        ("PAGE 3 (1 panel)", 3, None, None, 1),
        ("PAGES 4-5", 4, 5, None, None),
        ("PAGES 4 – 5 (spread)", 4, 5, "spread", None),
        ("PAGES FOUR-FIVE", 4, 5, None, None),
        ("PAGES TWENTY-TWO - TWENTY-THREE", 22, 23, None, None),
        ("Pages 10 and 11", 10, 11, None, None),
        ("PAGE TWENTY-THREE", 23, None, None, None),
        ("PAGE twenty three", 23, None, None, None),
        ("PAGE NINETY-NINE", 99, None, None, None),
        ("PAGE ONE HUNDRED AND FIVE", 105, None, None, None),
        ("PAGE 7:", 7, None, None, None),
        ("PAGE 7.", 7, None, None, None),
        ("PAGE 1 — SPLASH", 1, None, "SPLASH", None),
        ("PAGE ONE SPLASH", 1, None, "SPLASH", None),
        ("**PAGE 3**", 3, None, None, None),
        ("## PAGE 3", 3, None, None, None),
        ("PAGE #4", 4, None, None, None),
        ("  page 2  ", 2, None, None, None),
        ("PAGE 2 (SPLASH): the storm", 2, None, "SPLASH; the storm", None),
    ],
)
def test_page_headings(
    line: str, number: int, spread_to: int | None, note: str | None, stated: int | None
) -> None:
    heading = parse_page_heading(line)
    assert heading is not None
    assert (heading.number, heading.spread_to, heading.note, heading.stated_panels) == (
        number,
        spread_to,
        note,
        stated,
    )


@pytest.mark.parametrize(
    "line",
    [
        "Page two of the letter is blank.",
        "Pages fly everywhere.",
        "Page after page of logbook entries.",
        "PAGEANT WAGONS ROLL PAST",
        "The page 3 of the book",
        "Paged 4",
    ],
)
def test_not_page_headings(line: str) -> None:
    assert parse_page_heading(line) is None


@pytest.mark.parametrize("line", ["PAGE TWENTY TWENTY", "PAGE TWENTYTHREE", "PAGE 1234567"])
def test_unreadable_page_numbers_are_headings_without_number(line: str) -> None:
    heading = parse_page_heading(line)
    assert heading is not None
    assert heading.number is None


@pytest.mark.parametrize(
    ("line", "number", "note", "rest"),
    [
        ("Panel 1", 1, None, ""),
        ("PANEL 1:", 1, None, ""),
        ("Panel 2.", 2, None, ""),
        ("PANEL ONE", 1, None, ""),
        ("PANEL TWELVE", 12, None, ""),
        ("PANEL 3: Wide shot of the harbour.", 3, None, "Wide shot of the harbour."),
        ("Panel 3 Wide shot of the harbour.", 3, None, "Wide shot of the harbour."),
        ("PANEL 4 (INSET) - Maren's eyes.", 4, "INSET", "Maren's eyes."),
        ("Panel", None, None, ""),
        ("PANEL:", None, None, ""),
        ("Panel: the sea.", None, None, "the sea."),
        ("PANEL (BIG)", None, "BIG", ""),
        ("**Panel 2**", 2, None, ""),
    ],
)
def test_panel_headings(line: str, number: int | None, note: str | None, rest: str) -> None:
    heading = parse_panel_heading(line)
    assert heading is not None
    assert (heading.number, heading.note, heading.rest) == (number, note, rest)


@pytest.mark.parametrize(
    "line",
    [
        "Panel lights flicker on the dashboard.",
        "Panels of glass shatter.",
        "Paneled walls.",
        "Panel two of the triptych shows a saint.",
    ],
)
def test_not_panel_headings(line: str) -> None:
    assert parse_panel_heading(line) is None


@pytest.mark.parametrize(
    ("line", "label", "title"),
    [
        ("CHAPTER 1", "1", None),
        ("CHAPTER ONE: THE LAST KEEPER", "1", "THE LAST KEEPER"),
        ("Chapter 3 - The Fall", "3", "The Fall"),
        ("Ch. 4", "4", None),
        ("ISSUE #2", "2", None),
        ("ACT II", "2", None),
        ("PART IV: Storm", "4", "Storm"),
        ("BOOK TWELVE", "12", None),
        ("PROLOGUE", "Prologue", None),
        ("Epilogue: Dawn", "Epilogue", "Dawn"),
    ],
)
def test_chapter_headings(line: str, label: str, title: str | None) -> None:
    heading = parse_chapter_heading(line)
    assert heading is not None
    assert (heading.label, heading.title) == (label, title)


@pytest.mark.parametrize(
    "line",
    [
        "Chapter one of her life begins.",
        "Act natural.",
        "PART OF THE WALL COLLAPSES.",
        "Chapters",
        "Acting on impulse",
    ],
)
def test_not_chapter_headings(line: str) -> None:
    assert parse_chapter_heading(line) is None


# Numbers -----------------------------------------------------------------------------------

_ONES = [
    "",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _spell(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        parts.append(_TENS[rest // 10] + (f"-{_ONES[rest % 10]}" if rest % 10 else ""))
    elif rest:
        parts.append(_ONES[rest])
    return " and ".join(parts) if hundreds and rest else " ".join(parts)


def test_every_number_word_up_to_999() -> None:
    for n in range(1, 1000):
        spelled = _spell(n)
        assert parse_number(spelled) == n, spelled
        assert parse_number(spelled.upper()) == n
        assert take_number(f"PAGE {spelled.upper()}", 5) == (n, 5 + len(spelled))


@pytest.mark.parametrize(
    "text",
    [
        "twenty twenty",
        "hundred",
        "one and",
        "ninety-ten",
        "zero hundred",
        "eleventy",
        "",
        "one hundred and",
    ],
)
def test_invalid_number_words(text: str) -> None:
    assert parse_number(text) is None


def test_roman_numerals() -> None:
    assert [roman_to_int(r) for r in ["I", "IV", "IX", "XIV", "XL", "MCMXCIX"]] == [
        1,
        4,
        9,
        14,
        40,
        1999,
    ]
    assert roman_to_int("IIII") is None
    assert roman_to_int("iv") is None


# Lettering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind", "speaker", "modifier", "text"),
    [
        ("CAPTION: Hallow Point, 1893.", "caption", None, None, "Hallow Point, 1893."),
        ("CAPTION (JOHN): He never came back.", "caption", None, "JOHN", "He never came back."),
        ("LOCATION CAPTION: The harbour.", "caption", None, None, "The harbour."),
        ("SFX: KRAKOOM", "sfx", None, None, "KRAKOOM"),
        ("SFX (door): BLAM", "sfx", None, "door", "BLAM"),
        ("JOHN: Hi.", "dialogue", "JOHN", None, "Hi."),
        ("JOHN (OFF): Over here!", "dialogue", "JOHN", "OFF", "Over here!"),
        ("MAREN (whispering): Quiet.", "dialogue", "MAREN", "whispering", "Quiet."),
        ("1. JOHN: Hi.", "dialogue", "JOHN", None, "Hi."),
        ("2) JOHN: Hi again.", "dialogue", "JOHN", None, "Hi again."),
        ("1 CAPTION: Later.", "caption", None, None, "Later."),
        ("DR. HALE: Remarkable.", "dialogue", "DR. HALE", None, "Remarkable."),
        ("O'NEILL: Aye.", "dialogue", "O'NEILL", None, "Aye."),
        (
            "MARY-JANE WATSON: Face it, tiger.",
            "dialogue",
            "MARY-JANE WATSON",
            None,
            "Face it, tiger.",
        ),
        ("ÉLODIE: Bonjour.", "dialogue", "ÉLODIE", None, "Bonjour."),
        (
            "OLD TOBIAS   (  weak ):   The logbook.",
            "dialogue",
            "OLD TOBIAS",
            "weak",
            "The logbook.",
        ),
        ("MAREN:", "dialogue", "MAREN", None, ""),
        (
            "TV: ...and the storm warning remains.",
            "dialogue",
            "TV",
            None,
            "...and the storm warning remains.",
        ),
        ("NOTE: Make it rain harder.", "note", None, None, "Make it rain harder."),
        (
            "ARTIST NOTE: Reference photos attached.",
            "note",
            None,
            None,
            "Reference photos attached.",
        ),
        ("NO COPY.", "note", None, None, "NO COPY."),
        ("(No dialogue)", "note", None, None, "(No dialogue)"),
        (
            "[Artist: sepia tones for the flashback]",
            "note",
            None,
            None,
            "Artist: sepia tones for the flashback",
        ),
    ],
)
def test_lettering_lines(
    line: str, kind: str, speaker: str | None, modifier: str | None, text: str
) -> None:
    item = parse_lettering(line)
    assert item is not None
    assert (item.kind, item.speaker, item.modifier, item.text) == (kind, speaker, modifier, text)


@pytest.mark.parametrize(
    "line",
    [
        "Wide shot: the city at dawn.",
        "CLOSE ON: her hands.",
        "EXTREME CLOSE-UP: an eye.",
        "ANGLE ON: the door.",
        "INT. LIGHTHOUSE - NIGHT: rain on the glass.",
        "EXT. HARBOUR: boats.",
        "POV: looking down the stairs.",
        "BIG PANEL: the wave hits.",
        "LATER: the storm has passed.",
        "NIGHT: the beam sweeps.",
        "Time: 10:30 in the morning.",
        "ONE TWO THREE FOUR FIVE: too many words for a name.",
        "Maren says: hello.",
        "12:30. The clock ticks.",
        "A sign reads: CLOSED.",
        "R2-D2: beeps",
        "",
    ],
)
def test_descriptions_with_colons_are_not_lettering(line: str) -> None:
    assert parse_lettering(line) is None


def test_non_character_voices_are_not_cast() -> None:
    script = "PAGE 1\nPanel 1\nA kitchen.\nRADIO: Storm warning.\nCROWD: Hurrah!\nMAREN: Shh.\n"
    [spec] = parse(script, "fullscript").specs
    assert spec.characters == ("MAREN",)
    assert [item["speaker"] for item in spec.metadata["lettering"]] == ["RADIO", "CROWD", "MAREN"]


# Structure rules ---------------------------------------------------------------------------


def test_default_chapter_and_chapter_headings() -> None:
    script = (
        "PAGE 1\nPanel 1\nA.\n"
        "CHAPTER TWO: The Wreck\nintro text ignored\nPAGE 1\nPanel 1\nB.\n"
        "ACT III\nPAGE 1\nPanel 1\nC.\n"
    )
    result = parse(script, "fullscript")
    assert keys(result) == [("1", 1, 1), ("2", 1, 1), ("3", 1, 1)]
    assert result.specs[1].metadata["chapter_title"] == "The Wreck"
    assert warnings(result) == []


def test_leading_chapter_one_names_the_default_chapter() -> None:
    result = parse("CHAPTER 1\nPAGE 1\nPanel 1\nA.\n", "fullscript")
    assert (warnings(result), keys(result)) == ([], [("1", 1, 1)])


def test_missing_panel_numbers_are_sequential() -> None:
    script = "PAGE 1\nPanel\nA.\nPANEL:\nB.\nPanel 5\nC.\nPanel\nD.\n"
    assert [spec.panel for spec in parse(script, "fullscript").specs] == [1, 2, 5, 6]


def test_duplicate_panel_numbers_warn_and_renumber() -> None:
    script = "PAGE 2\nPanel 1\nA.\nPanel 2\nB.\nPanel 2\nC.\nPanel 3\nD.\n"
    result = parse(script, "fullscript", "d.script")
    assert [spec.panel for spec in result.specs] == [1, 2, 3, 4]
    assert warnings(result) == [
        "d.script:6: warning: panel 2 appears twice on page 2; this one is numbered 3",
        "d.script:8: warning: panel 3 appears twice on page 2; this one is numbered 4",
    ]
    assert result.specs[2].metadata["panel_as_written"] == 2
    assert result.specs[3].metadata["panel_as_written"] == 3
    assert "panel_as_written" not in result.specs[1].metadata


def test_duplicate_pages_warn_and_keep_keys_unique() -> None:
    script = (
        "PAGE 3\nPanel 1\nA.\nPanel 2\nB.\nPAGE 3\nPanel 1\nC.\nPAGES 4-5\nPanel 1\nD.\n"
        "PAGE 5\nPanel 1\nE.\n"
    )
    result = parse(script, "fullscript", "p.script")
    assert keys(result) == [("1", 3, 1), ("1", 3, 2), ("1", 3, 3), ("1", 4, 1), ("1", 5, 1)]
    assert warnings(result) == [
        "p.script:6: warning: page 3 appears twice in chapter 1 (first at line 1); its panels "
        "are numbered after the earlier page's",
        "p.script:7: warning: panel 1 appears twice on page 3; this one is numbered 3",
        "p.script:12: warning: page 5 appears twice in chapter 1 (first at line 9); its panels "
        "are numbered after the earlier page's",
    ]


def test_empty_and_dialogue_only_panels_are_skipped_with_warnings() -> None:
    script = (
        "PAGE 1\n"
        "Panel 1\nA harbour.\n"
        "Panel 2\nMAREN: Only words here.\nSFX: BOOM\n"
        "Panel 3\n\n"
        "Panel 4\nA gull.\n"
        "PAGE 2\n\n"
        "PAGE 3\nCAPTION: Only a caption.\n"
    )
    result = parse(script, "fullscript", "e.script")
    assert keys(result) == [("1", 1, 1), ("1", 1, 4)]
    assert warnings(result) == [
        "e.script:4: warning: panel 2 on page 1 has lettering but no description; the prompt "
        "would be empty, so it is skipped",
        "e.script:7: warning: panel 3 on page 1 is empty; skipped",
        "e.script:11: warning: page 2 has no panels",
        "e.script:13: warning: page 3 has lettering but no panel description; nothing to draw, "
        "skipped",
    ]


def test_stated_panel_count_mismatch_warns() -> None:
    script = "PAGE 1 (three panels)\nPanel 1\nA.\nPanel 2\nB.\n"
    assert warnings(parse(script, "fullscript", "s.script")) == [
        "s.script:1: warning: page 1 says 3 panels but has 2"
    ]


def test_page_intro_is_a_page_note_and_its_lettering_goes_to_panel_one() -> None:
    script = (
        "PAGE 1\nThis whole page is a flashback; use sepia.\nCAPTION: Years ago.\n"
        "Panel 1\nA young Tobias.\nPanel 2\nHis ship.\n"
    )
    first, second = parse(script, "fullscript").specs
    assert first.metadata["page_note_text"] == "This whole page is a flashback; use sepia."
    assert second.metadata["page_note_text"] == "This whole page is a flashback; use sepia."
    assert first.metadata["lettering"][0]["text"] == "Years ago."
    assert second.metadata["lettering"] == []


def test_lettering_continuation_rules() -> None:
    script = (
        "PAGE 1\nPanel 1\n"
        "A kitchen.\n"
        "MAREN: The first line\n"
        "    continues when indented deeper.\n"
        "OLD TOBIAS:\n"
        "Text on the next line when the name stands alone.\n"
        "ISAK: Short.\n"
        "Back to description when not indented.\n"
        "  MAREN: indented lettering\n"
        "  same indent is description again.\n"
    )
    [spec] = parse(script, "fullscript").specs
    assert [item["text"] for item in spec.metadata["lettering"]] == [
        "The first line continues when indented deeper.",
        "Text on the next line when the name stands alone.",
        "Short.",
        "indented lettering",
    ]
    assert spec.text == (
        "A kitchen. Back to description when not indented. same indent is description again."
    )


def test_blank_line_ends_a_balloon() -> None:
    script = "PAGE 1\nPanel 1\nMAREN:\n\nA kitchen.\n"
    [spec] = parse(script, "fullscript").specs
    assert spec.text == "A kitchen."
    assert spec.metadata["lettering"][0]["text"] == ""


def test_errors_for_unreadable_numbers_and_bad_spreads() -> None:
    script = (
        "PAGE 1\nPanel 1\nA.\n"
        "PAGE TWENTY TWENTY\nPanel 1\nB.\n"
        "PAGE 0\nPanel 0\nC.\n"
        "PAGES 9-7\nPanel 1\nD.\n"
        "PAGE 10\nPANEL SIXX\nE.\n"
    )
    result = parse(script, "fullscript", "n.script")
    assert errors(result) == [
        "n.script:4: cannot read the page number 'TWENTY TWENTY'; write it as digits (PAGE 23) "
        "or words (PAGE TWENTY-THREE)",
        "n.script:7: page numbers start at 1, got 0",
        "n.script:8: panel numbers start at 1, got 0",
        "n.script:10: a spread must run forward over at most 11 pages, got pages 9-7",
        "n.script:14: cannot read the panel number 'SIXX'; write it as digits (PANEL 3) or words "
        "(PANEL THREE)",
    ]
    assert keys(result) == [("1", 1, 1), ("1", 2, 1), ("1", 1, 2), ("1", 9, 1), ("1", 10, 1)]


def test_panel_before_any_page_assumes_page_one() -> None:
    result = parse("Panel 1\nA.\nPanel 2\nB.\n", "fullscript", "o.script")
    assert keys(result) == [("1", 1, 1), ("1", 1, 2)]
    assert warnings(result) == [
        "o.script:1: warning: panel before the first PAGE heading; assuming page 1"
    ]


def test_end_marker_stops_the_page() -> None:
    script = "PAGE 1\nPanel 1\nA.\nEND OF ISSUE #3\nBack matter: letters page.\n"
    assert texts(parse(script, "fullscript")) == ["A."]


def test_script_without_pages_warns() -> None:
    result = parse("Just some prose.\nNo headings at all.\n", "fullscript", "x.script")
    assert result.specs == []
    assert warnings(result) == [
        "x.script: warning: no PAGE headings found; a Full Script needs 'PAGE 1' (or 'PAGE ONE') "
        "headings followed by 'Panel 1' headings"
    ]


def test_overlong_description_names_the_panel_and_length() -> None:
    script = "PAGE 2\nPanel 3\n" + "word " * 900 + "\n"
    assert errors(parse(script, "fullscript", "l.script")) == [
        "l.script:2: the description of panel 3 on page 2 is 4,499 characters long; the maximum "
        "is 4,000"
    ]


ADVERSARIAL = (
    "\ufeffTITLE:\t\n"
    "PAGE ONE:\r\n"
    "\tpanel 1 —\tThe description starts on the heading line.\n"
    "MAREN (): An empty modifier.\n"
    "CAPTION:\n"
    "SFX:\n"
    "BOOM -- the text of a balloon whose name stood alone.\n"
    "Page two of the letter is blank; it is still description.\n"
    "Pages fly everywhere.\n"
    "PART OF THE WALL COLLAPSES: all caps description with a colon.\n"
    "---\n"
    "* * *\n"
    "PANEL 2 (INSET)\n"
    "INT. LIGHTHOUSE - NIGHT\n"
    "A sign reads: CLOSED. (It is drawn, so it stays description.)\n"
    "NOT A SPEAKER BECAUSE FIVE WORDS: description.\n"
    "PAGE 2 (0 panels)\n"
    "Panel 1 ((nested)) parens\n"
    "Panel 2 :::\n"
    "PANEL 3:PANEL 4: heading text that looks like a heading.\n"
    "PAGES 3 - 3\n"
    "Panel 1\n"
    "x\n"
    "PAGE 4 (SPLASH)\n"
    "\n"
    "   \n"
    "ÉLODIE: Accents in a speaker's name.\n"
    "Spray everywhere: a description line.\n"
    "Chapter two of her life: this is still description.\n"
    "THE END\n"
    "PAGE 5\n"
    "Panel 1\n"
    "After THE END, a new page starts again.\n"
)


def test_adversarial_script() -> None:
    result = parse(ADVERSARIAL, "fullscript", "adv.script")
    assert errors(result) == [
        "adv.script:21: a spread must run forward over at most 11 pages, got pages 3-3",
    ]
    assert keys(result) == [
        ("1", 1, 1),
        ("1", 1, 2),
        ("1", 2, 1),
        ("1", 2, 2),
        ("1", 2, 3),
        ("1", 3, 1),
        ("1", 4, 1),
        ("1", 5, 1),
    ]
    first = result.specs[0]
    assert first.text == (
        "The description starts on the heading line. Page two of the letter is blank; it is "
        "still description. Pages fly everywhere. PART OF THE WALL COLLAPSES: all caps "
        "description with a colon."
    )
    assert [item["kind"] for item in first.metadata["lettering"]] == ["dialogue", "caption", "sfx"]
    assert first.metadata["lettering"][0]["modifier"] is None
    assert first.metadata["lettering"][2]["text"] == (
        "BOOM -- the text of a balloon whose name stood alone."
    )
    assert result.job_metadata == {}
    inset = result.specs[1]
    assert inset.metadata["panel_note"] == "INSET"
    assert inset.text.startswith("INT. LIGHTHOUSE - NIGHT A sign reads: CLOSED.")
    assert inset.text.endswith("NOT A SPEAKER BECAUSE FIVE WORDS: description.")
    assert result.specs[2].text == "((nested)) parens"
    assert result.specs[4].text == "PANEL 4: heading text that looks like a heading."
    splash = result.specs[6]
    assert splash.text == (
        "Spray everywhere: a description line. Chapter two of her life: this is still description."
    )
    assert splash.characters == ("ÉLODIE",)
    assert warnings(result) == ["adv.script:17: warning: page 2 says 0 panels but has 3"]


@pytest.mark.parametrize("modifier", ["OFF", "O.S.", "off-panel", "V.O.", "PHONE", "OP"])
def test_speakers_who_are_not_in_the_panel_are_not_cast(modifier: str) -> None:
    text = (
        "PAGE 1\n"
        "PANEL 1\n"
        "The lamp room at night.\n"
        f"TOBIAS ({modifier}): Maren!\n"
        "MAREN (whispering): Not now.\n"
    )
    result = parse_text(text, filename="s.script", format="fullscript")
    (spec,) = result.specs
    assert spec.characters == ("MAREN",)
    assert [b["speaker"] for b in spec.metadata["lettering"]] == ["TOBIAS", "MAREN"]
