"""The example bible composes the whole sample script, and its reference images are the ones
the generator draws."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

import pytest

from novelgen_desktop.output.imagecheck import inspect_image
from novelgen_desktop.prompts.loader import load_prompt_files
from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.style import (
    ComposedPrompt,
    ComposeReport,
    PanelInput,
    StyleBible,
    compose,
    compose_specs,
    load_style_bible,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPT = EXAMPLES / "the-lighthouse-keeper.script"
BIBLE = EXAMPLES / "the-lighthouse-keeper.bible.toml"


@cache
def _bible() -> StyleBible:
    return load_style_bible(BIBLE)


@cache
def _script() -> tuple[PromptSpec, ...]:
    result = load_prompt_files([SCRIPT])
    assert result.ok
    return tuple(result.specs)


@cache
def _report() -> ComposeReport:
    return compose_specs(_script(), _bible())


def _panel(line: int) -> tuple[PromptSpec, ComposedPrompt]:
    report = _report()
    for spec, composed in zip(report.specs, report.composed, strict=True):
        if spec.source.line == line:
            return spec, composed
    raise AssertionError(f"no panel at line {line}")


def test_the_example_bible_loads() -> None:
    bible = _bible()
    assert bible.name == "The Lighthouse Keeper"
    assert bible.version == f"1+{bible.content_hash}"
    assert set(bible.chapters) == {"1", "2", "3"}
    illustrated = {e.name for e in bible.entities if e.references}
    assert {"Maren", "Old Tobias", "Isak"} <= illustrated


def test_every_panel_of_the_sample_script_composes_within_the_limit() -> None:
    report = _report()
    assert report.errors == []
    assert report.issues == []  # not even a warning: every speaker and chapter is known
    assert len(report.specs) == len(_script()) == 300
    limit = _bible().max_prompt_chars
    assert all(len(composed.text) <= limit for composed in report.composed)
    assert all(composed.trimmed == () for composed in report.composed)
    assert all(len(c.references) <= _bible().max_references for c in report.composed)
    assert all(composed.locations for composed in report.composed)  # every panel has a place


@pytest.mark.parametrize(
    ("line", "characters", "locations", "props"),
    [
        (13, ("Old Tobias",), ("lamp room",), ()),  # the splash page
        (20, ("Maren",), ("oil store",), ()),
        (28, ("Isak",), ("oil store",), ("ship's bell",)),  # a brass ship's bell
        (32, ("Mrs. Aalto", "Maren"), ("oil store",), ("great lens",)),  # Maren speaks
        (37, ("Captain Voss",), ("oil store",), ()),  # Old Tobias speaks off panel
        (82, ("O'Neill", "Maren"), ("gallery",), ()),  # the narrow iron gallery
        (768, ("Maren", "Isak"), ("tide pools",), ("storm lantern",)),
        (812, ("Captain Voss", "Maren"), ("gallery",), ()),  # the gallery in full storm
    ],
)
def test_characters_places_and_props_are_linked(
    line: int, characters: tuple[str, ...], locations: tuple[str, ...], props: tuple[str, ...]
) -> None:
    spec, composed = _panel(line)
    assert (composed.characters, composed.locations, composed.props) == (
        characters,
        locations,
        props,
    )
    assert spec.characters == characters
    for name in characters:
        assert f"\n- {name}" in composed.text


def test_chapter_two_has_the_bandaged_hand_and_the_storm() -> None:
    one = _panel(20)[1]
    two = _panel(768)[1]
    three = _panel(824)[1]
    assert "mustard-yellow oilskin coat over a grey wool jumper" in one.text
    assert "Her left hand wrapped in a dirty white bandage" in two.text
    assert "navy pea coat, too big" in three.text
    assert [r.name for r in one.references] == ["maren.png"]
    assert [r.name for r in two.references] == ["maren-bandaged.png", "isak.png"]
    assert "lighting: storm light" in two.text
    assert "Avoid: " in two.text
    assert two.text.endswith("signatures or watermarks, blue sky, sunshine.")
    assert "storm light" not in one.text
    assert "pale gold at dawn" in three.text


def test_chapter_default_locations() -> None:
    bible = _bible()
    assert compose(PanelInput("@Maren waits.", chapter="2"), bible).locations == ("shingle beach",)
    assert compose(PanelInput("@Maren waits.", chapter="1"), bible).locations == ("lamp room",)
    assert compose(PanelInput("@Maren waits.", chapter="9"), bible).locations == ()


def test_link_mention_prop() -> None:
    bible = _bible()
    assert compose(PanelInput("Maren reads a letter."), bible).props == ()
    assert compose(PanelInput("Maren reads the @letter."), bible).props == ("letter",)


def _generator() -> object:
    spec = importlib.util.spec_from_file_location(
        "make_reference_images", EXAMPLES / "make_reference_images.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_reference_images_are_small_real_and_up_to_date() -> None:
    generator = _generator()
    sheets: dict[str, object] = generator.SHEETS  # type: ignore[attr-defined]
    files = sorted(p.name for p in (EXAMPLES / "references").iterdir())
    assert files == sorted(sheets)
    digests = set()
    for name, figure in sheets.items():
        data = (EXAMPLES / "references" / name).read_bytes()
        assert len(data) < 30_000
        info = inspect_image(data)
        assert (info.format, info.width, info.height) == ("png", 240, 320)
        assert data == generator.sheet(figure)  # type: ignore[attr-defined]
        digests.add(data)
    assert len(digests) == len(sheets)  # every sheet is distinct
