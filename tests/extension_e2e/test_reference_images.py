"""Reference images end to end: a style bible's character sheet, from the job to ChatGPT's composer.

Hub + job service + the extension in real Chromium + the imitation of chatgpt.com. A job made
with a style bible lists the character's reference image on its tasks; the hub sends the bytes
(``reference_image``) before the ``assign``; the extension keeps them and the page uploads them
through the composer's file input before typing. The site logs uploads and sent prompts with
one event counter, so "the upload happened before the prompt that used it" is checked on what
the site saw, and the saved image must be the generated one, never the reference shown in the
user's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.style import load_style_bible
from tests.extension_e2e.rig import BrowserRig, browser_rig, dump, job_outputs, keep_alive
from tests.fixtures.chatgpt import Behaviour, FakeChatGPT, GenerationRecord, Upload
from tests.fixtures.chatgpt.images import render_png
from tests.server.server_testkit import JobClient

BIBLE = """\
[style]
medium = "ink and watercolour graphic novel panel"

[characters.Mara]
description = "A lighthouse keeper of thirty, dark hair tied back, yellow oilskin coat."
references = ["mara.png"]
"""


def write_bible(tmp_path: Path) -> tuple[Path, str]:
    """The bible and Mara's sheet (a real 256x384 PNG: large enough to pass for a generated
    image when the page shows it in the user's message). Returns the bible and the sheet's
    sha256."""
    folder = tmp_path / "bible"
    folder.mkdir()
    sheet = render_png("Mara, reference sheet", "mara-sheet", (256, 384))
    (folder / "mara.png").write_bytes(sheet)
    (folder / "book.toml").write_text(BIBLE, encoding="utf-8")
    return folder / "book.toml", hashlib.sha256(sheet).hexdigest()


def panels(*numbers: int, page: int = 1) -> list[PromptSpec]:
    return [
        PromptSpec(
            text=f"@Mara climbs the tower stairs, panel {n}",
            source=SourceLocation("script.md", n),
            chapter="1",
            page=page,
            panel=n,
        )
        for n in numbers
    ]


async def run_styled_job(
    rig: BrowserRig,
    bible: Path,
    specs: Sequence[PromptSpec],
    *,
    chat_strategy: str,
    timeout: float = 60,
) -> tuple[str, str]:
    """Submit ``specs`` with the bible through the job service and wait for the end; returns
    (job id, final state)."""
    job, _ = await rig.service.submit(
        "styled", specs, style=load_style_bible(bible), chat_strategy=chat_strategy
    )
    async with JobClient.connect(rig.hub_url) as client:
        await client.subscribe(job.id, interval=0.3)
        beat = asyncio.create_task(keep_alive(client))
        try:
            final = await client.progress_until(
                job.id, ("finished", "incomplete", "cancelled"), timeout=timeout
            )
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
    return job.id, final.state


def sends(site: FakeChatGPT) -> list[GenerationRecord]:
    return [r for r in site.requests if r.action == "send"]


def done_tasks(rig: BrowserRig, job_id: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(rig.data_dir / "novelgen.sqlite")) as conn:
        return conn.execute(
            "SELECT id, state, output_path, sha256 FROM tasks WHERE job_id = ? ORDER BY seq",
            (job_id,),
        ).fetchall()


def failed_attempts(rig: BrowserRig, job_id: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(rig.data_dir / "novelgen.sqlite")) as conn:
        return conn.execute(
            "SELECT a.task_id, a.attempt, a.error_kind, a.error_message FROM attempts a "
            "JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ? AND a.outcome != 'done' "
            "ORDER BY a.started_at",
            (job_id,),
        ).fetchall()


def manifest_rows(rig: BrowserRig, job_id: str) -> list[dict[str, Any]]:
    out = Path(job_outputs(rig.data_dir, job_id)["out_dir"])
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def assert_saved_images_are_generated(rig: BrowserRig, job_id: str, reference: str) -> None:
    """Every task is done, its file on disk is the image the site generated for it (one of
    its assistant images), and never the reference sheet the user's message shows."""
    out = Path(job_outputs(rig.data_dir, job_id)["out_dir"])
    generated = {
        rig.site.image_sha256[f] for r in rig.site.requests for f in r.file_ids
    }  # assistant images only
    for task_id, state, output, sha in done_tasks(rig, job_id):
        assert state == "done", (task_id, state)
        assert hashlib.sha256((out / output).read_bytes()).hexdigest() == sha
        assert sha != reference, f"task {task_id}: the reference sheet was saved as its image"
        assert sha in generated, f"task {task_id}: not an image the site generated"


