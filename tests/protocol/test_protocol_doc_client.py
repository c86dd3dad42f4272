"""A client written only from docs/protocol.md can submit a job and follow it to the end.

The client half of this file uses nothing but ``json`` and ``websockets``: its frames are the
doc's own ``json`` examples (``hello`` as a client, the inline ``submit``, ``subscribe``,
``list_jobs``) with the token and the job id filled in, and every answer is checked against
the field tables of the doc. The hub half is the real thing: a ``JobService`` behind a
``Hub`` and simulated workers over WebSocket."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TOKEN = "Zk4pQ8wN2xR7vB1mT6yH3cJ9sD5fG0aL8eU2iO4nK7q"

# -- what the doc says ---------------------------------------------------------------------


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """``### `type` `` and ``#### object `Name` `` sections, by name, up to the next heading."""
    parts = re.split(r"^(#{2,4} .*)$", text, flags=re.MULTILINE)
    out: dict[str, str] = {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        match = re.fullmatch(r"#{3,4} (?:object )?`([a-z_A-Z]+)`", heading.strip())
        if match:
            out[match.group(1)] = body
    return out


def json_blocks(body: str) -> list[dict[str, Any]]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", body, flags=re.DOTALL)]


def field_table(body: str) -> dict[str, str]:
    """``field → required`` column of a section's first table."""
    fields: dict[str, str] = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[a-z_0-9]+`", cells[0]):
            fields[cells[0].strip("`")] = cells[2]
    return fields


def object_types(body: str) -> dict[str, str]:
    """``field → object name`` for fields whose type is an array of a documented object."""
    out: dict[str, str] = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`[a-z_0-9]+`", cells[0]):
            match = re.fullmatch(r"array of `([A-Z][A-Za-z]+)`", cells[1])
            if match:
                out[cells[0].strip("`")] = match.group(1)
    return out


SECTIONS = sections(doc_text())


def example(type_: str, **where: Any) -> dict[str, Any]:
    """The doc's example of ``type_`` whose keys/values match ``where`` (value ``...``: the
    key is present)."""
    for block in json_blocks(doc_text()):
        if block.get("type") == type_ and all(
            (key in block) if value is ... else block.get(key) == value
            for key, value in where.items()
        ):
            assert block["type"] == type_
            return block
    raise AssertionError(f"docs/protocol.md has no {type_} example with {where}")


def check_against_doc(frame: dict[str, Any]) -> None:
    """Every field of ``frame`` is in its section's table; every required one is present;
    documented objects inside arrays likewise."""
    assert frame.get("v") == 1, frame
    check_object(frame["type"], {k: v for k, v in frame.items() if k not in ("v", "type")})


def check_object(name: str, obj: dict[str, Any]) -> None:
    body = SECTIONS[name]
    table = field_table(body)
    assert table, f"no field table for {name}"
    unknown = set(obj) - set(table)
    assert not unknown, f"{name}: fields {sorted(unknown)} are not in docs/protocol.md"
    required = {f for f, req in table.items() if req == "yes"}
    missing = required - set(obj)
    assert not missing, f"{name}: required fields {sorted(missing)} missing from {obj}"
    for field, object_name in object_types(body).items():
        for item in obj.get(field) or []:
            check_object(object_name, item)


# -- the client: json + websockets only ----------------------------------------------------


class DocClient:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def next(self) -> dict[str, Any]:
        while True:
            async with asyncio.timeout(15):
                frame: dict[str, Any] = json.loads(await self.ws.recv())
            check_against_doc(frame)
            self.seen.append(frame)
            if frame["type"] != "heartbeat":
                return frame

    async def answer(self, request_id: str) -> dict[str, Any]:
        """The frame answering ``request_id`` (``re``); progress frames in between are kept."""
        while True:
            frame = await self.next()
            if frame.get("re") == request_id:
                return frame


async def doc_client(url: str, token: str) -> dict[str, Any]:
    hello = {**example("hello", role="client"), "token": token}
    submit = example("submit", prompts=...)
    subscribe = example("subscribe")
    list_jobs = example("list_jobs")
    async with connect(url) as ws:
        client = DocClient(ws)
        await client.send(hello)
        welcome = await client.next()
        assert welcome["type"] == "welcome" and welcome["version"] == 1

        await client.send(submit)
        submitted = await client.answer(submit["request_id"])
        assert submitted["type"] == "submitted", submitted
        assert submitted["tasks"] == len(submit["prompts"])
        job_id = submitted["job_id"]

        await client.send({**subscribe, "job_ids": [job_id], "interval": 0.25})
        ack = await client.answer(subscribe["request_id"])
        assert ack["type"] == "ack", ack
        while True:
            frame = await client.next()
            if frame["type"] == "job_progress" and frame["job_id"] == job_id:
                assert frame["state"] in ("running", "finished"), frame
                if frame["state"] == "finished":
                    break
        assert frame["done"] == frame["total"] == len(submit["prompts"])

        # The doc's list_jobs filters running and paused jobs: the finished one is not there;
        # without the filter it is, newest first.
        await client.send(list_jobs)
        jobs = await client.answer(list_jobs["request_id"])
        assert jobs["type"] == "jobs" and job_id not in [j["job_id"] for j in jobs["jobs"]]
        unfiltered = {k: v for k, v in list_jobs.items() if k != "states"}
        await client.send({**unfiltered, "request_id": "req-all"})
        jobs = await client.answer("req-all")
        assert jobs["type"] == "jobs"
        assert [j["job_id"] for j in jobs["jobs"]] == [job_id]
        assert jobs["jobs"][0]["state"] == "finished"
        assert jobs["jobs"][0]["name"] == submit["name"]
        return {"job_id": job_id, "seen": client.seen, "final": frame}


# -- the tests -------------------------------------------------------------------------------


def test_doc_mentions_every_field_the_client_sends() -> None:
    frames = [
        example("hello", role="client"),
        example("submit", prompts=...),
        example("subscribe"),
        example("list_jobs"),
    ]
    for frame in frames:
        check_against_doc(frame)
        assert "request_id" in frame or frame["type"] == "hello"
    frames_section = doc_text().split("## Frames", 1)[1].split("## Lifecycle", 1)[0]
    assert "`v`" in frames_section and "`type`" in frames_section
    # The answers the client reads are documented too.
    for name, fields in {
        "submitted": ("re", "job_id", "tasks"),
        "ack": ("re",),
        "job_progress": ("job_id", "state", "done", "total"),
        "jobs": ("re", "jobs"),
        "JobSummary": ("job_id", "state", "name"),
        "welcome": ("version",),
    }.items():
        assert set(fields) <= set(field_table(SECTIONS[name])), name


def test_check_against_doc_catches_an_undocumented_field() -> None:
    """The checker can fail: an extra field, a missing required one, a bad nested object."""
    good = example("jobs")
    check_against_doc(good)
    with pytest.raises(AssertionError, match="not in docs"):
        check_against_doc({**good, "surprise": 1})
    with pytest.raises(AssertionError, match="required"):
        check_against_doc({k: v for k, v in good.items() if k != "re"})
    with pytest.raises(AssertionError, match="JobSummary"):
        check_against_doc({**good, "jobs": [{"job_id": "x"}]})


def test_a_client_built_from_the_doc_submits_and_follows_a_job(tmp_path: Path) -> None:
    # The hub side (not part of the client): a real job service, hub and simulated tabs.
    from novelgen_desktop.engine.runner import RunSettings
    from novelgen_desktop.engine.service import JobService, ServiceSettings
    from novelgen_desktop.paths import resolve_data_dir
    from novelgen_desktop.server.hub import Hub
    from novelgen_desktop.sim.remote import run_sim_workers
    from novelgen_desktop.sim.worker import SimBehaviour
    from tests.integration.helpers import assert_job_complete_and_consistent

    data_dir = tmp_path / "data"

    async def scenario() -> dict[str, Any]:
        settings = ServiceSettings(run=RunSettings(fsync_files=False, wait_for_workers=True))
        service = JobService(resolve_data_dir(data_dir), settings)
        await service.start()
        hub = Hub(TOKEN, service=service)
        port = await hub.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/"
        stop = asyncio.Event()
        behaviour = SimBehaviour(
            latency_median=0.0, latency_sigma=0.0, reuse_images=4, image_size=64
        )
        workers = asyncio.create_task(run_sim_workers(url, TOKEN, 2, behaviour, stop=stop))
        try:
            return await asyncio.wait_for(doc_client(url, TOKEN), 30)
        finally:
            stop.set()
            await asyncio.wait_for(hub.stop(), 20)
            await asyncio.wait_for(workers, 10)

    outcome = asyncio.run(scenario())
    seen_types = {f["type"] for f in outcome["seen"]}
    assert {"welcome", "submitted", "ack", "job_progress", "jobs"} <= seen_types
    assert all(f["type"] != "error" for f in outcome["seen"]), outcome["seen"]
    final = outcome["final"]
    assert_job_complete_and_consistent(data_dir, outcome["job_id"], final["total"])
