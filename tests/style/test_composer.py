"""The composer, example by example: who is in a panel, chapter overrides, reference images,
the layout, and the trimming order when a prompt is too long."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.style import (
    ComposeError,
    Composer,
    PanelInput,
    StyleBible,
    compose,
    parse_style_bible,
)
from novelgen_desktop.style.composer import panel_of
from tests.style.style_testutil import parse, write_png

BIBLE = """\
[bible]
name = "Hallow Point"

[style]
medium = "ink and watercolour"
palette = "cold greys"
line_work = "bold brush outlines"
lighting = "low lamp light"
aspect = "portrait, 2:3"
extra = "paper grain"
negative = ["text", "speech balloons", "logos"]

[characters.Maren]
description = "A woman of thirty. Dark hair tied back."
short = "Woman, 30, dark hair."
aliases = ["Mar"]

[characters."Old Tobias"]
description = "A stooped man of seventy. White beard."
aliases = ["Tobias", "the keeper"]

[characters.Isak]
description = "A boy of fifteen."

[characters."Mrs. Aalto"]
description = "A widow in black."

[characters."O'Neill"]
description = "A fisherman with a boathook."

[characters.Will]
description = "A quiet fisherman."
link = "mention"

[characters.Patience]
description = "A girl with a slate."

[locations."lamp room"]
description = "A round glass room at the top of the tower."
short = "The glass lamp room."

[locations.causeway]
description = "Black rocks leading to the tower."

[props."storm lantern"]
description = "A tin storm lantern with a cracked glass."
short = "A tin lantern."

[props.bell]
description = "A brass ship's bell."
aliases = ["ship's bell"]

[props.Wick]
description = "A lamp wick."
link = "mention"

[chapters.2]
location = "causeway"

[chapters.2.style]
lighting = "storm light"
negative = ["sunshine"]

