"""The style bible loader: a valid bible's data, every error with file:line and field, the
version (content hash + label)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from novelgen_desktop.style import (
    EntityKind,
    StyleBibleError,
    load_style_bible,
    parse_style_bible,
)
from novelgen_desktop.style.bible import (
    DEFAULT_MAX_PROMPT_CHARS,
    DEFAULT_MAX_REFERENCES,
    LinkMode,
)
from novelgen_desktop.style.loader import MAX_REFERENCE_BYTES
from tests.style.style_testutil import MINIMAL, bible_text, issues_of, parse, rendered, write_png

COMPLETE = """\
# The whole book's look.
[bible]
name = "The Lighthouse Keeper"
version = "3"
max_prompt_chars = 2500
max_references = 3

[style]
medium = "ink and watercolour graphic novel panel"
palette = "cold greys and sea greens"
line_work = "bold brush outlines"
lighting = "low lamp light"
aspect = "portrait, 2:3"
extra = "paper grain"
negative = ["text", "speech balloons", "logos"]

[characters.Maren]
description = "A woman of thirty. Dark hair tied back. Oilskin coat."
short = "Woman, 30, dark hair, oilskin coat."
aliases = ["Mar"]
references = ["refs/maren.png"]

[characters."Old Tobias"]
description = "A stooped man of seventy with a white beard."
aliases = ["Tobias", "the keeper"]
references = ["refs/tobias.png", "refs/tobias-side.png"]

[characters]
Isak = "A boy of fifteen, soaked through."

[characters.Will]
description = "A quiet fisherman."
link = "mention"

[locations."lamp room"]
description = "A round glass room at the top of the tower."
aliases = ["lantern room"]

[locations.causeway]
description = "Black rocks leading to the tower."

[props."storm lantern"]
description = "A tin storm lantern with a cracked glass."

[chapters.2]
location = "causeway"

[chapters.2.style]
lighting = "storm light"
negative = ["sunshine"]

[chapters.2.characters.Maren]
description = "A woman of thirty; her left hand bandaged."
references = ["refs/maren-bandaged.png"]

