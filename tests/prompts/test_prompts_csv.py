from __future__ import annotations

from pathlib import Path

import pytest
from prompts_testutil import errors, load, parse, texts, warnings

from novelgen_desktop.prompts import SourceLocation


def test_all_known_columns_are_typed() -> None:
    csv_text = (
        "Prompt,Chapter,PAGE,panel,priority,characters,style,images\n"
        '"A cat, sitting",Prologue,2,3,-5,Maren; Old Tobias,ink,4\n'
    )
    [spec] = parse(csv_text, "csv", "script.csv").specs
    assert spec.text == "A cat, sitting"
    assert spec.source == SourceLocation("script.csv", 2)
    assert (spec.chapter, spec.page, spec.panel) == ("Prologue", 2, 3)
    assert spec.priority == -5
    assert spec.characters == ("Maren", "Old Tobias")
    assert spec.style == "ink"
    assert spec.images == 4
    assert spec.metadata == {}


def test_empty_optional_cells_use_defaults() -> None:
    [spec] = parse("prompt,chapter,page,priority,images,style\nA,,,,,\n", "csv").specs
    assert (spec.chapter, spec.page, spec.priority, spec.images, spec.style) == (
        None,
        None,
        0,
        1,
        None,
    )


def test_the_documented_error_message() -> None:
    rows = "".join(f"prompt {n},{n}\n" for n in range(12))
    result = parse(f"prompt,priority\n{rows}bad one,high\n", "csv", "script.csv")
    assert errors(result) == ["script.csv:14: field 'priority': expected an integer, got 'high'"]
    assert len(result.specs) == 12


def test_physical_line_numbers_with_multiline_quoted_cells() -> None:
    csv_text = (
        'prompt,page\n"first\nspans\nthree lines",1\n"second",x\n"third ""quoted""\n",0\nfourth,2\n'
    )
    result = parse(csv_text, "csv", "s.csv")
    assert errors(result) == [
        "s.csv:5: field 'page': expected a positive integer, got 'x'",
        "s.csv:6: field 'page': expected a positive integer, got '0'",
    ]
    assert texts(result) == ["first\nspans\nthree lines", "fourth"]
    assert [spec.source.line for spec in result.specs] == [2, 8]


def test_a_bad_row_reports_every_field_and_does_not_stop_the_rest() -> None:
    csv_text = "prompt,page,panel,priority,images\n,0,-1,1001,9\nok,1,1,1000,8\n"
    result = parse(csv_text, "csv", "s.csv")
    assert errors(result) == [
        "s.csv:2: field 'prompt': prompt is empty",
        "s.csv:2: field 'page': expected a positive integer, got '0'",
        "s.csv:2: field 'panel': expected a positive integer, got '-1'",
        "s.csv:2: field 'priority': expected an integer from -1000 to 1000, got '1001'",
        "s.csv:2: field 'images': expected an integer from 1 to 8, got '9'",
    ]
    assert texts(result) == ["ok"]


@pytest.mark.parametrize("value", ["1.5", "one", "1e3", "--1", " "])
def test_non_integers_are_rejected(value: str) -> None:
    result = parse(f"prompt,images\nA,{value}\n", "csv")
    if value.strip():
        assert errors(result) == [f"input:2: field 'images': expected an integer, got '{value}'"]
    else:
        assert result.specs[0].images == 1


def test_integer_like_spreadsheet_values_are_accepted() -> None:
    [spec] = parse('prompt,page,priority\nA," 3.0 ",+7\n', "csv").specs
    assert (spec.page, spec.priority) == (3, 7)


def test_huge_digit_strings_are_an_error_not_a_crash() -> None:
    result = parse(f"prompt,page\nA,{'9' * 5000}\n", "csv")
    assert len(result.errors) == 1
    assert "expected a positive integer, got '999" in str(result.errors[0])


@pytest.mark.parametrize(
    ("header", "row", "sep"),
    [
        ("prompt;page;style", "A cat, a dog, a bird;2;ink, wash", ";"),
        ("prompt\tpage\tstyle", "A cat, a dog, a bird\t2\tink, wash", "\t"),
        ("prompt|page|style", "A cat, a dog, a bird|2|ink, wash", "|"),
        ("prompt,page,style", '"A cat, a dog, a bird",2,"ink, wash"', ","),
    ],
    ids=["semicolon", "tab", "pipe", "comma"],
)
def test_delimiters(header: str, row: str, sep: str) -> None:
    [spec] = parse(f"{header}\n{row}\n{row}\n", "csv").specs[:1]
    assert spec.text == "A cat, a dog, a bird"
    assert spec.page == 2
    assert spec.style == "ink, wash"


def test_tsv_file(tmp_path: Path) -> None:
    result = load(tmp_path, "p.tsv", "prompt\tpage\nA, B\t3\n")
    assert texts(result) == ["A, B"]
    assert result.format_by_file[str(tmp_path / "p.tsv")] == "csv"