[chapters.2.characters.Maren]
description = "A woman of thirty; her left hand bandaged."
"""


@pytest.fixture
def bible(tmp_path: Path) -> StyleBible:
    return parse(BIBLE, tmp_path)


def cast(bible: StyleBible, text: str, **kwargs: object) -> tuple[str, ...]:
    return compose(PanelInput(text, **kwargs), bible).characters  # type: ignore[arg-type]


# -- who is in the panel -----------------------------------------------------------------------


def test_mentions(bible: StyleBible) -> None:
    composed = compose(PanelInput("@Maren hands @{Old Tobias} the lamp."), bible)
    assert composed.characters == ("Maren", "Old Tobias")
    assert composed.description == "Maren hands Old Tobias the lamp."


def test_possessive_mention(bible: StyleBible) -> None:
    composed = compose(PanelInput("@Isak's lantern swings; @Isak’s hands shake."), bible)
    assert composed.characters == ("Isak",)
    assert composed.description == "Isak's lantern swings; Isak’s hands shake."


def test_mention_of_a_name_with_an_apostrophe(bible: StyleBible) -> None:
    composed = compose(PanelInput("@O'Neill's boathook, then @O'Neill."), bible)
    assert composed.characters == ("O'Neill",)
    assert composed.description == "O'Neill's boathook, then O'Neill."


def test_mentions_by_alias_and_in_any_case_give_the_canonical_name(bible: StyleBible) -> None:
    composed = compose(PanelInput("@mar and @TOBIAS and @{the keeper}."), bible)
    assert composed.characters == ("Maren", "Old Tobias")
    assert composed.description == "Maren and Old Tobias and Old Tobias."


def test_unknown_mention_is_an_error_with_a_suggestion(bible: StyleBible) -> None:
    with pytest.raises(ComposeError) as caught:
        compose(PanelInput("@Marn waits for @Isak."), bible)
    assert str(caught.value) == (
        "@Marn is not in style bible 'Hallow Point' (did you mean @Maren or @Mar?)"
    )


def test_unknown_multi_word_mention_suggests_the_braces(bible: StyleBible) -> None:
    with pytest.raises(ComposeError) as caught:
        compose(PanelInput("@Old waits."), bible)
    assert "did you mean @{Old Tobias}?" in str(caught.value)
    with pytest.raises(ComposeError) as caught:
        compose(PanelInput("@Mrs. Aalto waits."), bible)
    assert "@Mrs is not in style bible" in str(caught.value)
    assert "@{Mrs. Aalto}" in str(caught.value)


def test_every_unknown_mention_is_reported_once(bible: StyleBible) -> None:
    with pytest.raises(ComposeError) as caught:
        compose(PanelInput("@Zed and @Zed and @Qux."), bible)
    message = str(caught.value)
    assert message.count("@Zed is not") == 1
    assert "@Qux is not" in message
    assert "known names: " in message


def test_email_addresses_and_handles_are_not_mentions(bible: StyleBible) -> None:
    composed = compose(PanelInput("A letter to maren@hallow.example and x.@Isak."), bible)
    assert composed.characters == ()
    assert composed.description == "A letter to maren@hallow.example and x.@Isak."


def test_characters_auto_link_as_written_in_capitals_or_capitalised(bible: StyleBible) -> None:
    assert cast(bible, "Maren climbs.") == ("Maren",)
    assert cast(bible, "MAREN climbs.") == ("Maren",)
    assert cast(bible, "Maren's lamp.") == ("Maren",)
    assert cast(bible, "maren climbs.") == ()
    assert cast(bible, "MaReN climbs.") == ()
    # an alias written in lower case in the bible links as written, and capitalised
    assert cast(bible, "the keeper sleeps.") == ("Old Tobias",)
    assert cast(bible, "The keeper sleeps.") == ("Old Tobias",)
    assert cast(bible, "THE KEEPER sleeps.") == ("Old Tobias",)


def test_a_name_that_is_a_word_is_not_linked_in_lower_case(bible: StyleBible) -> None:
    # Patience links capitalised, not as the word patience.
    assert cast(bible, "She has no patience left.") == ()
    assert cast(bible, "Patience waits.") == ("Patience",)


def test_link_mention_entries_only_by_at(bible: StyleBible) -> None:
    assert cast(bible, "Will he come? Will waits. WILL.") == ()
    assert cast(bible, "@Will waits.") == ("Will",)
    composed = compose(PanelInput("Maren trims the Wick."), bible)
    assert composed.props == ()
    assert compose(PanelInput("Maren trims the @Wick."), bible).props == ("Wick",)


def test_auto_links_are_whole_words_and_longest_first(bible: StyleBible) -> None:
    assert cast(bible, "Marens and Isaksen.") == ()
    assert cast(bible, "Old Tobias sleeps.") == ("Old Tobias",)
    composed = compose(PanelInput("Tobias and Mrs. Aalto."), bible)
    assert composed.characters == ("Old Tobias", "Mrs. Aalto")


def test_places_and_props_link_in_any_case(bible: StyleBible) -> None:
    composed = compose(PanelInput("The Lamp Room; a STORM LANTERN; the ship's bell."), bible)
    assert composed.locations == ("lamp room",)
    assert composed.props == ("storm lantern", "bell")


def test_order_is_the_order_of_appearance(bible: StyleBible) -> None:
    composed = compose(PanelInput("Isak, then @Maren, then Mrs. Aalto, then @Isak again."), bible)
    assert composed.characters == ("Isak", "Maren", "Mrs. Aalto")


def test_script_cast_is_included_after_the_text(bible: StyleBible) -> None:
    composed = compose(PanelInput("Isak waits.", characters=("MAREN", "OLD TOBIAS")), bible)
    assert composed.characters == ("Isak", "Maren", "Old Tobias")
    assert composed.warnings == ()


def test_script_cast_may_name_a_link_mention_entry(bible: StyleBible) -> None:
    assert cast(bible, "A boat.", characters=("WILL",)) == ("Will",)


def test_unknown_cast_is_a_warning_not_an_error(bible: StyleBible) -> None:
    composed = compose(PanelInput("Isak waits.", characters=("ISAK", "TOM", "Ada")), bible)
    assert composed.characters == ("Isak",)
    assert composed.unknown_cast == ("TOM", "Ada")
    assert composed.warnings == ("not in the style bible (drawn without a sheet): TOM, Ada",)


def test_panel_of_a_spec(bible: StyleBible) -> None:
    spec = PromptSpec(
        "Isak waits.",
        SourceLocation("a.script", 3),
        chapter="2",
        characters=("MAREN",),
        style="pencil",
    )
    assert panel_of(spec) == PanelInput("Isak waits.", "2", ("MAREN",), "pencil")


# -- the layout --------------------------------------------------------------------------------


def test_layout_of_a_full_prompt(bible: StyleBible) -> None:
    composed = compose(
        PanelInput(
            "@Maren   raises the storm lantern\n in the lamp room.",
            chapter="1",
            characters=("ISAK",),
            style="pencil sketch",
        ),
        bible,
    )
    assert composed.text == (
        "Maren raises the storm lantern in the lamp room.\n"
        "\n"
        "Panel style: pencil sketch.\n"
        "\n"
        "Characters:\n"
        "- Maren: A woman of thirty. Dark hair tied back.\n"
        "- Isak: A boy of fifteen.\n"
        "Setting: lamp room: A round glass room at the top of the tower.\n"
        "Props: storm lantern: A tin storm lantern with a cracked glass.\n"
        "Style: ink and watercolour; palette: cold greys; line work: bold brush outlines; "
        "lighting: low lamp light; paper grain.\n"
        "Format: portrait, 2:3.\n"
        "Avoid: text, speech balloons, logos."
    )
    assert composed.trimmed == ()
    assert composed.bible_name == "Hallow Point"
    assert composed.bible_version == bible.version


def test_a_bible_with_only_a_medium(tmp_path: Path) -> None:
    minimal = parse('[style]\nmedium = "pencil."\n', tmp_path)
    composed = compose(PanelInput("A gull."), minimal)
    assert composed.text == "A gull.\n\nStyle: pencil."


# -- chapters ----------------------------------------------------------------------------------


def test_chapter_override_replaces_style_adds_negatives_and_sheets(bible: StyleBible) -> None:
    composed = compose(PanelInput("Maren in the lamp room.", chapter="2"), bible)
    text = composed.text
    assert "- Maren: A woman of thirty; her left hand bandaged." in text
    assert "lighting: storm light;" in text
    assert "low lamp light" not in text
    assert "Avoid: text, speech balloons, logos, sunshine." in text
    assert composed.locations == ("lamp room",)  # the panel's own place wins


def test_chapter_default_location(bible: StyleBible) -> None:
    composed = compose(PanelInput("Maren waits.", chapter="2"), bible)
    assert composed.locations == ("causeway",)
    assert "Setting: causeway: Black rocks leading to the tower." in composed.text
    assert compose(PanelInput("Maren waits.", chapter="1"), bible).locations == ()


def test_chapter_labels_match_in_any_case(tmp_path: Path) -> None:
    bible = parse(
        '[style]\nmedium = "ink"\n[chapters.Prologue.style]\nlighting = "dusk"\n', tmp_path
    )
    assert "lighting: dusk" in compose(PanelInput("A gull.", chapter="PROLOGUE"), bible).text
    assert "dusk" not in compose(PanelInput("A gull.", chapter="1"), bible).text


def test_other_chapters_use_the_global_sheet(bible: StyleBible) -> None:
    for chapter in (None, "1", "3"):
        text = compose(PanelInput("Maren waits.", chapter=chapter), bible).text
        assert "- Maren: A woman of thirty. Dark hair tied back." in text


# -- reference images --------------------------------------------------------------------------


@pytest.fixture
def illustrated(tmp_path: Path) -> StyleBible:
    for name, colour in [
        ("maren.png", (200, 0, 0)),
        ("maren-side.png", (0, 200, 0)),
        ("tobias.png", (0, 0, 200)),
        ("isak.png", (200, 200, 0)),
        ("bell.png", (0, 200, 200)),
        ("bandaged.png", (90, 90, 90)),
    ]:
        write_png(tmp_path / name, colour)
    write_png(tmp_path / "same-as-maren.png", (200, 0, 0))
    return parse(
        """
        [bible]
        max_references = 3
        [style]
        medium = "ink"
        [characters.Maren]
        description = "A woman."
        references = ["maren.png", "maren-side.png"]
        [characters.Tobias]
        description = "An old man."
        references = ["tobias.png"]
        [characters.Isak]
        description = "A boy."
        references = ["isak.png"]
        [characters.Twin]
        description = "Maren's twin."
        references = ["same-as-maren.png"]
        [props.bell]
        description = "A bell."
        references = ["bell.png"]
        [chapters.2.characters.Maren]
        references = ["bandaged.png"]
        """,
        tmp_path,
    )


def test_references_in_order_with_their_labels(illustrated: StyleBible) -> None:
    composed = compose(PanelInput("The bell; Tobias and Maren."), illustrated)
    assert [r.name for r in composed.references] == ["tobias.png", "maren.png", "maren-side.png"]
    assert "- Tobias (reference image: tobias.png): An old man." in composed.text
    assert "- Maren (reference images: maren.png, maren-side.png): A woman." in composed.text
    # characters first: the bell's image is over the limit of 3
    assert "Props: bell: A bell." in composed.text
    assert composed.warnings == (
        "reference images over the limit of 3 not attached: bell.png (bell)",
    )


def test_the_same_image_is_attached_once(illustrated: StyleBible) -> None:
    composed = compose(PanelInput("Twin and Maren."), illustrated)
    assert [r.name for r in composed.references] == ["same-as-maren.png", "maren-side.png"]
    # Maren's first image is the twin's (same bytes): both labels name the attached file
    assert "- Twin (reference image: same-as-maren.png)" in composed.text
    assert "- Maren (reference images: maren.png, maren-side.png)" in composed.text


def test_max_references_cap(illustrated: StyleBible) -> None:
    composed = compose(PanelInput("Maren, Tobias, Isak and the bell."), illustrated)
    assert [r.name for r in composed.references] == ["maren.png", "maren-side.png", "tobias.png"]
    assert "- Isak: A boy." in composed.text  # no image attached, no label
    assert composed.warnings == (
        "reference images over the limit of 3 not attached: isak.png (Isak), bell.png (bell)",
    )


def test_no_references_allowed(tmp_path: Path, illustrated: StyleBible) -> None:
    none = dataclasses.replace(illustrated, max_references=0)
    composed = compose(PanelInput("Tobias."), none)
    assert composed.references == ()
    assert "- Tobias: An old man." in composed.text
    assert composed.warnings == (
        "reference images over the limit of 0 not attached: tobias.png (Tobias)",
    )


def test_chapter_override_replaces_references(illustrated: StyleBible) -> None:
    composed = compose(PanelInput("Maren.", chapter="2"), illustrated)
    assert [r.name for r in composed.references] == ["bandaged.png"]
    assert "- Maren (reference image: bandaged.png): A woman." in composed.text


# -- length ------------------------------------------------------------------------------------

TRIM_BIBLE = """\
[bible]
max_prompt_chars = 32000

