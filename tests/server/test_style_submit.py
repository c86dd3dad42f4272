"""A style bible through the hub: ``submit.style``, ``reference_image`` before ``assign``.

The worker here is a raw protocol peer, so every frame the hub sends is seen in order: a
reference image's bytes arrive once per connection, before the first assign that lists it,
only for workers that announced the ``references`` capability.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from novelgen_desktop.engine.composition import REFERENCES_DIR
from novelgen_desktop.protocol import messages as m
from tests.server.server_testkit import (
    TOKEN,
    JobClient,
    png_for,
    recv_message,
    send_result,
    start_service_hub,
)
from tests.style.style_testutil import write_png

BIBLE = """
[bible]
name = "Hallow Point"

[style]
medium = "ink and watercolour graphic-novel panel"

[characters.Maren]
description = "a tall woman in a red wool coat"
references = ["maren.png"]

[characters.Isak]
description = "a boy of twelve"
references = ["isak.png", "maren.png"]
"""

SCRIPT = """CHAPTER 1
PAGE 1
Panel 1
@Maren climbs the stair.
Panel 2
@Isak follows @Maren.
PAGE 2
Panel 1
@Isak alone on the rocks.
Panel 2
The sea, empty.
"""


def write_inputs(folder: Path, bible: str = BIBLE) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    write_png(folder / "maren.png", (200, 30, 30), size=8)
    write_png(folder / "isak.png", (30, 30, 200), size=8)
    (folder / "bible.toml").write_text(bible, encoding="utf-8")
    (folder / "book.script").write_text(SCRIPT, encoding="utf-8")
    return folder / "bible.toml", folder / "book.script"


@contextlib.asynccontextmanager
async def worker(
    url: str, worker_id: str, capabilities: tuple[str, ...]
) -> AsyncIterator[ClientConnection]:
    async with connect(url, compression=None, max_size=2**26) as ws:
        hello = m.Hello(
            token=TOKEN,
            role=m.Role.WORKER,
            versions=(1,),
            worker_id=worker_id,
            account_id=f"acc-{worker_id}",
            kind="simulated",
            capabilities=capabilities,
        )
        await ws.send(m.encode(hello))
        assert isinstance(await recv_message(ws), m.Welcome)
        yield ws


async def submit(client: JobClient, **fields: Any) -> m.Message:
    """A ``submit`` request; its answer (``submitted`` or ``error``)."""
    return await client.request(m.Submit(request_id=client.next_id(), **fields))


async def serve(ws: ClientConnection, log: list[m.Message], stop: asyncio.Event) -> None:
    """Answer every assign with a PNG; keep every frame the hub sent, in order."""
    while not stop.is_set():
        try:
            message = await asyncio.wait_for(recv_message(ws), 0.2)
        except TimeoutError:
            continue
        log.append(message)
        if isinstance(message, m.Assign):
            await send_result(ws, message, png_for(message))


def test_references_go_once_per_connection_before_their_first_assign(tmp_path: Path) -> None:
    async def scenario() -> None:
        bible_path, script = write_inputs(tmp_path / "in")
        service, hub, url = await start_service_hub(tmp_path / "data")
        stop = asyncio.Event()
        logs: dict[str, list[m.Message]] = {"w1": [], "w2": []}
        try:
            async with (
                worker(url, "w1", ("binary_frames", "references")) as w1,
                worker(url, "w2", ("binary_frames", "references")) as w2,
                JobClient.connect(url) as client,
            ):
                servers = [
                    asyncio.create_task(serve(w1, logs["w1"], stop)),
                    asyncio.create_task(serve(w2, logs["w2"], stop)),
                ]
                answer = await submit(
                    client,
                    name="book",
                    path=str(script),
                    style=str(bible_path),
                    chat_strategy=m.ChatStrategy.PAGE,
                )
                assert isinstance(answer, m.Submitted), answer
                await client.subscribe(answer.job_id, interval=0.25)
                final = await client.progress_until(answer.job_id, ("finished",), timeout=20)
                assert final.done == 4
                stop.set()
                await asyncio.gather(*servers)
            job = await service.find_job(answer.job_id)
            tasks = await service.task_rows(answer.job_id)
        finally:
            await hub.stop()
            await service.stop()

        sha = {
            name: hashlib.sha256((tmp_path / "in" / name).read_bytes()).hexdigest()
            for name in ("maren.png", "isak.png")
        }
        assigns = 0
        for name, log in logs.items():
            received: dict[str, int] = {}
            for index, message in enumerate(log):
                if isinstance(message, m.ReferenceImage):
                    assert message.sha256 not in received, f"{name}: sent twice"
                    data = base64.b64decode(message.data)
                    assert hashlib.sha256(data).hexdigest() == message.sha256
                    assert len(data) == message.size
                    received[message.sha256] = index
                if isinstance(message, m.Assign):
                    assigns += 1
                    for ref in message.references:
                        assert received.get(ref.sha256, index) < index, f"{name}: bytes after"
                    # each page in one conversation on one worker
                    assert message.metadata is not None
                    assert message.metadata["sequence"] == f"ch:1/p:{message.metadata['page']}"
        assert assigns == 4
        by_prompt = {
            a.prompt.split("\n")[0]: a
            for log in logs.values()
            for a in log
            if isinstance(a, m.Assign)
        }
        second = by_prompt["Isak follows Maren."]
        assert [r.name for r in second.references] == ["isak.png", "maren.png"]
        assert [r.sha256 for r in second.references] == [sha["isak.png"], sha["maren.png"]]
        assert by_prompt["The sea, empty."].references == ()
        assert job.settings["chat_strategy"] == "page"
        copies = sorted(p.name for p in (tmp_path / "data").rglob(f"{REFERENCES_DIR}/*"))
        assert copies == sorted(f"{h}.png" for h in sha.values())
        manifest = [
            json.loads(line)
            for line in (Path(job.out_dir) / "manifest.jsonl").read_text().splitlines()
        ]
        assert {row["style_version"] for row in manifest} == {
            job.settings["style_bible"]["version"]
        }
        assert len(tasks) == 4

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_worker_without_the_capability_gets_no_reference_frames(tmp_path: Path) -> None:
    async def scenario() -> None:
        bible_path, script = write_inputs(tmp_path / "in")
        service, hub, url = await start_service_hub(tmp_path / "data")
        stop = asyncio.Event()
        log: list[m.Message] = []
        try:
            async with (
                worker(url, "old", ("binary_frames",)) as ws,
                JobClient.connect(url) as client,
            ):
                server = asyncio.create_task(serve(ws, log, stop))
                answer = await submit(
                    client,
                    name="book",
                    path=str(script),
                    style=str(bible_path),
                )
                assert isinstance(answer, m.Submitted), answer
                await client.subscribe(answer.job_id, interval=0.25)
                await client.progress_until(answer.job_id, ("finished",), timeout=20)
                stop.set()
                await server
        finally:
            await hub.stop()
            await service.stop()
        assigns = [x for x in log if isinstance(x, m.Assign)]
        assert len(assigns) == 4
        assert not any(isinstance(x, m.ReferenceImage) for x in log)
        assert all(a.references == () for a in assigns)
        assert all("sequence" not in (a.metadata or {}) for a in assigns)  # panel strategy

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_submit_refuses_a_bad_bible_and_an_unknown_mention_with_the_place(tmp_path: Path) -> None:
    async def scenario() -> None:
        bad = BIBLE.replace('description = "a boy of twelve"', 'colour = "blue"')
        bible_path, script = write_inputs(tmp_path / "in", bad)
        service, hub, url = await start_service_hub(tmp_path / "data")
        try:
            async with JobClient.connect(url) as client:
                answer = await submit(
                    client,
                    name="book",
                    path=str(script),
                    style=str(bible_path),
                )
                assert isinstance(answer, m.Error) and answer.field == "style", answer
                assert f"{bible_path}:13: field 'characters.Isak.colour': unknown key" in (
                    answer.message
                )
                assert "characters.Isak.description" in answer.message  # every problem

                good, _ = write_inputs(tmp_path / "in2")
                answer = await submit(
                    client,
                    name="typo",
                    prompts=("@Maren sails", "@Isac waves"),
                    style=str(good),
                )
                assert isinstance(answer, m.Error) and answer.field == "prompts", answer
                assert "@Isac is not in style bible" in answer.message
                assert "did you mean @Isak" in answer.message

                answer = await submit(
                    client,
                    name="relative",
                    prompts=("a",),
                    style="bible.toml",
                )
                assert isinstance(answer, m.Error) and answer.field == "style", answer
            assert await service.list_jobs() == []
        finally:
            await hub.stop()
            await service.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_damaged_reference_copy_fails_the_attempt_without_sending_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        bible_path, _ = write_inputs(tmp_path / "in")
        service, hub, url = await start_service_hub(tmp_path / "data")
        stop = asyncio.Event()
        log: list[m.Message] = []
        try:
            async with JobClient.connect(url) as client:
                answer = await submit(
                    client,
                    name="one",
                    prompts=("@Maren waits",),
                    style=str(bible_path),
                )
                assert isinstance(answer, m.Submitted), answer
                for copy in (tmp_path / "data").rglob(f"{REFERENCES_DIR}/*.png"):
                    copy.write_bytes(b"not the picture")
                await client.subscribe(answer.job_id, interval=0.25)
                async with worker(url, "w1", ("binary_frames", "references")) as ws:
                    server = asyncio.create_task(serve(ws, log, stop))
                    errors: list[str] = []
                    async with asyncio.timeout(20):
                        while not errors:
                            await asyncio.sleep(0.1)
                            groups = await service.error_groups(answer.job_id)
                            errors = [g.message for g in groups]
                    stop.set()
                    await server
        finally:
            await hub.stop()
            await service.stop()
        assert any("maren.png in the job folder is damaged" in e for e in errors), errors
        assert not any(isinstance(x, m.Assign | m.ReferenceImage) for x in log)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_references_are_sent_again_after_the_worker_failed_for_want_of_them(
    tmp_path: Path,
) -> None:
    """A worker that lost or refused the bytes fails the attempt page_error; the retry must
    not fail the same way for the rest of the connection."""

    async def scenario() -> None:
        bible_path, _ = write_inputs(tmp_path / "in")
        service, hub, url = await start_service_hub(tmp_path / "data")
        log: list[m.Message] = []
        try:
            async with (
                worker(url, "w1", ("binary_frames", "references")) as ws,
                JobClient.connect(url) as client,
            ):
                answer = await submit(
                    client,
                    name="one",
                    prompts=("@Maren waits",),
                    style=str(bible_path),
                )
                assert isinstance(answer, m.Submitted), answer
                async with asyncio.timeout(20):
                    while True:
                        message = await recv_message(ws)
                        log.append(message)
                        if not isinstance(message, m.Assign):
                            continue
                        if message.attempt == 1:
                            failure = m.TaskError(
                                task_id=message.task_id,
                                attempt=1,
                                kind=m.ErrorKind.PAGE_ERROR,
                                message="missing reference image maren.png",
                            )
                            await ws.send(m.encode(failure))
                            continue
                        await send_result(ws, message, png_for(message))
                        break
                await client.subscribe(answer.job_id, interval=0.25)
                await client.progress_until(answer.job_id, ("finished",), timeout=20)
        finally:
            await hub.stop()
            await service.stop()
        kinds = [type(x).__name__ for x in log if isinstance(x, m.Assign | m.ReferenceImage)]
        assert kinds == ["ReferenceImage", "Assign", "ReferenceImage", "Assign"]

    asyncio.run(asyncio.wait_for(scenario(), 60))
