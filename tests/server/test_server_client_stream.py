"""What a client written from the spec relies on, as an outside review found it: a job that
finishes between two updates is still reported, the final state is the last word (before
errors, before the hub's bye), request refusals are not punished like malformed frames."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from server_testkit import (
    FAST_RUN_SETTINGS,
    TOKEN,
    png_for,
    recv_message,
    send_result,
    start_service_hub,
    worker_connection,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.sim.remote import run_sim_workers
from novelgen_desktop.sim.worker import SimBehaviour

QUICK = SimBehaviour(latency_median=0.02, latency_sigma=0.0, image_size=32, reuse_images=4)


async def client(url: str) -> ClientConnection:
    ws = await connect(url, compression=None)
    await ws.send(json.dumps({"v": 1, "type": "hello", "token": TOKEN, "role": "client",
                              "versions": [1]}))  # fmt: skip
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


async def request(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"v": 1, **fields}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] not in ("heartbeat", "job_progress", "errors"):
            return dict(frame)


async def frames_until(ws: ClientConnection, stop: Any, timeout: float = 15) -> list[Any]:
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            seen.append(frame)
            if stop(frame):
                return seen


def test_subscribe_to_every_job_reports_a_job_submitted_later_that_finishes_at_once(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[Any]:
        _service, hub, url = await start_service_hub(tmp_path / "data")
        stop = asyncio.Event()
        sims = asyncio.create_task(run_sim_workers(url, TOKEN, 2, QUICK, stop=stop))
        try:
            sub, other = await client(url), await client(url)
            ack = await request(sub, type="subscribe", request_id="s1", interval=5.0)
            assert ack["type"] == "ack"
            submitted = await request(
                other, type="submit", request_id="r1", name="quick", prompts=["a", "b"]
            )
            return await frames_until(
                sub,
                lambda f: (
                    f["type"] == "job_progress"
                    and f["job_id"] == submitted["job_id"]
                    and f["state"] == "finished"
                ),
            )
        finally:
            stop.set()
            await hub.stop()
            await sims

    frames = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert frames[-1]["done"] == 2


def test_final_state_is_sent_before_bye_and_errors_come_before_it(tmp_path: Path) -> None:
    async def scenario() -> list[Any]:
        service, hub, url = await start_service_hub(tmp_path / "data")
        sub = await client(url)
        submitted = await request(
            sub, type="submit", request_id="r1", name="last", prompts=["a", "b"]
        )
        job_id = submitted["job_id"]
        await request(sub, type="subscribe", request_id="s1", job_ids=[job_id], interval=60.0)
        async with worker_connection(url, "tab-1") as ws:
            first = await asyncio.wait_for(recv_message(ws), 10)
            assert isinstance(first, m.Assign)
            broke = m.TaskError(
                task_id=first.task_id,
                attempt=first.attempt,
                kind=m.ErrorKind.PAGE_ERROR,
                message="broke",
            )
            await ws.send(m.encode(broke))
            for _ in range(2):
                assign = await asyncio.wait_for(recv_message(ws), 10)
                while not isinstance(assign, m.Assign):
                    assign = await asyncio.wait_for(recv_message(ws), 10)
                await send_result(ws, assign, png_for(assign))
            async with asyncio.timeout(10):
                while (await service.view(job_id)).done < 2:
                    await asyncio.sleep(0.02)
            # The 60 s interval has not come round: the hub's stop must still report the end.
            stopping = asyncio.create_task(hub.stop())
            frames = []
            try:
                async with asyncio.timeout(20):
                    while True:
                        frame = json.loads(await sub.recv())
                        frames.append(frame)
                        if frame["type"] == "bye":
                            break
            except ConnectionClosed:
                pass
            await stopping
        return frames

    frames = asyncio.run(asyncio.wait_for(scenario(), 60))
    kinds = [f["type"] for f in frames if f["type"] != "heartbeat"]
    assert kinds[-1] == "bye"
    progress = [f for f in frames if f["type"] == "job_progress"]
    assert progress[-1]["state"] == "finished"
    last_errors = max(i for i, f in enumerate(frames) if f["type"] == "errors")
    last_progress = max(i for i, f in enumerate(frames) if f["type"] == "job_progress")
    assert last_errors < last_progress  # the final state is the last word about the job


def test_request_refusals_do_not_close_the_connection_but_garbage_does(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], int | None]:
        _service, hub, url = await start_service_hub(
            tmp_path / "data", refused_limit=5, refused_window=60.0
        )
        try:
            ws = await client(url)
            codes = []
            for i in range(12):  # far beyond the limit of 5
                answer = await request(
                    ws, type="control", request_id=f"c{i}", job_id="no-such-job", action="pause"
                )
                codes.append(answer["code"])
            # A peer's own error frame and a second hello are answered, not fatal either.
            await ws.send(json.dumps({"v": 1, "type": "error", "code": "bad_field",
                                      "message": "your frame was odd"}))  # fmt: skip
            listed = await request(ws, type="list_jobs", request_id="l1")
            assert listed["type"] == "jobs"
            for _ in range(6):
                await ws.send("not json")
            try:
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            except ConnectionClosed:
                pass
            return codes, ws.close_code
        finally:
            await hub.stop()

    codes, close = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert codes == ["unknown_job"] * 12
    assert close == 4008


def test_second_hello_is_refused_and_the_connection_goes_on(tmp_path: Path) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        _service, hub, url = await start_service_hub(tmp_path / "data")
        try:
            ws = await client(url)
            again = await request(ws, type="hello", token=TOKEN, role="client", versions=[1])
            listed = await request(ws, type="list_jobs", request_id="l1")
            return again, listed
        finally:
            await hub.stop()

    again, listed = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert again["type"] == "error" and "first frame" in again["message"]
    assert listed["type"] == "jobs"


def test_a_late_result_for_a_finished_job_is_a_duplicate_and_assign_metadata_has_no_nulls(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[m.Assign, m.Message]:
        service, hub, url = await start_service_hub(tmp_path / "data", restart_grace=0.2)
        stop = asyncio.Event()
        try:
            job, _ = await service.submit("done", [_spec("only panel")])
            async with worker_connection(url, "slow-tab") as ws:
                first = await asyncio.wait_for(recv_message(ws), 10)
                assert isinstance(first, m.Assign)
            # slow-tab is gone past its grace: another tab does the task, the job finishes.
            sims = asyncio.create_task(run_sim_workers(url, TOKEN, 1, QUICK, stop=stop))
            async with asyncio.timeout(10):
                while (await service.view(job.id)).state.value != "finished":
                    await asyncio.sleep(0.02)
            async with worker_connection(url, "slow-tab") as ws:
                await send_result(ws, first, png_for(first))
                answer = await asyncio.wait_for(recv_message(ws), 10)
            stop.set()
            await sims
            return first, answer
        finally:
            await hub.stop()

    first, answer = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert isinstance(answer, m.Ack) and answer.outcome == "duplicate"
    assert first.metadata is not None
    assert None not in first.metadata.values()
    assert first.metadata["job_id"].startswith("done-")


def _spec(text: str) -> Any:
    from novelgen_desktop.engine.service import specs_from_prompts

    return specs_from_prompts([text])[0][0]


assert FAST_RUN_SETTINGS.wait_for_workers