[style]
medium = "ink"
palette = "cold greys"
line_work = "bold lines"
lighting = "lamp light"
aspect = "square"
extra = "paper grain"
negative = ["text", "logos", "borders"]

[characters.Ann]
description = "A tall woman in a long oilskin coat. She carries a lamp."
short = "Tall woman, oilskin. Lamp."

[characters.Bo]
description = "A short man with a red scarf. He limps."

[locations.harbour]
description = "A stone harbour with fishing boats knocking together."
short = "A stone harbour."

[props.rope]
description = "A coil of sodden hemp rope."
short = "A rope."

[props.net]
description = "A torn fishing net heaped on the quay."
short = "A net."
"""

TRIM_PANEL = PanelInput("Ann and Bo at the harbour with a net and rope.")

# Props and settings are cut in reverse order of appearance (the net is named before the
# rope), characters too (Bo before Ann), and each level for every character before the next
# level; a step that changes nothing (Bo has no short sheet) is not reported.
TRIM_ORDER = (
    "prop rope: short sheet",
    "prop net: short sheet",
    "prop rope: left out",
    "prop net: left out",
    "style: extra",
    "setting harbour: short sheet",
    "avoid: 'borders'",
    "avoid: 'logos'",
    "style: lighting",
    "style: line work",
    "style: palette",
    "setting harbour: left out",
    "character Ann: short sheet",
    "character Bo: first sentence",
    "character Ann: first sentence",
    "character Bo: name only",
    "character Ann: name only",
)
FLOOR = (
    "Ann and Bo at the harbour with a net and rope.\n\n"
    "Characters:\n- Ann\n- Bo\nStyle: ink.\nFormat: square.\nAvoid: text."
)


def _with_limit(bible: StyleBible, limit: int) -> StyleBible:
    return dataclasses.replace(bible, max_prompt_chars=limit)


def test_trimming_order(tmp_path: Path) -> None:
    bible = parse(TRIM_BIBLE, tmp_path)
    assert compose(TRIM_PANEL, bible).trimmed == ()
    floor = compose(TRIM_PANEL, _with_limit(bible, len(FLOOR)))
    assert floor.trimmed == TRIM_ORDER
    assert floor.text == FLOOR
    assert floor.characters == ("Ann", "Bo")
    assert floor.locations == ()
    assert floor.props == ()


def test_trimming_stops_as_soon_as_it_fits(tmp_path: Path) -> None:
    bible = parse(TRIM_BIBLE, tmp_path)
    full = compose(TRIM_PANEL, bible).text
    length_after = {0: len(full)}  # cuts made -> length of the text
    for limit in range(len(full), len(FLOOR) - 1, -1):
        composed = compose(TRIM_PANEL, _with_limit(bible, limit))
        assert len(composed.text) <= limit
        steps = len(composed.trimmed)
        assert composed.trimmed == TRIM_ORDER[:steps]  # always a prefix of the order
        length_after.setdefault(steps, len(composed.text))
        assert length_after[steps] == len(composed.text)  # k cuts always give the same text
        if steps:
            assert length_after[steps - 1] > limit  # one cut fewer would not have fitted
    assert set(length_after) == set(range(len(TRIM_ORDER) + 1))  # each step was needed once


def test_each_cut_shows_in_the_text(tmp_path: Path) -> None:
    bible = parse(TRIM_BIBLE, tmp_path)
    texts = {}
    for limit in range(len(FLOOR), 600):
        composed = compose(TRIM_PANEL, _with_limit(bible, limit))
        texts.setdefault(composed.trimmed, composed.text)
    by_step = {steps[-1]: text for steps, text in texts.items() if steps}
    assert "rope: A rope." in by_step["prop rope: short sheet"]
    assert "net: A torn fishing net" in by_step["prop rope: short sheet"]
    assert "Props: net: A net." in by_step["prop rope: left out"]
    assert "Props:" not in by_step["prop net: left out"]
    assert "paper grain" not in by_step["style: extra"]
    assert "Setting: harbour: A stone harbour.\n" in by_step["setting harbour: short sheet"]
    assert "Avoid: text, logos." in by_step["avoid: 'borders'"]
    assert "Avoid: text." in by_step["avoid: 'logos'"]
    assert "Style: ink; palette: cold greys; line work: bold lines." in by_step["style: lighting"]
    assert "Style: ink; palette: cold greys.\n" in by_step["style: line work"]
    assert "Style: ink.\n" in by_step["style: palette"]
    assert "Setting" not in by_step["setting harbour: left out"]
    assert "- Ann: Tall woman, oilskin. Lamp.\n" in by_step["character Ann: short sheet"]
    assert "- Bo: A short man with a red scarf.\n" in by_step["character Bo: first sentence"]
    assert "- Ann: Tall woman, oilskin.\n" in by_step["character Ann: first sentence"]
    assert "- Bo\n" in by_step["character Bo: name only"]
    assert by_step["character Ann: name only"] == FLOOR


def test_too_long_even_with_names_only(tmp_path: Path) -> None:
    bible = parse(TRIM_BIBLE, tmp_path)
    with pytest.raises(ComposeError) as caught:
        compose(TRIM_PANEL, _with_limit(bible, len(FLOOR) - 1))
    assert str(caught.value) == (
        f"the composed prompt is {len(FLOOR)} characters even with every sheet cut down to "
        f"the names; the bible allows {len(FLOOR) - 1} (max_prompt_chars): shorten the panel "
        "description (46 characters) or raise max_prompt_chars"
    )


def test_a_long_description_alone_does_not_fit(tmp_path: Path) -> None:
    bible = parse('[bible]\nmax_prompt_chars = 200\n[style]\nmedium = "ink"\n', tmp_path)
    assert len(compose(PanelInput("x" * 180), bible).text) == 180 + len("\n\nStyle: ink.")
    with pytest.raises(ComposeError):
        compose(PanelInput("x" * 190), bible)


def test_a_character_is_never_dropped(tmp_path: Path) -> None:
    bible = parse(TRIM_BIBLE, tmp_path)
    composed = compose(TRIM_PANEL, _with_limit(bible, len(FLOOR)))
    assert "- Ann\n- Bo\n" in composed.text


# -- determinism -------------------------------------------------------------------------------


def test_the_same_inputs_give_the_same_text(bible: StyleBible, tmp_path: Path) -> None:
    panel = PanelInput("@Maren and Tobias in the lamp room.", chapter="2", characters=("ISAK",))
    composer = Composer(bible)
    first = composer.compose(panel)
    assert composer.compose(panel) == first
    assert Composer(bible).compose(panel) == first
    assert compose(panel, parse(BIBLE, tmp_path)) == first


# -- properties --------------------------------------------------------------------------------
#
# Random bibles (written as TOML and loaded, as an author's would be) and random panels that
# mention random characters: (a) every mentioned character is in the prompt, (b) the prompt
# never exceeds max_prompt_chars, and composing fails only when the floor (description, the
# names, the medium, the format and the first negative: what is never cut) does not fit,
# (c) the same inputs give the same text, whatever composes them and however the file is laid
# out.

FILLER = (  # panels and sheets are made of these; some name places and things of the bible
    "the sea rolls",
    "under a grey sky",
    "while wind tears at the shutters",
    "a boat waits below the rocks",
    "quietly",
    "then lightning freezes everything",
    "by the harbour",
    "with a coil of rope",
    "in the Lamp Room",
    "the BELL rings",
    "near the storm lantern",
)
PLACES = ("harbour", "lamp room", "causeway", "cliff path", "chapel")
THINGS = ("rope", "bell", "storm lantern", "logbook", "net")
UNKNOWN = "ZED9"  # cast by the script, not in the bible (no generated name has a digit)
NEGATIVES = ("text", "speech balloons", "logos", "watermarks", "modern clothing", "colour")

word = st.from_regex(r"[A-Z][a-z]{1,7}", fullmatch=True)
person = st.one_of(
    word,
    st.builds(lambda a, b: f"{a} {b}", word, word),  # Old Tobias
    st.builds(lambda a, b: f"{a}'{b}", word, word),  # O'Neill
    st.builds(lambda a, b: f"{a}-{b}", word, word),  # Anne-Marie
    st.builds(lambda a: f"Mrs. {a}", word),
    word.map(str.lower),  # an alias such as "the keeper" is often lower case
)
sentence = st.lists(st.sampled_from(FILLER), min_size=1, max_size=5).map(
    lambda words: " ".join(words).capitalize() + "."
)
sheet = st.lists(sentence, min_size=1, max_size=4).map(" ".join)


@dataclasses.dataclass
class Entry:
    table: str
    name: str
    description: str
    aliases: list[str]
    short: str | None
    link: str


@dataclasses.dataclass
class Book:
    entries: list[Entry]
    style: dict[str, str]
    negative: list[str]
    max_prompt_chars: int
    chapter_two: dict[str, str]  # chapter "2": lighting / negative / Maren-like override

    def toml(self) -> str:
        return "\n".join(self.blocks())

    def blocks(self) -> list[str]:
        """The TOML text, one table per block (blocks may be written in any order)."""
        blocks = [f"[bible]\nmax_prompt_chars = {self.max_prompt_chars}\n"]
        style = "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.style.items())
        blocks.append(f"[style]\n{style}negative = {json.dumps(self.negative)}\n")
        for entry in self.entries:
            lines = [f"[{entry.table}.{json.dumps(entry.name)}]"]
            lines.append(f"description = {json.dumps(entry.description)}")
            if entry.aliases:
                lines.append(f"aliases = {json.dumps(entry.aliases)}")
            if entry.short:
                lines.append(f"short = {json.dumps(entry.short)}")
            lines.append(f'link = "{entry.link}"')
            blocks.append("\n".join(lines) + "\n")
        if self.chapter_two:
            two = self.chapter_two
            lines = ["[chapters.2.style]"]
            lines += [f"lighting = {json.dumps(two['lighting'])}"]
            lines += [f"negative = [{json.dumps(two['negative'])}]"]
            blocks.append("\n".join(lines) + "\n")
            if "who" in two:
                who = two["who"]
                blocks.append(
                    f"[chapters.2.characters.{json.dumps(who)}]\n"
                    f"description = {json.dumps(two['description'])}\n"
                )
        return blocks

    def characters(self) -> list[Entry]:
        return [e for e in self.entries if e.table == "characters"]


@st.composite
def books(draw: st.DrawFn) -> Book:
    pool = draw(
        st.lists(person, min_size=1, max_size=12, unique_by=lambda n: n.casefold()).filter(
            lambda names: not {n.casefold() for n in names} & {*PLACES, *THINGS}
        )
    )
    entries: list[Entry] = []
    cast_size = draw(st.integers(1, min(6, len(pool))))
    spare = pool[cast_size:]
    for name in pool[:cast_size]:
        aliases = []
        while spare and draw(st.booleans()):
            aliases.append(spare.pop())
        entries.append(
            Entry(
                "characters",
                name,
                draw(sheet),
                aliases,
                draw(st.none() | sheet),
                draw(st.sampled_from(["auto", "auto", "mention"])),
            )
        )
    for table, names in (("locations", PLACES), ("props", THINGS)):
        for name in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
            entries.append(Entry(table, name, draw(sheet), [], draw(st.none() | sheet), "auto"))
    style = {"medium": draw(st.sampled_from(["ink", "watercolour.", "ink and wash"]))}
    for key in ("palette", "line_work", "lighting", "aspect", "extra"):
        if draw(st.booleans()):
            style[key] = draw(sentence)
    chapter_two: dict[str, str] = {}
    if draw(st.booleans()):
        chapter_two = {"lighting": draw(sentence), "negative": draw(st.sampled_from(NEGATIVES))}
        if draw(st.booleans()):
            chapter_two["who"] = entries[0].name
            chapter_two["description"] = draw(sheet)
    return Book(
        entries=entries,
        style=style,
        negative=draw(st.lists(st.sampled_from(NEGATIVES), max_size=4, unique=True)),
        max_prompt_chars=draw(st.integers(200, 1500)),
        chapter_two=chapter_two,
    )


def _mention(name: str, how: int) -> str:
    if " " in name or how == 0:
        return "@{" + name + "}"
    if how == 1:
        return "@" + name
    if how == 2:
        return "@" + name.lower()  # mentions ignore case
    return "@" + name + "'s"


@st.composite
def panels(draw: st.DrawFn, book: Book) -> tuple[PanelInput, list[str]]:
    """A panel mentioning a random subset of the characters (by name or alias); returns it
    and the canonical names mentioned."""
    people = book.characters()
    chosen = draw(st.lists(st.sampled_from(people), max_size=len(people), unique_by=id))
    words = draw(st.lists(st.sampled_from(FILLER), min_size=1, max_size=16))
    for entry in chosen:
        written = draw(st.sampled_from([entry.name, *entry.aliases]))
        at = draw(st.integers(0, len(words)))
        words.insert(at, _mention(written, draw(st.integers(0, 3))))
    cast = draw(st.lists(st.sampled_from([e.name.upper() for e in people] + [UNKNOWN])))
    panel = PanelInput(
        " ".join(words) + ".",
        chapter=draw(st.sampled_from([None, "1", "2"])),
        characters=tuple(cast),
        style=draw(st.none() | st.sampled_from(["pencil", "a rough sketch."])),
    )
    return panel, [e.name for e in chosen]


def _load(text: str) -> StyleBible:
    return parse_style_bible(text, file="random.toml", base_dir=Path("/nonexistent"))


def _floor(panel: PanelInput, bible: StyleBible) -> str:
    """What is never cut: the description (and panel style), the names, the medium, the format
    and the first negative, laid out as the composer lays them out."""
    unlimited = compose(panel, dataclasses.replace(bible, max_prompt_chars=10**9))
    chapter = bible.chapter(panel.chapter)
    blocks = [unlimited.description]
    if panel.style:
        note = " ".join(panel.style.split())
        blocks.append("Panel style: " + (note if note.endswith(".") else note + "."))
    lines = []
    if unlimited.characters:
        lines += ["Characters:", *(f"- {name}" for name in unlimited.characters)]
    lines.append("Style: " + chapter.style["medium"].rstrip(".") + ".")
    if "aspect" in chapter.style:
        aspect = chapter.style["aspect"]
        lines.append("Format: " + (aspect if aspect.endswith(".") else aspect + "."))
    if chapter.negative:
        lines.append("Avoid: " + chapter.negative[0].rstrip(".") + ".")
    blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(data=st.data(), book=books())
def test_property_mentioned_characters_appear_and_length_holds(
    data: st.DataObject, book: Book
) -> None:
    bible = _load(book.toml())
    panel, mentioned = data.draw(panels(book))
    floor = _floor(panel, bible)
    try:
        composed = compose(panel, bible)
    except ComposeError as exc:
        # (b) only when even the floor does not fit
        assert len(floor) > bible.max_prompt_chars, str(exc)
        assert "even with every sheet cut down to the names" in str(exc)
        return
    assert len(floor) <= bible.max_prompt_chars
    # (a) every mentioned character is in the prompt, by its canonical name
    for name in mentioned:
        assert name in composed.characters
        assert f"\n- {name}" in composed.text
        assert name in composed.description
    assert "@" not in composed.description
    assert len(set(composed.characters)) == len(composed.characters)
    # ... and so is everyone the script cast that the bible knows
    known = {e.name.casefold(): e.name for e in book.characters()}
    for name in panel.characters:
        if name != UNKNOWN:
            assert known[name.casefold()] in composed.characters
    assert composed.unknown_cast == tuple(n for n in panel.characters if n == UNKNOWN)
    # (b) the limit holds
    assert len(composed.text) <= bible.max_prompt_chars
    if composed.trimmed:  # trimming happened because the whole did not fit
        assert len(compose(panel, dataclasses.replace(bible, max_prompt_chars=10**9)).text) > (
            bible.max_prompt_chars
        )


@PROPERTY_SETTINGS
@given(data=st.data(), book=books())
def test_property_the_same_inputs_give_the_same_text(data: st.DataObject, book: Book) -> None:
    text = book.toml()
    bible = _load(text)
    panel, _ = data.draw(panels(book))
    composer = Composer(bible)
    try:
        first = composer.compose(panel)
    except ComposeError as exc:
        for again in (
            lambda: composer.compose(panel),
            lambda: Composer(bible).compose(panel),
            lambda: compose(panel, _load(text)),
        ):
            with pytest.raises(ComposeError) as caught:
                again()
            assert str(caught.value) == str(exc)
        return
    assert composer.compose(panel) == first
    assert Composer(bible).compose(panel) == first
    reloaded = _load(text)
    assert reloaded.version == bible.version
    assert compose(panel, reloaded) == first
    # the same bible with its tables in another order: same version, same prompt
    shuffled = _load("\n".join(data.draw(st.permutations(book.blocks()))))
    assert shuffled.version == bible.version
    assert compose(panel, shuffled).text == first.text


# --- linking edge cases found in review ------------------------------------------------------

EDGE_BIBLE = """\
[style]
medium = "ink"

