"""Composing a whole script: the specs a job is made of, their composition metadata, and the
issues, each at its script line (or the bible's)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from novelgen_desktop.prompts.issues import ImportIssue
from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.style import (
    COMPOSITION_KEY,
    ComposeReport,
    StyleBible,
    compose_specs,
    load_style_bible,
)
from novelgen_desktop.style.apply import composition_metadata
from novelgen_desktop.style.composer import compose, panel_of
from tests.style.style_testutil import bible_text, write_png

BIBLE = """\
[bible]
name = "Hallow Point"
version = "2"

[style]
medium = "ink"
negative = ["text"]

[characters.Maren]
description = "A woman of thirty."
references = ["maren.png"]

[characters."Old Tobias"]
description = "An old man."
aliases = ["Tobias"]

[locations."lamp room"]
description = "A round glass room."

[props.bell]
description = "A brass bell."

[chapters.2]
location = "lamp room"

[chapters.Epilogue.style]
lighting = "dawn"
"""


@pytest.fixture
def bible(tmp_path: Path) -> StyleBible:
    write_png(tmp_path / "maren.png")
    path = tmp_path / "bible.toml"
    path.write_text(bible_text(BIBLE))
    return load_style_bible(path)


def script_issues(report: ComposeReport) -> list[ImportIssue]:
    """The issues about the script's panels (not the bible's chapters)."""
    return [issue for issue in report.issues if issue.file == "book.script"]


def spec(text: str, line: int, **kwargs: object) -> PromptSpec:
    return PromptSpec(text, SourceLocation("book.script", line), **kwargs)  # type: ignore[arg-type]


def test_composed_specs_keep_their_place_and_carry_the_composition(bible: StyleBible) -> None:
    original = spec(
        "@Maren rings the bell.",
        12,
        chapter="1",
        page=3,
        panel=2,
        priority=5,
        images=2,
        characters=("TOBIAS",),
        metadata={"captions": ["Dawn."]},
    )
    report = compose_specs([original], bible)
    assert report.ok
    assert script_issues(report) == []
    (composed_spec,) = report.specs
    (composed,) = report.composed
    assert composed == compose(panel_of(original), bible)
    assert composed_spec.text == composed.text
    assert composed_spec.text.startswith("Maren rings the bell.\n\nCharacters:\n- Maren ")
    assert (composed_spec.source, composed_spec.chapter, composed_spec.page) == (
        original.source,
        "1",
        3,
    )
    assert (composed_spec.panel, composed_spec.priority, composed_spec.images) == (2, 5, 2)
    assert composed_spec.characters == ("Maren", "Old Tobias")  # canonical names
    assert composed_spec.style is None
    assert composed_spec.metadata["captions"] == ["Dawn."]
    ref = bible.entities[0].references[0]
    assert composed_spec.metadata[COMPOSITION_KEY] == {
        "bible": "Hallow Point",
        "version": bible.version,
        "description": "Maren rings the bell.",
        "characters": ["Maren", "Old Tobias"],
        "props": ["bell"],
        "references": [{"sha256": ref.sha256, "name": "maren.png", "mime": "image/png"}],
    }
    assert original.metadata == {"captions": ["Dawn."]}  # the input is not changed


def test_composition_metadata_has_locations_and_what_was_trimmed(bible: StyleBible) -> None:
    tight = dataclasses.replace(bible, max_prompt_chars=200)
    composed = compose(panel_of(spec("Tobias waits. " + "x" * 120, 1, chapter="2")), tight)
    data = composition_metadata(composed)
    assert data["characters"] == ["Old Tobias"]
    assert "locations" not in data  # the chapter's default location was cut to fit
    assert data["trimmed"] == ["setting lamp room: left out"]
    plain = composition_metadata(compose(panel_of(spec("Tobias waits.", 1, chapter="2")), bible))
    assert plain == {
        "bible": "Hallow Point",
        "version": bible.version,
        "description": "Tobias waits.",
        "characters": ["Old Tobias"],
        "locations": ["lamp room"],
    }


def test_errors_are_located_at_each_panels_line(bible: StyleBible) -> None:
    specs = [
        spec("@Maren waits.", 3, chapter="1"),
        spec("@Marn waits.", 7, chapter="1"),
        spec("@Isak runs.", 9, chapter="1"),
        spec("Tobias sleeps.", 11, chapter="1"),
    ]
    report = compose_specs(specs, bible)
    assert not report.ok
    assert [str(issue) for issue in report.errors] == [
        "book.script:7: field 'text': @Marn is not in style bible 'Hallow Point' "
        "(did you mean @Maren?)",
        "book.script:9: field 'text': @Isak is not in style bible 'Hallow Point' "
        "(known names: Maren, Old Tobias, Tobias, bell, lamp room)",
    ]
    # the panels that composed are still there, in script order
    assert [s.source.line for s in report.specs] == [3, 11]
    assert len(report.composed) == 2


def test_unknown_cast_is_a_warning_at_the_panels_line(bible: StyleBible) -> None:
    report = compose_specs([spec("Maren waits.", 4, characters=("MAREN", "ISAK"))], bible)
    assert report.ok
    assert [str(issue) for issue in script_issues(report)] == [
        "book.script:4: warning: not in the style bible (drawn without a sheet): ISAK"
    ]
    # still in the panel (and the manifest), without a sheet
    assert report.specs[0].characters == ("Maren", "ISAK")


def test_reference_over_the_limit_is_a_warning(bible: StyleBible) -> None:
    report = compose_specs([spec("Maren.", 2)], dataclasses.replace(bible, max_references=0))
    (issue,) = script_issues(report)
    assert issue.message == "reference images over the limit of 0 not attached: maren.png (Maren)"
    assert not issue.is_error


def test_bible_chapters_that_match_no_panel_are_warnings(bible: StyleBible) -> None:
    report = compose_specs([spec("Maren.", 2, chapter="1"), spec("Maren.", 5, chapter="1")], bible)
    assert report.ok
    source = bible.source
    assert [str(issue) for issue in report.issues] == [
        f"{source}:23: warning: field 'chapters.2': chapter '2' matches no panel of the script "
        "(chapters: 1)",
        f"{source}:26: warning: field 'chapters.Epilogue': chapter 'Epilogue' matches no panel "
        "of the script (chapters: 1)",
    ]


def test_chapters_match_in_any_case(bible: StyleBible) -> None:
    report = compose_specs(
        [spec("Maren.", 2, chapter="2"), spec("Maren.", 5, chapter="EPILOGUE")], bible
    )
    assert report.issues == []
    assert "lighting: dawn" in report.specs[1].text


def test_a_script_without_chapters(bible: StyleBible) -> None:
    report = compose_specs([spec("Maren.", 1)], bible)
    assert [issue.message for issue in report.issues] == [
        "chapter '2' matches no panel of the script (chapters: none)",
        "chapter 'Epilogue' matches no panel of the script (chapters: none)",
    ]


def test_no_specs_no_chapter_warnings(bible: StyleBible) -> None:
    report = compose_specs([], bible)
    assert report.ok
    assert report.issues == []
    assert report.specs == []


def test_errors_past_the_cap_are_counted(bible: StyleBible) -> None:
    specs = [spec(f"@Nobody{n} waits.", n + 1, chapter="2") for n in range(7)]
    specs.append(spec("@Maren waits.", 100, chapter="Epilogue"))
    report = compose_specs(specs, bible, max_errors=3)
    assert [(i.line, i.message[:10]) for i in report.errors] == [
        (1, "@Nobody0 i"),
        (2, "@Nobody1 i"),
        (3, "@Nobody2 i"),
        (None, "4 more pan"),
    ]
    assert str(report.errors[-1]) == "book.script: 4 more panels failed"
    assert [s.source.line for s in report.specs] == [100]


def test_composing_twice_gives_the_same_specs(bible: StyleBible) -> None:
    specs = [spec("@Maren and Tobias in the lamp room.", 1, chapter="2", characters=("X",))]
    first = compose_specs(specs, bible)
    second = compose_specs(specs, bible)
    assert first.specs == second.specs
    assert first.issues == second.issues
