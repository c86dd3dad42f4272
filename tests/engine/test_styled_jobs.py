"""A job made with a style bible: what is stored, sent, recorded and regenerated.

The composed text is the task's prompt from creation on (so a resume, a retry or a
regeneration asks for the very same picture), each attempt records the bible version, the
manifest says which description and bible produced each image, and the job keeps its own
copy of every reference image.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from novelgen_desktop.engine.composition import REFERENCES_DIR
from novelgen_desktop.engine.model import ChatStrategy, JobState
from novelgen_desktop.engine.service import JobService, specs_from_prompts
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.prompts.issues import PromptImportError
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.manifest import MANIFEST_NAME
from novelgen_desktop.style import StyleBible, load_style_bible
from tests.engine.recording_worker import RecordingWorker
from tests.style.style_testutil import write_png

BIBLE = """
[bible]
name = "Hallow Point"
version = "7"

[style]
medium = "ink and watercolour graphic-novel panel"
palette = "cold slate and teal"
negative = ["lettering", "watermarks"]

[characters.Maren]
aliases = ["the keeper"]
description = "a tall woman of forty in a red wool coat"
references = ["maren.png"]

[characters.Isak]
description = "a boy of twelve with a shaved head"
"""


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return resolve_data_dir(tmp_path / "data")


@pytest.fixture
def bible(tmp_path: Path) -> StyleBible:
    folder = tmp_path / "bible"
    folder.mkdir()
    write_png(folder / "maren.png", (200, 30, 30), size=8)
    (folder / "bible.toml").write_text(BIBLE, encoding="utf-8")
    return load_style_bible(folder / "bible.toml")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


async def finished(service: JobService, job_id: str) -> None:
    async with asyncio.timeout(30):
        while True:
            view = await service.view(job_id)
            if view.state is JobState.FINISHED and not view.active:
                return
            await asyncio.sleep(0.02)


def attempts(paths: DataPaths, job_id: str) -> list[tuple[int, int, str, str | None, str | None]]:
    with Store(paths.database, check=False) as store:
        return [
            tuple(row)  # type: ignore[misc]
            for row in store.execute(
                "SELECT a.task_id, a.attempt, a.outcome, a.prompt_sent, a.style_version "
                "FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ? "
                "ORDER BY 1, 2",
                (job_id,),
            )
        ]


def test_a_styled_job_sends_and_records_the_composed_prompts(
    paths: DataPaths, bible: StyleBible
) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        tab = RecordingWorker("w1")
        try:
            specs, _ = specs_from_prompts(["@Maren lights the lamp", "Isak runs", "the sea"])
            job, count = await service.submit("styled", specs, style=bible)
            assert count == 3
            assert job.settings["style_bible"] == {
                "name": "Hallow Point",
                "version": bible.version,
                "file": bible.source,
            }
            assert job.settings["chat_strategy"] == "panel"
            service.add_worker(tab)
            await finished(service, job.id)
        finally:
            await service.stop()

        with Store(paths.database, check=False) as store:
            tasks = store.load_tasks(job.id)
            out_dir = Path(store.find_job(job.id, exact=True).out_dir)
        by_description = {t.metadata["composition"]["description"]: t for t in tasks}
        maren = by_description["Maren lights the lamp"]
        assert maren.prompt.startswith("Maren lights the lamp\n\nCharacters:\n- Maren")
        assert "Style: ink and watercolour graphic-novel panel" in maren.prompt
        assert maren.characters == ["Maren"]
        assert by_description["the sea"].characters == []

        # Sent: exactly the stored composed text, with the job's copy of Maren's sheet.
        sent = {a.task_id: a for a in tab.seen}
        assert sent[maren.id].prompt == maren.prompt
        (reference,) = sent[maren.id].references
        copy = Path(reference.path)
        assert copy.parent == paths.job_dir(job.id) / REFERENCES_DIR
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == reference.sha256
        assert reference.name == "maren.png" and reference.mime == "image/png"
        assert sent[by_description["Isak runs"].id].references == ()
        assert "sequence" not in sent[maren.id].metadata  # a new chat per panel

        # Recorded: each attempt's prompt and bible version; the manifest says the same.
        for task_id, _attempt, outcome, prompt_sent, version in attempts(paths, job.id):
            assert outcome == "done"
            assert prompt_sent == next(t.prompt for t in tasks if t.id == task_id)
            assert version == bible.version
        rows = [json.loads(line) for line in (out_dir / MANIFEST_NAME).read_text().splitlines()]
        assert len(rows) == 3
        for row in rows:
            task = next(t for t in tasks if t.id == row["task"])
            assert row["prompt"] == task.prompt
            assert row["description"] == task.metadata["composition"]["description"]
            assert (row["style_bible"], row["style_version"]) == ("Hallow Point", bible.version)
            assert row["characters"] == task.characters

    run(scenario)


def test_a_regenerated_panel_is_asked_for_with_the_same_style_after_the_bible_changed(
    paths: DataPaths, bible: StyleBible, tmp_path: Path
) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        tab = RecordingWorker("w1")
        try:
            specs, _ = specs_from_prompts(["@Maren on the causeway", "@Isak on the rocks"])
            job, _ = await service.submit("regen", specs, style=bible)
            service.add_worker(tab)
            await finished(service, job.id)
            # The author edits the bible and deletes the original image: the job keeps both.
            source = Path(bible.source or "")
            source.write_text(BIBLE.replace("red wool coat", "GREEN coat"), encoding="utf-8")
            (source.parent / "maren.png").unlink()
            first = {a.task_id: a for a in tab.seen}
            target = next(t for t, a in first.items() if a.references)
            service.hold_worker("w1", True)
            await service.regenerate_task(job.id, target)
            service.hold_worker("w1", False)
            await finished(service, job.id)
        finally:
            await service.stop()
        again = [a for a in tab.seen if a.task_id == target]
        assert [a.attempt for a in again] == [1, 2]
        assert again[1].prompt == again[0].prompt
        assert "red wool coat" in again[1].prompt
        assert again[1].references == again[0].references
        assert Path(again[1].references[0].path).is_file()
        versions = {v for t, _, _, _, v in attempts(paths, job.id) if t == target}
        assert versions == {bible.version}

    run(scenario)


def test_chat_strategy_page_keeps_a_page_on_one_worker_in_one_conversation(
    paths: DataPaths, bible: StyleBible
) -> None:
    async def scenario() -> None:
        from novelgen_desktop.prompts import parse_text

        script = "PAGE 1\nPanel 1\n@Maren wakes.\nPanel 2\n@Maren dresses.\nPanel 3\nShe goes.\n"
        script += "PAGE 2\nPanel 1\n@Isak waits.\nPanel 2\nIsak waves.\n"
        result = parse_text(script, filename="book.script", format="fullscript")
        assert result.ok, result.issues
        service = JobService(paths)
        await service.start()
        tabs = [RecordingWorker("w1"), RecordingWorker("w2")]
        try:
            job, _ = await service.submit(
                "pages", result.specs, style=bible, chat_strategy=ChatStrategy.PAGE
            )
            assert job.settings["chat_strategy"] == "page"
            for tab in tabs:
                service.add_worker(tab)
            await finished(service, job.id)
        finally:
            await service.stop()
        by_page: dict[object, set[str]] = {}
        for tab in tabs:
            for a in tab.seen:
                by_page.setdefault(a.metadata["page"], set()).add(tab.worker_id)
        assert all(len(workers) == 1 for workers in by_page.values()), by_page
        for tab in tabs:
            flags = [(a.metadata["page"], a.metadata["new_chat"]) for a in tab.seen]
            for page in {p for p, _ in flags}:
                of_page = [new for p, new in flags if p == page]
                assert of_page == [True] + [False] * (len(of_page) - 1)

    run(scenario)


def test_bad_input_creates_no_job(paths: DataPaths, bible: StyleBible) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts(["@Maren sails", "@Marn sleeps", "@Nobody"])
            with pytest.raises(PromptImportError) as info:
                await service.submit("typos", specs, style=bible)
            messages = [str(issue) for issue in info.value.issues]
            assert len(messages) == 2
            assert "@Marn is not in style bible 'Hallow Point' (did you mean @Maren" in messages[0]
            assert messages[0].startswith("<prompts>:2") or ":2:" in messages[0]
            with pytest.raises(ConfigError, match="chat strategy 'scene'"):
                await service.submit("bad", specs[:1], chat_strategy="scene")
            with pytest.raises(ConfigError, match="max chat turns 0"):
                await service.submit("bad", specs[:1], max_chat_turns=0)
            assert await service.list_jobs() == []
        finally:
            await service.stop()

    run(scenario)


def test_a_panel_style_reaches_the_prompt_without_a_bible(paths: DataPaths) -> None:
    async def scenario() -> None:
        import dataclasses

        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts(["a fox", "a whale"])
            specs = [dataclasses.replace(specs[0], style="pencil sketch."), specs[1]]
            job, _ = await service.submit("plain", specs)
            with Store(paths.database, check=False) as store:
                prompts = [t.prompt for t in store.load_tasks(job.id)]
            assert prompts == ["a fox\n\nStyle: pencil sketch.", "a whale"]
        finally:
            await service.stop()

    run(scenario)


def test_the_task_table_shows_description_characters_and_version(
    paths: DataPaths, bible: StyleBible
) -> None:
    async def scenario() -> None:
        service = JobService(paths)
        await service.start()
        try:
            specs, _ = specs_from_prompts(["@Maren and @Isak at the rail", "the sea"])
            job, _ = await service.submit("table", specs, style=bible)
            rows = (await service.task_table(job.id)).rows
            plain, _ = await service.submit("plain", specs_from_prompts(["a fox"])[0])
            plain_rows = (await service.task_table(plain.id)).rows
        finally:
            await service.stop()
        assert [r.characters for r in rows] == [("Maren", "Isak"), ()]
        assert [r.description for r in rows] == ["Maren and Isak at the rail", "the sea"]
        assert {r.style_version for r in rows} == {bible.version}
        assert rows[0].prompt.startswith("Maren and Isak at the rail\n\nCharacters:")
        assert [(r.characters, r.description, r.style_version) for r in plain_rows] == [
            ((), None, None)
        ]

    run(scenario)