[chapters.Epilogue.props."storm lantern"]
short = "A lantern, lit."
"""


def _complete(tmp_path: Path) -> Path:
    refs = tmp_path / "refs"
    write_png(refs / "maren.png", (200, 30, 30))
    write_png(refs / "tobias.png", (30, 200, 30))
    write_png(refs / "tobias-side.png", (30, 30, 200))
    write_png(refs / "maren-bandaged.png", (220, 220, 220))
    path = tmp_path / "book.toml"
    path.write_text(COMPLETE, encoding="utf-8")
    return path


# -- a valid bible -----------------------------------------------------------------------------


def test_complete_bible_loads_with_its_data(tmp_path: Path) -> None:
    bible = load_style_bible(_complete(tmp_path))
    assert bible.name == "The Lighthouse Keeper"
    assert bible.label == "3"
    assert bible.max_prompt_chars == 2500
    assert bible.max_references == 3
    assert bible.source == str(tmp_path / "book.toml")
    assert dict(bible.style) == {
        "medium": "ink and watercolour graphic novel panel",
        "palette": "cold greys and sea greens",
        "line_work": "bold brush outlines",
        "lighting": "low lamp light",
        "aspect": "portrait, 2:3",
        "extra": "paper grain",
    }
    assert bible.negative == ("text", "speech balloons", "logos")

    names = [(e.kind, e.name) for e in bible.entities]
    assert names == [
        (EntityKind.CHARACTER, "Maren"),
        (EntityKind.CHARACTER, "Old Tobias"),
        (EntityKind.CHARACTER, "Isak"),
        (EntityKind.CHARACTER, "Will"),
        (EntityKind.LOCATION, "lamp room"),
        (EntityKind.LOCATION, "causeway"),
        (EntityKind.PROP, "storm lantern"),
    ]
    maren = bible.entity("maren")
    assert maren is not None
    assert maren.aliases == ("Mar",)
    assert maren.short == "Woman, 30, dark hair, oilskin coat."
    assert maren.line == 17
    assert [r.name for r in maren.references] == ["maren.png"]
    ref = maren.references[0]
    data = (tmp_path / "refs" / "maren.png").read_bytes()
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert (ref.mime, ref.size, ref.width, ref.height) == ("image/png", len(data), 4, 4)
    assert ref.path == str((tmp_path / "refs" / "maren.png").resolve())

    tobias = bible.entity("Old Tobias")
    assert tobias is not None
    assert tobias.aliases == ("Tobias", "the keeper")
    assert [r.name for r in tobias.references] == ["tobias.png", "tobias-side.png"]
    isak = bible.entity("Isak")  # the `Name = "description"` shorthand
    assert isak is not None
    assert isak.description == "A boy of fifteen, soaked through."
    will = bible.entity("Will")
    assert will is not None
    assert will.link is LinkMode.MENTION
    assert maren.link is LinkMode.AUTO

    assert set(bible.chapters) == {"2", "Epilogue"}
    two = bible.chapters["2"]
    assert two.location == "causeway"
    assert dict(two.style) == {"lighting": "storm light"}
    assert two.negative == ("sunshine",)
    assert two.line == 45
    assert two.entities["Maren"].description == "A woman of thirty; her left hand bandaged."
    refs = two.entities["Maren"].references
    assert refs is not None
    assert [r.name for r in refs] == ["maren-bandaged.png"]
    epilogue = bible.chapters["Epilogue"]
    assert epilogue.entities["storm lantern"].short == "A lantern, lit."
    assert epilogue.entities["storm lantern"].references is None
    assert len(bible.all_references()) == 4


def test_chapter_view_merges_overrides(tmp_path: Path) -> None:
    bible = load_style_bible(_complete(tmp_path))
    two = bible.chapter("2")
    assert two.style["lighting"] == "storm light"
    assert two.style["palette"] == "cold greys and sea greens"
    assert two.negative == ("text", "speech balloons", "logos", "sunshine")
    assert two.location == "causeway"
    maren = two.entities["maren"]
    assert maren.description == "A woman of thirty; her left hand bandaged."
    # a new description drops the book's short sheet: it would describe the old look
    assert maren.short is None
    assert [r.name for r in maren.references] == ["maren-bandaged.png"]
    assert bible.chapter("epilogue").entities["storm lantern"].short == "A lantern, lit."
    plain = bible.chapter("1")
    assert plain.location is None
    assert plain.negative == bible.negative
    assert bible.chapter(None).entities["maren"].description.startswith("A woman of thirty.")


def test_defaults_of_a_minimal_bible(tmp_path: Path) -> None:
    bible = parse(MINIMAL, tmp_path, file="/books/minimal.toml")
    assert bible.name == "minimal"  # the file's stem
    assert bible.label is None
    assert bible.version == bible.content_hash
    assert len(bible.content_hash) == 12
    assert bible.max_prompt_chars == DEFAULT_MAX_PROMPT_CHARS
    assert bible.max_references == DEFAULT_MAX_REFERENCES
    assert bible.entities == ()
    assert bible.negative == ()


def test_text_is_whitespace_normalised_and_lists_deduplicated(tmp_path: Path) -> None:
    bible = parse(
        '''
        [style]
        medium = """ink
           and   wash"""
        negative = "text"

        [characters.Maren]
        description = "  A woman.  "
        aliases = ["Mar", "Mar", "Maren"]
        ''',
        tmp_path,
    )
    assert bible.style["medium"] == "ink and wash"
    assert bible.negative == ("text",)
    maren = bible.entities[0]
    assert maren.description == "A woman."
    assert maren.aliases == ("Mar",)  # a repeat and the name itself are dropped


def test_integer_version_label_is_text(tmp_path: Path) -> None:
    bible = parse("[bible]\nversion = 7\n" + MINIMAL, tmp_path)
    assert bible.label == "7"
    assert bible.version == f"7+{bible.content_hash}"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_style_bible(path).style["medium"] == "ink drawing"


# -- errors: each at file:line with its field --------------------------------------------------


def test_invalid_toml_gives_line_and_column(tmp_path: Path) -> None:
    issues = issues_of('[style]\nmedium = "ink"\npalette = grey\n', tmp_path)
    assert len(issues) == 1
    issue = issues[0]
    assert (issue.file, issue.line, issue.column) == ("book.toml", 3, 11)
    assert str(issue).startswith("book.toml:3:11: not valid TOML: ")
    assert "(at line" not in issue.message


def test_duplicate_table_is_a_toml_error(tmp_path: Path) -> None:
    issues = issues_of(MINIMAL + "[style]\npalette = 'x'\n", tmp_path)
    assert issues[0].line == 3
    assert "not valid TOML" in issues[0].message


@pytest.mark.parametrize(
    ("text", "line", "field", "where"),
    [
        ("colour = 'red'\n" + MINIMAL, 1, "colour", "the top level"),
        ("[bible]\ntitel = 'x'\n" + MINIMAL, 2, "bible.titel", "[bible]"),
        (MINIMAL + "colour = 'red'\n", 3, "style.colour", "[style]"),
        (
            MINIMAL + "[characters.Maren]\ndescription = 'x'\ncolour = 'red'\n",
            5,
            "characters.Maren.colour",
            "[characters.Maren]",
        ),
        (
            MINIMAL + "[locations.'lamp room']\ndescription = 'x'\ncolour = 'red'\n",
            5,
            'locations."lamp room".colour',
            '[locations."lamp room"]',
        ),
        (
            MINIMAL + "[props.bell]\ndescription = 'x'\n\n\ncolour = 'red'\n",
            7,
            "props.bell.colour",
            "[props.bell]",
        ),
        (MINIMAL + "[chapters.2]\nmood = 'x'\n", 4, "chapters.2.mood", "[chapters.2]"),
        (
            MINIMAL + "[chapters.2.style]\ncolour = 'x'\n",
            4,
            "chapters.2.style.colour",
            "[chapters.2.style]",
        ),
        (
            MINIMAL
            + "[characters.Maren]\ndescription = 'x'\n"
            + "[chapters.2.characters.Maren]\ndescription = 'y'\naliases = ['M']\n",
            7,
            "chapters.2.characters.Maren.aliases",
            "[chapters.2.characters.Maren]",
        ),
    ],
)
def test_unknown_keys_at_every_level(
    tmp_path: Path, text: str, line: int, field: str, where: str
) -> None:
    issues = issues_of(text, tmp_path)
    assert len(issues) == 1, rendered(issues)
    issue = issues[0]
    assert (issue.line, issue.field) == (line, field)
    key = field.rsplit(".", 1)[-1]
    assert issue.message.startswith(f"unknown key '{key}' in {where}; expected one of: ")


def test_unknown_key_lists_what_is_allowed(tmp_path: Path) -> None:
    (issue,) = issues_of(MINIMAL + "colour = 'red'\n", tmp_path)
    assert str(issue) == (
        "book.toml:3: field 'style.colour': unknown key 'colour' in [style]; expected one of: "
        "medium, palette, line_work, lighting, aspect, extra, negative"
    )


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            "[bible]\nname = 3\n" + MINIMAL,
            2,
            "bible.name",
            "expected text, got a number (3)",
        ),
        (
            MINIMAL + "palette = true\n",
            3,
            "style.palette",
            "expected text, got a boolean (true)",
        ),
        (
            MINIMAL + "negative = 5\n",
            3,
            "style.negative",
            "expected a list of text, got a number (5)",
        ),
        (
            MINIMAL + "negative = ['text', 4]\n",
            3,
            "style.negative[1]",
            "expected text, got a number (4)",
        ),
        (
            MINIMAL + "[characters.Maren]\ndescription = ['x']\n",
            4,
            "characters.Maren.description",
            "expected text, got a list",
        ),
        (
            MINIMAL + "[characters.Maren]\ndescription = 'x'\naliases = {a = 1}\n",
            5,
            "characters.Maren.aliases",
            "expected a list of text, got a table",
        ),
        (
            MINIMAL + "[characters.Maren]\ndescription = 'x'\nreferences = 3\n",
            5,
            "characters.Maren.references",
            "expected a list of image paths, got a number (3)",
        ),
        (
            MINIMAL + "[characters.Maren]\ndescription = 'x'\nreferences = [1.5]\n",
            5,
            "characters.Maren.references[0]",
            "expected the path of an image file, got a number (1.5)",
        ),
        (
            MINIMAL + "[characters.Maren]\ndescription = 'x'\nlink = 'always'\n",
            5,
            "characters.Maren.link",
            "expected 'auto' or 'mention', got 'always'",
        ),
        (
            MINIMAL + "[characters.Maren]\ndescription = 'x'\nlink = ['auto']\n",
            5,
            "characters.Maren.link",
            "expected 'auto' or 'mention', got ['auto']",
        ),
        (
            "characters = 'everyone'\n" + MINIMAL,
            1,
            "characters",
            "expected a table, got text",
        ),
        (
            MINIMAL + "[characters]\nMaren = 3\n",
            4,
            "characters.Maren",
            "expected a table, got a number (3)",
        ),
        ("style = 'ink'\n", 1, "style", "expected a table, got text"),
        (
            "[bible]\nmax_prompt_chars = '900'\n" + MINIMAL,
            2,
            "bible.max_prompt_chars",
            "expected a whole number from 200 to 32000, got text",
        ),
        (
            "[bible]\nmax_references = true\n" + MINIMAL,
            2,
            "bible.max_references",
            "expected a whole number from 0 to 8, got a boolean (true)",
        ),
        (
            MINIMAL + "[chapters]\n2 = 'storm'\n",
            4,
            "chapters.2",
            "expected a table, got text",
        ),
        (
            MINIMAL + "[characters.Maren]\ndescription = 'x'\n[chapters.2]\nlocation = 5\n",
            6,
            "chapters.2.location",
            "expected text, got a number (5)",
        ),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, line: int, field: str, message: str) -> None:
    issues = issues_of(text, tmp_path)
    assert [(i.line, i.field, i.message) for i in issues] == [(line, field, message)]


@pytest.mark.parametrize("value", ["''", "'   '", '"""\n\n"""'])
def test_empty_description(tmp_path: Path, value: str) -> None:
    (issue,) = issues_of(MINIMAL + f"[characters.Maren]\ndescription = {value}\n", tmp_path)
    assert (issue.line, issue.field, issue.message) == (
        4,
        "characters.Maren.description",
        "must not be empty",
    )


def test_missing_description(tmp_path: Path) -> None:
    (issue,) = issues_of(MINIMAL + "[props.bell]\nshort = 'a bell'\n", tmp_path)
    assert (issue.line, issue.field, issue.message) == (3, "props.bell.description", "is required")


def test_too_long_description(tmp_path: Path) -> None:
    (issue,) = issues_of(MINIMAL + f"[props.bell]\ndescription = '{'x' * 4001}'\n", tmp_path)
    assert issue.message == "is 4001 characters long; at most 4000 allowed"


def test_missing_style_table(tmp_path: Path) -> None:
    (issue,) = issues_of("[bible]\nname = 'x'\n", tmp_path)
    assert issue.field == "style"
    assert issue.line is None
    assert str(issue) == (
        "book.toml: field 'style': a bible needs a [style] table (at least medium = \"...\")"
    )


def test_missing_medium(tmp_path: Path) -> None:
    (issue,) = issues_of("[bible]\nname = 'x'\n\n[style]\npalette = 'grey'\n", tmp_path)
    assert str(issue) == (
        "book.toml:4: field 'style': [style] needs medium = \"...\" (what kind of picture this is)"
    )


def test_a_bad_medium_is_reported_once(tmp_path: Path) -> None:
    issues = issues_of("[style]\nmedium = ''\n", tmp_path)
    assert [(i.line, i.field, i.message) for i in issues] == [
        (2, "style.medium", "must not be empty")
    ]


@pytest.mark.parametrize("label", ["'v 1'", "'3/4'", "'é!'"])
def test_bad_version_label(tmp_path: Path, label: str) -> None:
    (issue,) = issues_of(f"[bible]\nversion = {label}\n" + MINIMAL, tmp_path)
    assert (issue.line, issue.field) == (2, "bible.version")
    assert issue.message.startswith("use letters, digits and . : - _ only, got ")


def test_version_label_may_not_be_a_float(tmp_path: Path) -> None:
    (issue,) = issues_of("[bible]\nversion = 1.5\n" + MINIMAL, tmp_path)
    assert issue.message == "expected text, got a number (1.5)"


@pytest.mark.parametrize(
    ("value", "ok"), [(199, False), (200, True), (32000, True), (32001, False), (-1, False)]
)
def test_max_prompt_chars_range(tmp_path: Path, value: int, ok: bool) -> None:
    text = f"[bible]\nmax_prompt_chars = {value}\n" + MINIMAL
    if ok:
        assert parse(text, tmp_path).max_prompt_chars == value
        return
    (issue,) = issues_of(text, tmp_path)
    assert str(issue) == (
        "book.toml:2: field 'bible.max_prompt_chars': expected a whole number from 200 to "
        f"32000, got {value}"
    )


@pytest.mark.parametrize(("value", "ok"), [(0, True), (8, True), (9, False), (-1, False)])
def test_max_references_range(tmp_path: Path, value: int, ok: bool) -> None:
    text = f"[bible]\nmax_references = {value}\n" + MINIMAL
    if ok:
        assert parse(text, tmp_path).max_references == value
        return
    (issue,) = issues_of(text, tmp_path)
    assert issue.message == f"expected a whole number from 0 to 8, got {value}"


@pytest.mark.parametrize(
    "name", ["'9 lives'", "'_hidden'", "'-dash'", "' Maren'", "'" + "x" * 65 + "'"]
)
def test_bad_entity_names(tmp_path: Path, name: str) -> None:
    (issue,) = issues_of(MINIMAL + f"[characters.{name}]\ndescription = 'x'\n", tmp_path)
    assert issue.line == 3
    assert "must start with a letter, end with a letter, digit or '.'" in issue.message


def test_bad_alias(tmp_path: Path) -> None:
    (issue,) = issues_of(
        MINIMAL + "[characters.Maren]\ndescription = 'x'\naliases = ['Mar', '@Mar']\n", tmp_path
    )
    assert (issue.line, issue.field) == (5, "characters.Maren.aliases[1]")
    assert issue.message.startswith("alias '@Mar' must start with a letter")


# -- reference images --------------------------------------------------------------------------

REF_BIBLE = MINIMAL + "[characters.Maren]\ndescription = 'x'\nreferences = [{refs}]\n"


def test_missing_reference_image(tmp_path: Path) -> None:
    (issue,) = issues_of(REF_BIBLE.format(refs="'refs/nope.png'"), tmp_path)
    assert (issue.line, issue.field) == (5, "characters.Maren.references[0]")
    assert issue.message == (
        f"reference image 'refs/nope.png' not found (looked for {tmp_path / 'refs' / 'nope.png'})"
    )


def test_reference_that_is_a_folder_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "refs.png").mkdir()
    (issue,) = issues_of(REF_BIBLE.format(refs="'refs.png'"), tmp_path)
    assert "not found" in issue.message


def test_reference_that_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image, just notes\n")
    write_png(tmp_path / "ok.png")
    (issue,) = issues_of(REF_BIBLE.format(refs="'ok.png', 'notes.png'"), tmp_path)
    assert issue.field == "characters.Maren.references[1]"
    assert issue.message.startswith("reference image 'notes.png' is not a PNG, JPEG or WebP: ")


def test_reference_that_is_a_gif(tmp_path: Path) -> None:
    (tmp_path / "old.gif").write_bytes(b"GIF89a" + b"\x00" * 40)
    (issue,) = issues_of(REF_BIBLE.format(refs="'old.gif'"), tmp_path)
    assert "unsupported image format GIF" in issue.message


def test_reference_that_is_too_large(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.truncate(MAX_REFERENCE_BYTES + 1)  # sparse: nothing is really written
    (issue,) = issues_of(REF_BIBLE.format(refs="'big.png'"), tmp_path)
    assert issue.message == (
        "reference image 'big.png' is 8,388,609 bytes; at most 8,388,608 (8 MiB) allowed"
    )


def test_reference_that_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_png(tmp_path / "locked.png")
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "locked.png":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    (issue,) = issues_of(REF_BIBLE.format(refs="'locked.png'"), tmp_path)
    assert issue.message == "reference image 'locked.png' cannot be read: Permission denied"


def test_reference_paths_are_relative_to_the_bible(tmp_path: Path) -> None:
    write_png(tmp_path / "book" / "refs" / "maren.png")
    absolute = write_png(tmp_path / "elsewhere" / "maren2.png", (1, 2, 3))
    path = tmp_path / "book" / "bible.toml"
    path.write_text(bible_text(REF_BIBLE.format(refs=f"'refs/maren.png', '{absolute}'")))
    bible = load_style_bible(path)
    refs = bible.entities[0].references
    assert [r.path for r in refs] == [
        str((tmp_path / "book" / "refs" / "maren.png").resolve()),
        str(absolute.resolve()),
    ]


def test_the_same_image_twice_is_attached_once(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "copy.png")  # same bytes, another name
    bible = parse(REF_BIBLE.format(refs="'a.png', './a.png', 'copy.png'"), tmp_path)
    assert [r.name for r in bible.entities[0].references] == ["a.png"]


def test_jpeg_and_webp_references(tmp_path: Path) -> None:
    Image.new("RGB", (6, 5), (10, 20, 30)).save(tmp_path / "a.jpg", format="JPEG")
    Image.new("RGB", (3, 7), (10, 20, 30)).save(tmp_path / "b.webp", format="WEBP")
    bible = parse(REF_BIBLE.format(refs="'a.jpg', 'b.webp'"), tmp_path)
    refs = bible.entities[0].references
    assert [(r.mime, r.width, r.height) for r in refs] == [
        ("image/jpeg", 6, 5),
        ("image/webp", 3, 7),
    ]


# -- names must be unique ----------------------------------------------------------------------


def test_duplicate_alias_across_kinds_names_both_lines(tmp_path: Path) -> None:
    issues = issues_of(
        MINIMAL
        + "[characters.Maren]\ndescription = 'x'\naliases = ['Mar']\n\n"
        + "[locations.marsh]\ndescription = 'y'\naliases = ['MAR']\n",
        tmp_path,
    )
    assert rendered(issues) == [
        "book.toml:7: field 'locations.marsh': the name 'MAR' is also used by character "
        "'Maren' (line 3); every name and alias must be unique"
    ]


def test_name_used_as_another_entrys_alias(tmp_path: Path) -> None:
    issues = issues_of(
        MINIMAL
        + "[characters.Tobias]\ndescription = 'x'\n"
        + "[characters.'Old Tobias']\ndescription = 'y'\naliases = ['tobias']\n",
        tmp_path,
    )
    assert [(i.line, i.field) for i in issues] == [(5, 'characters."Old Tobias"')]
    assert "the name 'tobias' is also used by character 'Tobias' (line 3)" in issues[0].message


def test_same_name_as_character_and_prop(tmp_path: Path) -> None:
    issues = issues_of(
        MINIMAL + "[characters.Bell]\ndescription = 'x'\n[props.bell]\ndescription = 'y'\n",
        tmp_path,
    )
    assert [(i.line, i.field) for i in issues] == [(5, "props.bell")]
    assert "is also used by character 'Bell' (line 3)" in issues[0].message


# -- chapters ----------------------------------------------------------------------------------

CAST = MINIMAL + (
    "[characters.Maren]\ndescription = 'x'\n"
    "[locations.'lamp room']\ndescription = 'y'\n"
    "[props.bell]\ndescription = 'z'\n"
)  # lines 3-8


def test_chapter_overriding_an_unknown_character(tmp_path: Path) -> None:
    issues = issues_of(CAST + "[chapters.2.characters.Isak]\ndescription = 'hurt'\n", tmp_path)
    assert rendered(issues) == [
        "book.toml:9: field 'chapters.2.characters.Isak': chapter '2' changes character "
        "'Isak', which the bible does not define under [characters]"
    ]


def test_chapter_overriding_an_entry_of_another_kind(tmp_path: Path) -> None:
    issues = issues_of(CAST + "[chapters.2.characters.bell]\ndescription = 'cracked'\n", tmp_path)
    assert [(i.line, i.field) for i in issues] == [(9, "chapters.2.characters.bell")]
    assert "changes character 'bell'" in issues[0].message


def test_chapter_override_matches_names_in_any_case(tmp_path: Path) -> None:
    bible = parse(CAST + "[chapters.2.characters.MAREN]\ndescription = 'hurt'\n", tmp_path)
    assert set(bible.chapters["2"].entities) == {"Maren"}
    assert bible.chapter("2").entities["maren"].description == "hurt"


def test_chapter_location_that_is_not_a_location(tmp_path: Path) -> None:
    issues = issues_of(CAST + "[chapters.2]\nlocation = 'Maren'\n", tmp_path)
    assert rendered(issues) == [
        "book.toml:10: field 'chapters.2.location': 'Maren' is not a location of this bible; "
        "known: lamp room"
    ]


def test_chapter_location_in_any_case_becomes_canonical(tmp_path: Path) -> None:
    bible = parse(CAST + "[chapters.2]\nlocation = 'Lamp Room'\n", tmp_path)
    assert bible.chapters["2"].location == "lamp room"


def test_chapter_location_by_alias_is_not_accepted(tmp_path: Path) -> None:
    text = CAST.replace("description = 'y'", "description = 'y'\naliases = ['lantern']")
    issues = issues_of(text + "[chapters.2]\nlocation = 'lantern'\n", tmp_path)
    assert "is not a location of this bible" in issues[0].message


@pytest.mark.parametrize("body", ["", "# a costume, one day\n"])
def test_override_that_changes_nothing(tmp_path: Path, body: str) -> None:
    issues = issues_of(CAST + f"[chapters.3.characters.Maren]\n{body}\n", tmp_path)
    assert rendered(issues) == [
        "book.toml:9: field 'chapters.3.characters.Maren': changes nothing; give description, "
        "short or references"
    ]


def test_override_may_clear_references(tmp_path: Path) -> None:
    write_png(tmp_path / "m.png")
    text = CAST.replace("description = 'x'", "description = 'x'\nreferences = ['m.png']")
    bible = parse(text + "[chapters.3.characters.Maren]\nreferences = []\n", tmp_path)
    assert bible.chapters["3"].entities["Maren"].references == ()
    assert bible.chapter("3").entities["maren"].references == ()


def test_override_shorthand_string(tmp_path: Path) -> None:
    bible = parse(CAST + "[chapters.3.props]\nbell = 'A cracked bell.'\n", tmp_path)
    assert bible.chapters["3"].entities["bell"].description == "A cracked bell."


def test_override_reference_errors_are_located(tmp_path: Path) -> None:
    issues = issues_of(
        CAST + "[chapters.3.characters.Maren]\nreferences = ['gone.png']\n", tmp_path
    )
    assert [(i.line, i.field) for i in issues] == [
        (10, "chapters.3.characters.Maren.references[0]")
    ]


# -- many errors at once -----------------------------------------------------------------------


def test_every_error_is_reported_together(tmp_path: Path) -> None:
    text = bible_text(
        """
        colour = "grey"

        [bible]
        version = "one two"
        max_prompt_chars = 50

        [style]
        palette = 3

        [characters.Maren]
        description = ""
        aliases = ["M", 2]

        [characters.Isak]
        description = "A boy."
        references = ["isak.png"]

        [props.isak]
        description = "A doll."

        [chapters.2]
        location = "harbour"
        [chapters.2.characters.Voss]
        description = "wet"
        """
    )
    issues = issues_of(text, tmp_path)
    assert [(i.line, i.field) for i in issues] == [
        (1, "colour"),
        (4, "bible.version"),
        (5, "bible.max_prompt_chars"),
        (8, "style.palette"),
        (7, "style"),  # no medium
        (11, "characters.Maren.description"),
        (12, "characters.Maren.aliases[1]"),
        (16, "characters.Isak.references[0]"),
        (18, "props.isak"),  # the same name as character Isak
        (22, "chapters.2.location"),
        (23, "chapters.2.characters.Voss"),
    ]
    assert all(i.is_error and i.file == "book.toml" for i in issues)


def test_errors_stop_at_the_cap(tmp_path: Path) -> None:
    text = MINIMAL + "".join(f"bad{n} = 1\n" for n in range(80))
    with pytest.raises(StyleBibleError) as caught:
        parse_style_bible(text, file="book.toml", base_dir=tmp_path, max_errors=10)
    messages = [i.message for i in caught.value.issues]
    assert len(messages) == 11
    assert messages[-1] == "too many errors; stopping after 10"


# -- the file itself ---------------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(StyleBibleError) as caught:
        load_style_bible(path)
    assert rendered(caught.value.issues) == [f"{path}: style bible not found"]


def test_folder(tmp_path: Path) -> None:
    with pytest.raises(StyleBibleError) as caught:
        load_style_bible(tmp_path)
    assert rendered(caught.value.issues) == [f"{tmp_path}: is a folder, not a style bible"]


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(
        MINIMAL.encode() + "[characters.Maren]\ndescription = 'caf\xe9'\n".encode("latin-1")
    )
    with pytest.raises(StyleBibleError) as caught:
        load_style_bible(path)
    assert rendered(caught.value.issues) == [f"{path}:4: is not UTF-8 text (save it as UTF-8)"]


def test_too_large_bible(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    with path.open("wb") as handle:
        handle.truncate(4 * 2**20 + 1)
    with pytest.raises(StyleBibleError) as caught:
        load_style_bible(path)
    assert caught.value.issues[0].message == "is 4,194,305 bytes; a style bible is at most 4 MiB"


def test_error_text_lists_every_issue(tmp_path: Path) -> None:
    with pytest.raises(StyleBibleError) as caught:
        parse("colour = 1\n[style]\nmedium = ''\n", tmp_path)
    assert str(caught.value) == "\n".join(rendered(caught.value.issues))
    assert len(caught.value.issues) == 2


# -- the version -------------------------------------------------------------------------------

REORDERED = """\
[characters.Isak]
description = "A boy of fifteen, soaked through."

