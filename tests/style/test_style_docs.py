"""docs/style-bible.md shows real output: its composed prompts, its bible excerpt, its
version and its error messages are what the code produces today."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from novelgen_desktop.prompts.loader import load_prompt_files
from novelgen_desktop.style import (
    ComposedPrompt,
    StyleBible,
    StyleBibleError,
    compose,
    load_style_bible,
)
from novelgen_desktop.style.composer import panel_of

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "style-bible.md"
EXAMPLE = ROOT / "examples" / "the-lighthouse-keeper.bible.toml"
SCRIPT = ROOT / "examples" / "the-lighthouse-keeper.script"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def _block_after(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.compile(r"```\w*\n(.*?)```", re.S).search(text, start)
    assert match is not None
    return match.group(1)


def _panel_768(bible: StyleBible) -> ComposedPrompt:
    specs = [s for s in load_prompt_files([SCRIPT]).specs if s.source.line == 768]
    return compose(panel_of(specs[0]), bible)


def _header(composed: ComposedPrompt, limit: int) -> str:
    header = (
        "=== chapter 2, page 16, panel 4 (examples/the-lighthouse-keeper.script:768) — "
        f"{len(composed.text)}/{limit} chars · attaches "
        + ", ".join(r.name for r in composed.references)
    )
    if composed.trimmed:
        header += " · trimmed: " + "; ".join(composed.trimmed)
    return header


@pytest.mark.parametrize(
    ("marker", "limit"),
    [("prints it exactly as it will be sent:", None), ("With `max_prompt_chars = 900`", 900)],
)
def test_the_composed_prompts_shown_are_real(marker: str, limit: int | None) -> None:
    bible = load_style_bible(EXAMPLE)
    if limit is not None:
        bible = dataclasses.replace(bible, max_prompt_chars=limit)
    composed = _panel_768(bible)
    header, body = _block_after(marker).rstrip("\n").split("\n", 1)
    assert body == composed.text
    assert header == _header(composed, bible.max_prompt_chars)


def test_the_version_shown_is_the_examples() -> None:
    version = load_style_bible(EXAMPLE).version
    assert f"the version reads `{version}`" in DOC.read_text(encoding="utf-8")


def test_the_bible_excerpt_is_from_the_example() -> None:
    example = EXAMPLE.read_text(encoding="utf-8").splitlines()
    excerpt = _blocks("toml")[0].splitlines()
    assert len(excerpt) > 40
    for line in excerpt:
        if line.startswith("# …"):  # an elision
            continue
        assert line in example, line


def test_the_error_messages_shown_are_real(tmp_path: Path) -> None:
    broken = _blocks("toml")[1]
    (tmp_path / "references").mkdir()
    shutil.copy(ROOT / "examples" / "references" / "maren.png", tmp_path / "references")
    (tmp_path / "book.bible.toml").write_text(broken, encoding="utf-8")
    with pytest.raises(StyleBibleError) as caught:
        load_style_bible(tmp_path / "book.bible.toml")
    (shown,) = [b for b in _blocks("text") if "errors; nothing was started" in b]
    shown = shown.replace("/tmp/book", str(tmp_path))
    shown = shown.replace("book.bible.toml:", str(tmp_path / "book.bible.toml") + ":")
    lines = [line.strip() for line in shown.splitlines() if line.startswith("  ")]
    assert lines == [str(issue) for issue in caught.value.issues]
    assert f"has {len(lines)} errors" in shown
