"""``novelgen compose`` and ``novelgen run --style``: the style bible from the command line."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from novelgen_desktop.style import Composer, PanelInput, load_style_bible
from tests.integration.helpers import assert_job_complete_and_consistent, job_ids
from tests.style.style_testutil import write_png

SIM = ["--simulate", "--sim-latency", "0", "--sim-image-size", "32", "--no-progress"]

BIBLE = """
[bible]
name = "Hallow Point"
version = "2"

[style]
medium = "ink and watercolour graphic-novel panel"
aspect = "square 1:1 image"
negative = ["lettering"]

[characters.Maren]
aliases = ["the keeper"]
description = "a tall woman of forty in a red wool coat"
references = ["maren.png"]

[locations."Lamp room"]
description = "the glass lantern room at the top of the tower"

[chapters.2.characters.Maren]
description = "Maren, her left hand bandaged"
"""

SCRIPT = """CHAPTER 1
PAGE 1
Panel 1
MAREN climbs to the lamp room.
Panel 2
The sea.
  MAREN: Nothing out there.
PAGE 2
Panel 1
@Maren trims the wick.
CHAPTER 2
PAGE 1
Panel 1
@Maren on the rocks.
"""


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    write_png(folder / "maren.png", (200, 30, 30), size=8)
    (folder / "bible.toml").write_text(BIBLE, encoding="utf-8")
    (folder / "book.script").write_text(SCRIPT, encoding="utf-8")
    return folder / "bible.toml", folder / "book.script"


def test_compose_prints_exactly_what_the_composer_makes(
    inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bible_path, script = inputs
    assert main(["compose", str(script), "--style", str(bible_path), "--json"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["chapter"], r["page"], r["panel"]) for r in rows] == [
        ("1", 1, 1),
        ("1", 1, 2),
        ("1", 2, 1),
        ("2", 1, 1),
    ]
    composer = Composer(load_style_bible(bible_path))
    first = composer.compose(PanelInput("MAREN climbs to the lamp room.", "1", ("MAREN",)))
    assert rows[0]["prompt"] == first.text
    assert rows[0]["characters"] == ["Maren"] and rows[0]["locations"] == ["Lamp room"]
    assert rows[0]["references"] == ["maren.png"]
    assert rows[1]["characters"] == ["Maren"]  # cast by the script: she speaks in the panel
    assert "her left hand bandaged" in rows[3]["prompt"]  # chapter 2's override
    assert all(r["version"].startswith("2+") and r["chars"] == len(r["prompt"]) for r in rows)
    assert "4 prompt(s) composed with style bible Hallow Point 2+" in err

    assert main(["compose", str(script), "--style", str(bible_path), "--page", "2"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("=== chapter 1, page 2, panel 1 (")
    assert "attaches maren.png" in out.splitlines()[0]
    assert "Maren trims the wick." in out


def test_compose_without_files_checks_and_summarises_the_bible(
    inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bible_path, _ = inputs
    assert main(["compose", "--style", str(bible_path)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("Hallow Point — version 2+")
    assert "characters: Maren (aka the keeper; 1 reference image(s))" in out
    assert "chapter overrides: 2" in out


def test_bible_errors_are_listed_with_lines_and_nothing_runs(
    inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bible_path, script = inputs
    bible_path.write_text(
        BIBLE.replace('references = ["maren.png"]', 'references = ["mare.png"]').replace(
            'aspect = "square 1:1 image"', 'aspect = "square"\ncolour = "teal"'
        ),
        encoding="utf-8",
    )
    data_dir = Path(os.environ["NOVELGEN_DATA_DIR"])
    for argv in (
        ["compose", str(script), "--style", str(bible_path)],
        ["run", str(script), "--style", str(bible_path), *SIM],
    ):
        assert main(argv) == 2
        _, err = capsys.readouterr()
        assert "has 2 errors" in err
        assert f"{bible_path}:9: field 'style.colour': unknown key 'colour'" in err
        assert f"{bible_path}:15: field 'characters.Maren.references[0]': reference image" in err
        assert "'mare.png' not found" in err
    assert not (data_dir / "novelgen.sqlite").exists() or job_ids(data_dir) == []


def test_an_unknown_mention_stops_the_run_before_a_job_exists(
    inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bible_path, script = inputs
    script.write_text(SCRIPT.replace("@Maren trims", "@Marne trims"), encoding="utf-8")
    data_dir = Path(os.environ["NOVELGEN_DATA_DIR"])
    assert main(["run", str(script), "--style", str(bible_path), *SIM]) == 2
    _, err = capsys.readouterr()
    assert f"{script}:9: field 'text': @Marne is not in style bible 'Hallow Point'" in err
    assert "did you mean @Maren?" in err
    assert not (data_dir / "novelgen.sqlite").exists() or job_ids(data_dir) == []
    assert main(["compose", str(script), "--style", str(bible_path)]) == 2


def test_run_with_a_bible_and_a_chapter_strategy(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bible_path, script = inputs
    out = tmp_path / "out"
    argv = ["run", str(script), "--style", str(bible_path), "--out", str(out), *SIM]
    argv += ["--workers", "3", "--chat-strategy", "chapter", "--max-chat-turns", "2"]
    assert main(argv) == 0
    _, err = capsys.readouterr()
    assert "style bible Hallow Point 2+" in err and "1 reference image(s)" in err
    assert "chat strategy chapter: 2 conversation(s) for 3 worker(s)" in err
    data_dir = Path(os.environ["NOVELGEN_DATA_DIR"])
    job_id = job_ids(data_dir)[-1]
    assert_job_complete_and_consistent(data_dir, job_id, 4)
    with sqlite3.connect(data_dir / "novelgen.sqlite") as conn:
        settings = json.loads(
            conn.execute("SELECT settings FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        )
        rows = conn.execute(
            "SELECT t.chapter, a.worker_id, a.style_version FROM attempts a "
            "JOIN tasks t ON t.id = a.task_id ORDER BY t.seq"
        ).fetchall()
    assert settings["chat_strategy"] == "chapter" and settings["max_chat_turns"] == 2
    assert settings["style_bible"]["name"] == "Hallow Point"
    workers_of_chapter: dict[str, set[str]] = {}
    for chapter, worker, version in rows:
        workers_of_chapter.setdefault(chapter, set()).add(worker)
        assert version == settings["style_bible"]["version"]
    assert all(len(w) == 1 for w in workers_of_chapter.values()), workers_of_chapter
    manifest = out / job_id / "manifest.jsonl"
    first = json.loads(manifest.read_text().splitlines()[0])
    assert first["description"] and first["style_bible"] == "Hallow Point"


def test_chat_options_are_checked(inputs: tuple[Path, Path]) -> None:
    _, script = inputs
    with pytest.raises(SystemExit):
        main(["run", str(script), "--chat-strategy", "scene", *SIM])
    with pytest.raises(SystemExit):
        main(["run", str(script), "--max-chat-turns", "0", *SIM])


def test_export_has_the_description_characters_and_style_version(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bible_path, script = inputs
    argv = ["run", str(script), "--style", str(bible_path), "--out", str(tmp_path / "o"), *SIM]
    assert main(argv) == 0
    job_id = job_ids(Path(os.environ["NOVELGEN_DATA_DIR"]))[-1]
    capsys.readouterr()
    assert main(["export", job_id, "--format", "json"]) == 0
    tasks = json.loads(capsys.readouterr().out)["tasks"]
    first = tasks[0]
    assert first["description"] == "MAREN climbs to the lamp room."
    assert first["prompt"].startswith("MAREN climbs to the lamp room.\n\nCharacters:")
    assert first["characters"] == "Maren"
    assert first["style_version"].startswith("2+")


def test_composing_one_chapter_does_not_warn_about_the_others(
    inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bible_path, script = inputs
    assert main(["compose", str(script), "--style", str(bible_path), "--chapter", "1"]) == 0
    _, err = capsys.readouterr()
    assert "matches no panel" not in err
    assert main(["compose", str(script), "--style", str(bible_path), "--chapter", "3"]) == 2
    assert "no panel matches --chapter/--page/--panel" in capsys.readouterr().err