[props."storm lantern"]
description = "A tin storm lantern with a cracked glass."

[chapters.Epilogue.props."storm lantern"]
short = "A lantern, lit."

[chapters.2.characters.Maren]
references = ["refs/maren-bandaged.png"]
description = "A woman of thirty;    her left hand bandaged."

[chapters.2.style]
negative = ["sunshine"]
lighting = "storm light"

[chapters.2]
location = "causeway"

[locations.causeway]
description = "Black rocks leading to the tower."

[locations."lamp room"]
aliases = ["lantern room"]
description = "A round glass room at the top of the tower."

[characters.Will]
link = "mention"
description = "A quiet fisherman."

[characters."Old Tobias"]
references = ["refs/tobias.png", "refs/tobias-side.png"]
aliases = ["Tobias", "the keeper"]
description = "A stooped man of seventy with a white beard."

[characters.Maren]
references = ["refs/maren.png"]
aliases = ["Mar"]
short = "Woman, 30, dark hair, oilskin coat."
description = \"\"\"A woman of thirty.
  Dark hair tied back.  Oilskin coat.\"\"\"

[style]
negative = ["text", "speech balloons", "logos"]
extra = "paper grain"
aspect = "portrait, 2:3"
lighting = "low lamp light"
line_work = "bold brush outlines"
palette = "cold greys and sea greens"
medium = "ink and watercolour graphic novel panel"

