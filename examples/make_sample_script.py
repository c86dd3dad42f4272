"""Generate ``the-lighthouse-keeper.script``: a 300-panel comic Full Script for demos and tests.

A hand-written script of that size would drift every time someone edited it; generating it
deterministically (no randomness, only index arithmetic over lists) keeps the sample exactly
300 panels while still reading like a real script: a title block, three chapters, mixed
heading styles (``PAGE ONE``, ``PAGE 12 (six panels)``, ``PAGE TWENTY-THREE``), a splash page,
a spread, captions, SFX, numbered balloons and a recurring cast.

Run ``python examples/make_sample_script.py`` to rewrite the file next to this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

TOTAL_PANELS = 300

WORDS = [
    "ZERO",
    "ONE",
    "TWO",
    "THREE",
    "FOUR",
    "FIVE",
    "SIX",
    "SEVEN",
    "EIGHT",
    "NINE",
    "TEN",
    "ELEVEN",
    "TWELVE",
    "THIRTEEN",
    "FOURTEEN",
    "FIFTEEN",
    "SIXTEEN",
    "SEVENTEEN",
    "EIGHTEEN",
    "NINETEEN",
]
TENS = {2: "TWENTY", 3: "THIRTY", 4: "FORTY", 5: "FIFTY"}


def number_words(n: int) -> str:
    if n < 20:
        return WORDS[n]
    tens, units = divmod(n, 10)
    return TENS[tens] + (f"-{WORDS[units]}" if units else "")


# Each chapter: title, number of page blocks, the spread's first page (or None), and scenes.
# A scene is where a page takes place, and whether actions set indoors or outdoors fit it.
CHAPTERS = [
    (
        "THE LAST KEEPER",
        16,
        None,
        [
            ("the lamp room at the top of Hallow Point lighthouse", "in"),
            ("the narrow iron gallery outside the lantern", "out"),
            ("the keeper's kitchen, a kettle steaming on the range", "in"),
            ("the causeway of black rocks leading to the tower", "out"),
            ("the village harbour, fishing boats knocking together", "out"),
            ("the cramped oil store at the foot of the tower", "in"),
            ("the cliff path above the cove, gorse bent flat by the wind", "out"),
        ],
    ),
    (
        "THE WRECK",
        16,
        9,
        [
            ("the shingle beach below the cliffs, wreckage strewn everywhere", "out"),
            ("the broken deck of the schooner Alder, listing in the surf", "out"),
            ("the harbourmaster's office, charts pinned across every wall", "in"),
            ("the flooded hold of the schooner, lantern light on black water", "in"),
            ("the village chapel, where the drowned are laid out in rows", "in"),
            ("the tide pools at low water, the wreck looming behind", "out"),
        ],
    ),
    (
        "THE LIGHT",
        23,
        None,
        [
            ("the spiral stairs of the tower, the lamp far above", "in"),
            ("the lamp room, the great lens turning slowly", "in"),
            ("the gallery in full storm, rain driving sideways", "out"),
            ("the headland at dawn, the sea finally calm", "out"),
            ("the keeper's bedroom, an old sea chest open on the floor", "in"),
            ("the harbour wall, the whole village watching the sea", "out"),
            ("a rowing boat pulling hard between the breakers", "out"),
        ],
    ),
]

SHOTS = [
    "Wide shot",
    "Close on",
    "Medium shot",
    "Low angle",
    "High angle",
    "Over the shoulder",
    "Extreme close-up",
    "Establishing shot",
    "Tight on",
    "Bird's-eye view",
    "Two-shot",
]

ACTIONS = {
    "any": [
        "Old Tobias lights his pipe with shaking, scarred hands",
        "Captain Voss stands with his collar up, glaring at Maren",
        "Isak crouches, turning a brass ship's bell over in his hands",
        "Maren and Old Tobias stand side by side, not speaking",
        "Old Tobias sits heavily, one hand pressed to his chest",
        "Captain Voss turns away, his face hidden in shadow",
        "Maren holds the storm lantern high above her head",
        "Maren kneels beside a body wrapped in sailcloth",
        "Isak ties off a bowline, knuckles white",
        "Mrs. Aalto clutches a child's knitted cap to her chest",
        "O'Neill leans on a boathook, chewing his lip",
    ],
    "in": [
        "Maren hauls a can of lamp oil up the last few steps",
        "Maren wipes soot from the glass with her sleeve",
        "Captain Voss unrolls a water-stained chart",
        "Maren reads a letter by candlelight, her jaw set",
        "Maren trims the lamp wick with careful, practised cuts",
        "Captain Voss slams his fist onto the table",
        "Old Tobias winds the clockwork that turns the lens",
        "Old Tobias opens the logbook to a page dated fifty years ago",
    ],
    "out": [
        "Isak drags a coil of sodden rope across the stones",
        "Old Tobias points a crooked finger out to sea",
        "Isak laughs, hair plastered to his forehead by the rain",
        "Isak and Maren haul a half-drowned sailor clear of the water",
        "Maren climbs against the wind, one hand on the rail",
        "Isak sprints along the shore, shouting something we can't hear",
        "Captain Voss studies the horizon through a brass telescope",
        "Maren wipes salt spray from her eyes",
    ],
}

DETAILS = {
    "in": [
        "Lamp light throws long shadows across the stone.",
        "Warm firelight; the only warmth in the whole book so far.",
        "A single candle; everything beyond it is black.",
        "Grey daylight leaks through a salt-crusted window.",
        "The storm rattles the shutters behind them.",
        "Muted colours, quiet, almost still.",
        "The great lens throws a slow sweep of light across the walls.",
    ],
    "out": [
        "Grey morning light, gulls wheeling overhead.",
        "The sky is bruised purple with the coming storm.",
        "Rain streaks the frame diagonally.",
        "Everything is silver under a full moon.",
        "Sea spray hangs in the air like smoke.",
        "A thin line of gold on the horizon: dawn.",
        "Fog erases everything beyond a few yards.",
        "Lightning freezes the scene in stark white.",
        "Wind tears at coats and hair.",
    ],
}

CAPTIONS = [
    "Hallow Point. The winter of 1893.",
    "Forty years he kept this light.",
    "The sea does not forgive.",
    "Three days later.",
    "That night, the storm came back.",
    "Nobody in the village would say his name.",
    "Dawn.",
    "Some lights are kept. Some are only remembered.",
]
NARRATION = [
    "He taught me every part of the lamp but one.",
    "I should have asked him then.",
    "I counted the bodies twice. Then a third time.",
    "The light never went out. Not once.",
]
SFX = ["KRAKOOM", "FWOOSH", "CREEEAK", "TAK TAK TAK", "SPLASSH", "KRRRAK", "HWOOOO", "CLANG"]

DIALOGUE = [
    ("MAREN", None, "The glass needs cleaning again."),
    ("OLD TOBIAS", None, "Forty years, girl. Forty years and she never went dark."),
    ("ISAK", None, "There's a ship out there. I swear I saw her lights!"),
    ("CAPTAIN VOSS", None, "You'll keep that lamp lit, or you'll answer to me."),
    ("MAREN", "whispering", "Tobias... is that blood?"),
    ("OLD TOBIAS", "OFF", "Maren! The wick!"),
    ("ISAK", "SHOUTING", "Rope! Throw me the rope!"),
    ("MRS. AALTO", None, "My boy was on that ship."),
    ("MAREN", None, "Then we go out. Tonight."),
    ("OLD TOBIAS", None, "Some things the sea keeps for itself."),
    ("CAPTAIN VOSS", "OFF", "Nobody rows out in this. Nobody."),
    ("ISAK", None, "You're as stubborn as he is."),
    ("MAREN", None, "I'm not leaving him out there."),
    ("O'NEILL", None, "Bell's from the Alder, right enough."),
    ("OLD TOBIAS", "weak", "The logbook... read the logbook."),
]

PANEL_HEADING_STYLES = ["Panel {n}", "PANEL {n}:", "Panel {n}.", "PANEL {w}"]


def panel_counts(blocks: int) -> list[int]:
    """4–7 panels per page, summing with the splash page to exactly TOTAL_PANELS."""
    pattern = [5, 6, 4, 7, 5, 6, 5, 6, 4, 7, 6, 5, 5, 4, 6]
    counts = [pattern[i % len(pattern)] for i in range(blocks)]
    counts[0] = 1  # the opening splash
    index = len(counts) - 1
    while sum(counts) != TOTAL_PANELS:
        step = 1 if sum(counts) < TOTAL_PANELS else -1
        if 4 <= counts[index] + step <= 7:
            counts[index] += step
        index = index - 1 if index > 1 else len(counts) - 1
    return counts


def lettering(panel_index: int, page_index: int) -> list[str]:
    """A deterministic mix: some silent panels, some captions, dialogue and SFX."""
    lines: list[str] = []
    kind = (panel_index * 7 + page_index) % 9
    if panel_index % 11 == 0:
        lines.append(f"CAPTION: {CAPTIONS[(panel_index // 11) % len(CAPTIONS)]}")
    if kind in (1, 4):
        lines.append(f"CAPTION (MAREN): {NARRATION[panel_index % len(NARRATION)]}")
    if kind in (0, 2, 3, 5, 7):
        speaker, modifier, text = DIALOGUE[panel_index % len(DIALOGUE)]
        mod = f" ({modifier})" if modifier else ""
        numbered = page_index % 4 == 1
        prefix = "1. " if numbered else ""
        lines.append(f"{prefix}{speaker}{mod}: {text}")
        if kind == 3:
            speaker2, modifier2, text2 = DIALOGUE[(panel_index * 5 + 3) % len(DIALOGUE)]
            mod2 = f" ({modifier2})" if modifier2 else ""
            lines.append(f"{'2. ' if numbered else ''}{speaker2}{mod2}: {text2}")
    if kind in (6, 8) or panel_index % 13 == 5:
        lines.append(f"SFX: {SFX[panel_index % len(SFX)]}")
    if not lines and panel_index % 3 == 0:
        lines.append("NO COPY.")
    return lines


def description(panel_index: int, scene: tuple[str, str]) -> str:
    place, kind = scene
    actions = ACTIONS["any"] + ACTIONS[kind]
    details = DETAILS[kind]
    shot = SHOTS[(panel_index * 3) % len(SHOTS)]
    action = actions[(panel_index * 7) % len(actions)]
    detail = details[(panel_index * 5) % len(details)]
    return f"{shot}: {place}. {action}. {detail}"


def page_heading(chapter_index: int, page: int, spread_to: int | None, panels: int) -> str:
    count = f" ({number_words(panels).lower()} panels)" if (page + chapter_index) % 3 == 0 else ""
    if spread_to is not None:
        return f"PAGES {page}-{spread_to}{count}"
    if chapter_index == 0 or (chapter_index == 2 and page % 2 == 0):
        return f"PAGE {number_words(page)}{count}"
    return f"PAGE {page}{count}"


def build() -> str:
    out: list[str] = [
        "TITLE: The Lighthouse Keeper",
        "BY: Ada Marsh",
        "DRAFT: Third draft",
        "ARTIST: TBD",
        "",
        "Full Script. Three chapters. Hallow Point is a fictional village on a northern coast;",
        "keep the palette cold everywhere except inside the keeper's kitchen.",
        "",
    ]
    blocks_total = sum(blocks for _, blocks, _, _ in CHAPTERS)
    counts = panel_counts(blocks_total)
    panel_index = 0
    block_index = 0
    for chapter_index, (title, blocks, spread_at, scenes) in enumerate(CHAPTERS):
        out += [f"CHAPTER {number_words(chapter_index + 1)}: {title}", ""]
        page = 1
        for block in range(blocks):
            panels = counts[block_index]
            spread_to = page + 1 if spread_at is not None and page == spread_at else None
            scene = scenes[(block * 5 + chapter_index) % len(scenes)]
            if block_index == 0:
                out += ["PAGE ONE (SPLASH)", ""]
                out += [description(panel_index, scene), ""]
                out += [f"CAPTION: {CAPTIONS[0]}", f"CAPTION: Chapter One. {title.title()}.", ""]
                panel_index += 1
            else:
                out += [page_heading(chapter_index, page, spread_to, panels), ""]
                for number in range(1, panels + 1):
                    style = PANEL_HEADING_STYLES[(panel_index + block) % len(PANEL_HEADING_STYLES)]
                    heading = style.format(n=number, w=number_words(number))
                    text = description(panel_index, scene)
                    if panel_index % 5 == 2 and style == "PANEL {n}:":
                        out.append(f"{heading} {text}")
                    else:
                        out += [heading, text]
                    if panel_index % 17 == 4:
                        out.append("NOTE: Reference the lens photos in the shared folder.")
                    out += lettering(panel_index, block_index)
                    out.append("")
                    panel_index += 1
            page = (spread_to or page) + 1
            block_index += 1
        out += [f"END OF CHAPTER {number_words(chapter_index + 1)}", ""]
    assert panel_index == TOTAL_PANELS, panel_index
    return "\n".join(out)


def main(argv: list[str]) -> int:
    target = (
        Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("the-lighthouse-keeper.script")
    )
    target.write_text(build(), encoding="utf-8", newline="\n")
    print(f"wrote {target} ({TOTAL_PANELS} panels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
