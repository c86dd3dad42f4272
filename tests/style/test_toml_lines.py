"""Line numbers of TOML keys: headers, quoted and dotted keys, multi-line values, arrays of
tables, and the fallback to the nearest table."""

from __future__ import annotations

import textwrap
import tomllib

from novelgen_desktop.style.toml_lines import key_lines, line_of


def lines_of(text: str) -> dict[tuple[str | int, ...], int]:
    text = textwrap.dedent(text).lstrip("\n")
    tomllib.loads(text)  # every sample is valid TOML
    return key_lines(text)


def test_plain_tables_and_keys() -> None:
    lines = lines_of(
        """
        top = 1
        # a comment
        [bible]
        name = "x"

        [style]
          medium = "ink"   # indented, with a comment
        """
    )
    assert lines == {
        ("top",): 1,
        ("bible",): 3,
        ("bible", "name"): 4,
        ("style",): 6,
        ("style", "medium"): 7,
    }


def test_headers_with_quoted_keys() -> None:
    lines = lines_of(
        """
        [characters."Old Tobias"]
        description = "x"
        [ characters . 'Mrs. Aalto' ]  # spaces and a literal-quoted key
        description = "y"
        [props."brass ship's bell"]
        "a key" = 1
        'b.c' = 2
        """
    )
    assert lines[("characters",)] == 1
    assert lines[("characters", "Old Tobias")] == 1
    assert lines[("characters", "Old Tobias", "description")] == 2
    assert lines[("characters", "Mrs. Aalto")] == 3
    assert lines[("characters", "Mrs. Aalto", "description")] == 4
    assert lines[("props", "brass ship's bell")] == 5
    assert lines[("props", "brass ship's bell", "a key")] == 6
    assert lines[("props", "brass ship's bell", "b.c")] == 7


def test_escaped_quote_in_a_quoted_key() -> None:
    lines = lines_of(
        r"""
        [characters."The \"Captain\""]
        description = "x"
        """
    )
    assert lines[("characters", 'The "Captain"', "description")] == 2


def test_dotted_keys() -> None:
    lines = lines_of(
        """
        [characters]
        Maren.description = "x"
        Maren.aliases = ["M"]
        "Old Tobias" . description = "y"

        [chapters]
        2.style.lighting = "storm"
        """
    )
    assert lines[("characters", "Maren")] == 2
    assert lines[("characters", "Maren", "description")] == 2
    assert lines[("characters", "Maren", "aliases")] == 3
    assert lines[("characters", "Old Tobias", "description")] == 4
    assert lines[("chapters", "2")] == 7
    assert lines[("chapters", "2", "style")] == 7
    assert lines[("chapters", "2", "style", "lighting")] == 7


def test_nested_headers_give_their_ancestors_a_line() -> None:
    lines = lines_of(
        """
        [chapters.2.characters.Maren]
        description = "hurt"
        [chapters.2]
        location = "causeway"
        """
    )
    assert lines[("chapters",)] == 1
    assert lines[("chapters", "2")] == 1  # first seen as part of the deeper header
    assert lines[("chapters", "2", "characters")] == 1
    assert lines[("chapters", "2", "location")] == 4


def test_multi_line_strings_are_skipped() -> None:
    lines = lines_of(
        '''
        [characters.Maren]
        description = """
        fake = "this line is inside the string"
        [not.a.header]
        """
        short = \'\'\'one
        more = 1
        \'\'\'
        aliases = ["M"]
        inline = """closed on its line"""
        after = 1
        '''
    )
    assert ("characters", "Maren", "fake") not in lines
    assert ("not",) not in lines
    assert ("characters", "Maren", "more") not in lines
    assert lines[("characters", "Maren", "description")] == 2
    assert lines[("characters", "Maren", "short")] == 6
    assert lines[("characters", "Maren", "aliases")] == 9
    assert lines[("characters", "Maren", "inline")] == 10
    assert lines[("characters", "Maren", "after")] == 11


def test_multi_line_arrays_are_skipped() -> None:
    lines = lines_of(
        """
        [style]
        negative = [
          "text",   # not a key = here
          "[brackets] in a string",
          ["nested", [
            "deeper"]],
        ]
        medium = "ink"
        [characters.Maren]
        references = ["a.png",
                      "b.png"]
        description = "x"
        """
    )
    assert lines[("style", "negative")] == 2
    assert lines[("style", "medium")] == 8
    assert lines[("characters", "Maren", "references")] == 10
    assert lines[("characters", "Maren", "description")] == 12
    assert set(lines) == {
        ("style",),
        ("style", "negative"),
        ("style", "medium"),
        ("characters",),
        ("characters", "Maren"),
        ("characters", "Maren", "references"),
        ("characters", "Maren", "description"),
    }


def test_inline_tables() -> None:
    lines = lines_of(
        """
        [characters]
        Maren = { description = "x", aliases = ["M"] }
        Isak = "y"
        """
    )
    assert lines[("characters", "Maren")] == 2
    assert ("characters", "Maren", "aliases") not in lines
    assert line_of(lines, ("characters", "Maren", "aliases", 0)) == 2  # falls back
    assert lines[("characters", "Isak")] == 3


def test_arrays_of_tables_are_numbered() -> None:
    lines = lines_of(
        """
        [[panels]]
        text = "a"
        [[panels]]
        text = "b"

        [[ panels ]]
        text = "c"
        [[panels.notes]]
        note = "n"
        """
    )
    assert lines[("panels",)] == 1
    assert lines[("panels", 0)] == 1
    assert lines[("panels", 0, "text")] == 2
    assert lines[("panels", 1, "text")] == 4
    assert lines[("panels", 2)] == 6
    assert lines[("panels", 2, "text")] == 7
    assert lines[("panels", "notes", 0, "note")] == 9


def test_line_of_falls_back_to_the_nearest_ancestor() -> None:
    lines = lines_of(
        """
        [characters.Maren]
        description = "x"
        """
    )
    assert line_of(lines, ("characters", "Maren", "aliases", 3)) == 1
    assert line_of(lines, ("characters", "Maren", "description", 0)) == 2
    assert line_of(lines, ("style",)) is None
    assert line_of(lines, ()) is None


def test_first_definition_wins() -> None:
    lines = lines_of(
        """
        [characters.Maren]
        description = "x"
        [characters.Isak]
        description = "y"
        """
    )
    assert lines[("characters",)] == 1


def test_crlf_and_windows_editors() -> None:
    text = '[style]\r\nmedium = "ink"\r\n\r\n[characters.Maren]\r\ndescription = "x"\r\n'
    tomllib.loads(text)
    lines = key_lines(text)
    assert lines[("style", "medium")] == 2
    assert lines[("characters", "Maren", "description")] == 5


def test_lines_that_are_not_keys_are_ignored() -> None:
    # Not valid TOML: the scanner must not crash on what the parser would reject anyway.
    lines = key_lines('= no key\n"open quote = 1\nok = 2\n[unclosed\n')
    assert lines == {("ok",): 3, ("unclosed",): 4}