[characters."Harbour Master"]
description = "A stout man in a peaked cap."

[characters."O'Neill"]
description = "A fisherman with a boathook."

[locations.Harbour]
description = "The stone harbour of Hallow Point."

[props.Net]
description = "A torn fishing net heaped on the quay."

[props.Rope]
description = "A coil of tarred rope."
"""


def test_a_place_inside_a_characters_name_is_not_linked(tmp_path: Path) -> None:
    composer = Composer(parse(EDGE_BIBLE, tmp_path))
    master = composer.compose(PanelInput("The Harbour Master counts the boats."))
    assert master.characters == ("Harbour Master",) and master.locations == ()
    both = composer.compose(PanelInput("The Harbour Master walks along the harbour."))
    assert both.characters == ("Harbour Master",) and both.locations == ("Harbour",)


def test_typographic_apostrophes_link_and_resolve(tmp_path: Path) -> None:
    composer = Composer(parse(EDGE_BIBLE, tmp_path))
    assert composer.compose(PanelInput("O’Neill mends the net.")).characters == ("O'Neill",)
    assert composer.compose(PanelInput("@O’Neill waits.")).characters == ("O'Neill",)


def test_sheets_in_one_line_do_not_read_full_stop_semicolon(tmp_path: Path) -> None:
    text = Composer(parse(EDGE_BIBLE, tmp_path)).compose(PanelInput("A net and a rope.")).text
    assert "Props: Net: A torn fishing net heaped on the quay; Rope: A coil of tarred rope." in text
    assert ".;" not in text


def test_a_chapters_new_description_is_what_gets_shortened(tmp_path: Path) -> None:
    bible = parse(
        """\
[bible]
max_prompt_chars = 200

[style]
medium = "ink"

[characters.Maren]
description = "A woman of thirty with dark hair tied back and a yellow oilskin coat."
short = "Woman, 30, oilskin."

[chapters.2.characters.Maren]
description = "Left hand bandaged. A woman of thirty with dark hair and a yellow oilskin coat."
""",
        tmp_path,
    )
    composed = Composer(bible).compose(PanelInput("@Maren climbs the long stair to the lamp.", "2"))
    assert "Left hand bandaged" in composed.text  # never the book's short sheet
    assert "Woman, 30, oilskin." not in composed.text


def test_a_name_may_not_end_with_a_space(tmp_path: Path) -> None:
    from tests.style.style_testutil import issues_of, rendered

    found = rendered(
        issues_of('[style]\nmedium = "ink"\n[characters."Maren "]\ndescription = "x"\n', tmp_path)
    )
    assert len(found) == 1 and "book.toml:3: field 'characters.\"Maren \"'" in found[0]
