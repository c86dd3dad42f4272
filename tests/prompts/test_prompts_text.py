from __future__ import annotations

from pathlib import Path

import pytest
from prompts_testutil import errors, load, parse, texts, warnings, write

from novelgen_desktop.prompts import MAX_PROMPT_CHARS, PromptImportError, require_prompts


def test_one_prompt_per_line_with_comments_and_line_numbers() -> None:
    result = parse("# my list\n  a lighthouse  \n\n# skip\n@Maren on the rocks\n", "text")
    assert texts(result) == ["a lighthouse", "@Maren on the rocks"]
    assert [spec.source.line for spec in result.specs] == [2, 5]
    assert [(s.chapter, s.page, s.panel) for s in result.specs] == [(None, None, None)] * 2
    assert result.specs[1].characters == ("Maren",)


def test_a_list_without_blank_lines_is_one_prompt_per_line() -> None:
    assert texts(parse("one\ntwo\nthree\n", "text")) == ["one", "two", "three"]


def test_block_mode_joins_blocks_and_points_at_their_first_line() -> None:
    text = "# header\n\nA storm over the sea,\nlightning on the horizon.\n\n\nA calm dawn.\n"
    result = parse(text, "text")
    assert texts(result) == ["A storm over the sea, lightning on the horizon.", "A calm dawn."]
    assert [spec.source.line for spec in result.specs] == [3, 7]


def test_comment_lines_inside_blocks_are_skipped() -> None:
    result = parse("first\n# note\nsecond\n\nthird\n", "text")
    assert texts(result) == ["first second", "third"]


def test_line_mode_when_every_block_is_a_single_line() -> None:
    result = parse("one\n\ntwo\n\n\nthree", "text")
    assert texts(result) == ["one", "two", "three"]
    assert [spec.source.line for spec in result.specs] == [1, 3, 6]


def test_too_long_prompt_names_its_length() -> None:
    long = "x" * (MAX_PROMPT_CHARS + 1)
    result = parse(f"fine\n{long}\nalso fine", "text")
    assert texts(result) == ["fine", "also fine"]
    assert errors(result) == ["input:2: prompt is 4,001 characters long; the maximum is 4,000"]


def test_prompt_of_exactly_the_maximum_is_fine() -> None:
    assert len(texts(parse("y" * MAX_PROMPT_CHARS, "text"))[0]) == MAX_PROMPT_CHARS


def test_mentions_are_deduplicated_ignoring_case_and_skip_emails() -> None:
    result = parse("@Maren and @maren meet @Old_Tobias, mail me@example.com @Isak's boat", "text")
    assert result.specs[0].characters == ("Maren", "Old_Tobias", "Isak")


def test_empty_file_warns_and_require_prompts_refuses(tmp_path: Path) -> None:
    result = load(tmp_path, "empty.txt", "")
    assert result.specs == []
    assert warnings(result) == [f"{tmp_path / 'empty.txt'}: warning: file is empty"]
    with pytest.raises(PromptImportError) as caught:
        require_prompts([tmp_path / "empty.txt"])
    assert str(caught.value) == f"{tmp_path / 'empty.txt'}: no prompts found"


def test_only_comments_warns_no_prompts(tmp_path: Path) -> None:
    path = write(tmp_path, "c.txt", "# just a comment\n")
    result = load(tmp_path, "c.txt", "# just a comment\n")
    assert warnings(result) == [f"{path}: warning: no prompts found in this file"]
