"""The shipped examples must stay clean: they are what new users try first."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from novelgen_desktop.prompts import format_validation_report, load_prompt_files, require_prompts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPT = EXAMPLES / "the-lighthouse-keeper.script"


def test_sample_script_has_exactly_300_clean_prompts() -> None:
    result = load_prompt_files([SCRIPT])
    assert result.issues == []
    assert len(result.specs) == 300
    assert result.format_by_file == {str(SCRIPT): "fullscript"}
    assert len(require_prompts([SCRIPT])) == 300


def test_sample_script_looks_like_a_real_book() -> None:
    result = load_prompt_files([SCRIPT])
    specs = result.specs
    assert [chapter for chapter in dict.fromkeys(spec.chapter for spec in specs)] == ["1", "2", "3"]
    pages = {(spec.chapter, spec.page) for spec in specs}
    assert 50 <= len(pages) <= 60
    per_page = Counter((spec.chapter, spec.page) for spec in specs)
    assert sorted(set(per_page.values()) - {1}) == [4, 5, 6, 7]
    assert len({spec.text for spec in specs}) == 300
    assert any("spread_to" in spec.metadata for spec in specs)
    cast = Counter(name for spec in specs for name in spec.characters)
    assert {"MAREN", "OLD TOBIAS", "ISAK", "CAPTAIN VOSS"} <= set(cast)
    kinds = Counter(item["kind"] for spec in specs for item in spec.metadata["lettering"])
    assert set(kinds) == {"caption", "sfx", "dialogue"}
    assert result.job_metadata[str(SCRIPT)]["title"] == "The Lighthouse Keeper"
    text = SCRIPT.read_text(encoding="utf-8")
    for heading in (
        "PAGE ONE (SPLASH)",
        "PAGE TWENTY-TWO",
        "PAGE 12",
        "PAGES 9-10",
        "CHAPTER TWO: THE WRECK",
        "(five panels)",
    ):
        assert heading in text


def test_generator_reproduces_the_committed_script() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_sample_script", EXAMPLES / "make_sample_script.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == SCRIPT.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("prompts.csv", "csv"),
        ("prompts.jsonl", "jsonl"),
        ("prompts.md", "markdown"),
        ("prompts.txt", "text"),
    ],
)
def test_small_samples(name: str, fmt: str) -> None:
    path = EXAMPLES / name
    result = load_prompt_files([path])
    assert result.errors == []
    assert 10 <= len(result.specs) <= 20
    assert result.format_by_file == {str(path): fmt}
    assert "OK:" in format_validation_report(result)