def test_single_column_file_keeps_unquoted_commas() -> None:
    result = parse("prompt\nA cat, a dog; a bird | a fish\nplain\n", "csv")
    assert errors(result) == []
    assert texts(result) == ["A cat, a dog; a bird | a fish", "plain"]


def test_aliases_text_and_description() -> None:
    assert texts(parse("Text,page\nA,1\n", "csv")) == ["A"]
    assert texts(parse("description\nB\n", "csv")) == ["B"]


def test_prompt_wins_over_aliases_which_become_metadata() -> None:
    result = parse("text,prompt\nnot this,this one\n", "csv", "s.csv")
    assert texts(result) == ["this one"]
    assert result.specs[0].metadata == {"text": "not this"}
    assert warnings(result) == ["s.csv:1: warning: unknown column 'text' is kept as metadata"]


def test_missing_prompt_column_names_what_was_found() -> None:
    result = parse("\n\nscene,page\nA,1\n", "csv", "s.csv")
    assert errors(result) == [
        "s.csv:3: the header row has no 'prompt' column (found: 'scene', 'page'); name the column "
        "of prompts 'prompt' (or 'text' / 'description')"
    ]
    assert result.specs == []


def test_unknown_columns_are_metadata_with_one_warning() -> None:
    csv_text = "prompt,Mood,notes,\nA,dark, ,\nB,light,x,\n"
    result = parse(csv_text, "csv", "s.csv")
    assert [spec.metadata for spec in result.specs] == [
        {"Mood": "dark"},
        {"Mood": "light", "notes": "x"},
    ]
    assert warnings(result) == [
        "s.csv:1: warning: unknown column 'Mood' is kept as metadata",
        "s.csv:1: warning: unknown column 'notes' is kept as metadata",
    ]


def test_duplicate_known_column_is_an_error() -> None:
    result = parse("prompt,page,Page\nA,1,2\n", "csv", "s.csv")
    assert errors(result) == [
        "s.csv:1: field 'page': column 'page' appears twice (columns 2 and 3); only the first "
        "is used"
    ]
    assert result.specs[0].page == 1


def test_too_many_fields_suggests_quoting() -> None:
    result = parse("prompt,page\nA cat, sitting,1\nok,2\n", "csv", "s.csv")
    assert errors(result) == [
        "s.csv:2: row has 3 fields but the header has 2 columns; quote any value that contains "
        "the delimiter"
    ]
    assert texts(result) == ["ok"]


def test_short_rows_and_trailing_empty_cells_are_fine() -> None:
    result = parse("prompt,page,style\nA\nB,2,,,,\n", "csv")
    assert errors(result) == []
    assert [(s.text, s.page) for s in result.specs] == [("A", None), ("B", 2)]


def test_empty_rows_are_skipped_silently() -> None:
    result = parse("prompt,page\n\n,\n ,  \nA,1\n,,\n", "csv")
    assert (texts(result), result.issues) == (["A"], [])


def test_characters_separators_dedup_and_mentions() -> None:
    result = parse('prompt,characters\n"@Isak waves","Maren|Isak, maren;; @Tobias"\n', "csv")
    assert result.specs[0].characters == ("Maren", "Isak", "Tobias")


def test_unclosed_quote_is_reported_instead_of_swallowing_the_file() -> None:
    result = parse('prompt,page\n"A cat,1\nB,2\n"C",3\nD,4\n', "csv", "s.csv")
    assert errors(result) == [
        "s.csv:2: a quoted value starting on this line is never closed (it runs to line 4); "
        "check the quotes"
    ]
    assert texts(result) == ["D"]


def test_closed_multiline_quotes_are_not_flagged() -> None:
    result = parse('prompt\n"one\ntwo"\n"x""y\nz"\n', "csv")
    assert result.issues == []
    assert texts(result) == ["one\ntwo", 'x"y\nz']


def test_field_larger_than_csv_limit_is_an_issue() -> None:
    result = parse('prompt\n"' + "x" * 200_000 + '"\n', "csv", "s.csv")
    assert len(result.errors) == 1
    assert result.errors[0].line == 2
    assert "cannot read this CSV row" in result.errors[0].message


def test_max_errors_stops_with_a_final_issue(tmp_path: Path) -> None:
    rows = "".join(f"p{n},x\n" for n in range(100))
    result = load(tmp_path, "many.csv", f"prompt,page\n{rows}", max_errors=5)
    assert len(result.errors) == 6
    assert str(result.errors[-1]) == f"{tmp_path / 'many.csv'}: too many errors; stopping after 5"
    assert [issue.line for issue in result.errors[:5]] == [2, 3, 4, 5, 6]


def test_headerless_file_is_an_error() -> None:
    result = parse("A cat on a wall\nA dog\n", "csv", "s.csv")
    assert len(result.errors) == 1
    assert "no 'prompt' column" in str(result.errors[0])