[bible]
max_references = 3
max_prompt_chars = 2500
version = "3"
name = "The Lighthouse Keeper"
"""


def test_version_ignores_key_order_and_whitespace(tmp_path: Path) -> None:
    original = load_style_bible(_complete(tmp_path))
    moved = tmp_path / "moved.toml"
    moved.write_text(REORDERED, encoding="utf-8")
    reordered = load_style_bible(moved)
    assert reordered.content_hash == original.content_hash
    assert reordered.version == original.version == f"3+{original.content_hash}"


def test_version_label_and_name_do_not_change_the_hash(tmp_path: Path) -> None:
    path = _complete(tmp_path)
    original = load_style_bible(path)
    relabelled = tmp_path / "relabelled.toml"
    relabelled.write_text(
        COMPLETE.replace('version = "3"', 'version = "4"').replace(
            'name = "The Lighthouse Keeper"', 'name = "TLK"'
        )
    )
    bible = load_style_bible(relabelled)
    assert bible.content_hash == original.content_hash
    assert bible.version == f"4+{original.content_hash}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Dark hair tied back.", "Red hair tied back."),
        ('lighting = "storm light"', 'lighting = "storm light, rain"'),
        ('"speech balloons", "logos"', '"logos", "speech balloons"'),  # trimming order
        ("max_prompt_chars = 2500", "max_prompt_chars = 2400"),
        ('aliases = ["Mar"]', 'aliases = ["Mare"]'),
        ('link = "mention"', 'link = "auto"'),
        ('location = "causeway"', 'location = "lamp room"'),
    ],
)
def test_version_changes_with_the_content(tmp_path: Path, old: str, new: str) -> None:
    original = load_style_bible(_complete(tmp_path))
    assert old in COMPLETE
    changed = tmp_path / "changed.toml"
    changed.write_text(COMPLETE.replace(old, new))
    assert load_style_bible(changed).content_hash != original.content_hash


def test_version_changes_with_a_reference_images_bytes(tmp_path: Path) -> None:
    path = _complete(tmp_path)
    before = load_style_bible(path)
    write_png(tmp_path / "refs" / "maren.png", (201, 30, 30))
    after = load_style_bible(path)
    assert after.content_hash != before.content_hash
    assert after.version.startswith("3+")


def test_version_changes_with_a_reference_images_name(tmp_path: Path) -> None:
    path = _complete(tmp_path)
    before = load_style_bible(path)
    (tmp_path / "refs" / "maren.png").rename(tmp_path / "refs" / "maren-front.png")
    path.write_text(COMPLETE.replace("refs/maren.png", "refs/maren-front.png"))
    assert load_style_bible(path).content_hash != before.content_hash


def test_version_does_not_depend_on_where_the_bible_lies(tmp_path: Path) -> None:
    a = load_style_bible(_complete(tmp_path / "a"))
    b = load_style_bible(_complete(tmp_path / "b"))
    assert a.version == b.version
    assert a.entities[0].references[0].path != b.entities[0].references[0].path


def test_negatives_before_the_first_table_join_the_styles(tmp_path: Path) -> None:
    bible = parse(
        'negative = ["text", "logos"]\n[style]\nmedium = "ink"\nnegative = ["logos", "frames"]\n',
        tmp_path,
    )
    assert bible.negative == ("text", "logos", "frames")


def test_a_yaml_bible_is_told_to_be_toml(tmp_path: Path) -> None:
    path = tmp_path / "bible.yaml"
    path.write_text("style:\n  medium: ink\ncharacters:\n  Maren: a woman\n", encoding="utf-8")
    with pytest.raises(StyleBibleError) as info:
        load_style_bible(path)
    [issue] = info.value.issues
    assert str(issue) == (
        f"{path}: style bibles are TOML files, not YAML: write the same keys as [tables] and "
        "key = value lines (see docs/style-bible.md)"
    )