def test_a_reference_is_uploaded_before_the_prompt_that_carries_it(tmp_path: Path) -> None:
    bible, sheet = write_bible(tmp_path)

    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            site.set_upload(Upload.slow(0.6))  # send stays disabled meanwhile
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=1)
                await rig.wait_connected(1, timeout=60)
                job_id, state = await run_styled_job(rig, bible, panels(1), chat_strategy="panel")
                report = job_outputs(rig.data_dir, job_id)
                assert state == "finished" and report["done"] == 1, dump(report)
                (upload,) = site.uploads_of(sheet)
                (prompt,) = sends(site)
                assert (upload.outcome, upload.name, upload.mime) == (
                    "uploaded",
                    "mara.png",
                    "image/png",
                )
                assert upload.event < prompt.event, dump(site.timeline())
                assert upload.page_id == prompt.page_id, "uploaded and sent from the same page"
                assert prompt.attachment_sha256s == [sheet]
                assert prompt.attachment_file_ids == [upload.file_id]
                assert "panel 1" in prompt.prompt and "Mara" in prompt.prompt
                assert_saved_images_are_generated(rig, job_id, sheet)
                # What ChatGPT received is the composed prompt, line breaks included, and
                # the manifest says so with the bible's version.
                (row,) = manifest_rows(rig, job_id)
                version = load_style_bible(bible).version
                assert row["prompt"] == prompt.prompt, (row["prompt"], prompt.prompt)
                assert row["prompt"].startswith("Mara climbs the tower stairs, panel 1\n\n")
                assert "- Mara (reference image: mara.png): A lighthouse keeper" in row["prompt"]
                assert row["description"] == "Mara climbs the tower stairs, panel 1"
                assert (row["style_bible"], row["style_version"]) == ("book", version)
                assert row["characters"] == ["Mara"]
                errors = await rig.extension_errors()
                assert errors == {"warnings": [], "manifest": [], "runtime": []}, errors

    asyncio.run(scenario())


def test_a_page_in_one_conversation_uploads_its_reference_once(tmp_path: Path) -> None:
    bible, sheet = write_bible(tmp_path)

    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.4)) as site:
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=1)
                await rig.wait_connected(1, timeout=60)
                job_id, state = await run_styled_job(
                    rig, bible, panels(1, 2, 3), chat_strategy="page"
                )
                report = job_outputs(rig.data_dir, job_id)
                assert state == "finished" and report["done"] == 3, dump(report)
                prompts = sends(site)
                assert [p.prompt.split("\n")[0][-7:] for p in prompts] == [
                    "panel 1",
                    "panel 2",
                    "panel 3",
                ], "the page's panels in script order"
                # One conversation: the first prompt opened it, the others continued it.
                (conversation,) = {p.conversation_id for p in prompts}
                # The sheet went up once, before the first prompt, which alone carries it.
                (upload,) = site.uploads_of(sheet)
                assert upload.event < prompts[0].event
                assert [p.attachment_sha256s for p in prompts] == [[sheet], [], []]
                # The tab kept the conversation's URL and what is attached in it.
                kept = await rig.evaluate(
                    "async () => (await ready).slots.get(1).record.conversations"
                )
                (entry,) = kept.values()
                assert entry["url"] == f"https://chatgpt.com/c/{conversation}", kept
                assert entry["attached"] == [sheet], kept
                assert_saved_images_are_generated(rig, job_id, sheet)

    asyncio.run(scenario())


def test_a_refused_upload_fails_the_attempt_before_anything_is_sent(tmp_path: Path) -> None:
    bible, sheet = write_bible(tmp_path)

    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            site.set_upload(Upload.refused("File is too large."), times=1)
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=1)
                await rig.wait_connected(1, timeout=60)
                job_id, state = await run_styled_job(rig, bible, panels(1), chat_strategy="panel")
                report = job_outputs(rig.data_dir, job_id)
                # The retry (normal rules: page_error is retried with backoff) went through.
                assert state == "finished" and report["done"] == 1, dump(report)
                refused, accepted = site.uploads_of(sheet)
                assert (refused.outcome, refused.error) == ("refused", "File is too large.")
                assert accepted.outcome == "uploaded"
                # Nothing was sent with the refused upload: the one prompt came after the
                # accepted upload of the second attempt, and carries it.
                (prompt,) = sends(site)
                assert refused.event < accepted.event < prompt.event, dump(site.timeline())
                assert prompt.attachment_file_ids == [accepted.file_id]
                ((_, attempt, kind, message),) = failed_attempts(rig, job_id)
                assert (attempt, kind) == (1, "page_error")
                assert "File is too large." in message and "not sent" in message, message
                assert_saved_images_are_generated(rig, job_id, sheet)

    asyncio.run(scenario())
