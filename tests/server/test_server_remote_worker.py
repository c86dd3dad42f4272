"""RemoteWorker over real sockets: assign → result (binary PNG) → ack, failures, crashes."""

from __future__ import annotations

import asyncio
import time

import pytest
from server_testkit import (
    make_hub,
    png_for,
    recv_message,
    running,
    send_result,
    serve_assignments,
    worker_connection,
)

from novelgen_desktop.engine.model import Assignment, ErrorKind, WorkerFailure, WorkerResult
from novelgen_desktop.engine.worker import Worker, WorkerCrashed
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.remote_worker import RemoteWorker
from novelgen_desktop.sim.render import render_panel_png


def _assignment(task_id: int, attempt: int = 1) -> Assignment:
    return Assignment(
        task_id=task_id,
        attempt=attempt,
        prompt=f"Panel {task_id}: the keeper climbs the stair",
        deadline=time.time() + 600,
        metadata={"chapter": 1, "page": task_id, "panel": 2},
    )


def test_twenty_assignments_end_to_end_with_binary_pngs() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, worker_connection(url, "sim-e2e") as ws:
            (worker,) = await hub.wait_for_workers(1, timeout=5)
            assert isinstance(worker, RemoteWorker)
            engine_worker: Worker = worker  # the engine's protocol is satisfied
            assert (worker.worker_id, worker.account_id, worker.kind) == (
                "sim-e2e",
                "profile-test",
                "simulated",
            )
            client = asyncio.create_task(serve_assignments(ws, 20))
            outcomes = []
            for task_id in range(1, 21):
                outcomes.append(await engine_worker.execute(_assignment(task_id)))
            acks = await asyncio.wait_for(client, 5)
            for task_id, outcome in enumerate(outcomes, start=1):
                assert isinstance(outcome, WorkerResult)
                assert (outcome.task_id, outcome.attempt) == (task_id, 1)
                expected = render_panel_png(
                    _assignment(task_id).prompt, width=64, height=64, seed=str(task_id)
                )
                assert outcome.image == expected
                assert outcome.image.startswith(b"\x89PNG")
                assert outcome.mime == "image/png"
            assert [(a.task_id, a.attempt, a.outcome) for a in acks] == [
                (str(i), 1, "accepted") for i in range(1, 21)
            ]
            assert worker.last_progress is not None
            assert not worker.busy

    asyncio.run(scenario())


def test_task_error_and_base64_result_and_duplicate() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, worker_connection(url) as ws:
            (worker,) = await hub.wait_for_workers(1, timeout=5)

            async def answer_with_error() -> m.Ack:
                assign = await recv_message(ws)
                assert isinstance(assign, m.Assign)
                error = m.TaskError(
                    task_id=assign.task_id,
                    attempt=assign.attempt,
                    kind=ErrorKind.RATE_LIMITED,
                    message="It resets in 12 minutes.",
                    retry_after=720.0,
                )
                await ws.send(m.encode(error))
                ack = await recv_message(ws)
                assert isinstance(ack, m.Ack)
                return ack

            client = asyncio.create_task(answer_with_error())
            outcome = await worker.execute(_assignment(7, attempt=3))
            assert outcome == WorkerFailure(
                7, 3, ErrorKind.RATE_LIMITED, "It resets in 12 minutes.", 720.0
            )
            ack = await client
            assert (ack.task_id, ack.attempt, ack.outcome) == ("7", 3, "accepted")

            async def answer_base64_twice() -> list[m.Message]:
                assign = await recv_message(ws)
                assert isinstance(assign, m.Assign)
                await send_result(ws, assign, png_for(assign), encoding="base64")
                first = await recv_message(ws)
                await send_result(ws, assign, png_for(assign))  # resent: a duplicate
                return [first, await recv_message(ws)]

            client2 = asyncio.create_task(answer_base64_twice())
            result = await worker.execute(_assignment(8))
            assert isinstance(result, WorkerResult)
            assert result.image.startswith(b"\x89PNG")
            first, second = await client2
            assert isinstance(first, m.Ack) and first.outcome == "accepted"
            assert isinstance(second, m.Ack) and second.outcome == "duplicate"

    asyncio.run(scenario())


def test_disconnect_mid_task_back_within_grace_holding_the_attempt_delivers() -> None:
    """An MV3 service worker restart: the attempt survives the drop and its result counts."""

    async def scenario() -> None:
        hub = make_hub(restart_grace=5.0)
        async with running(hub) as url:
            async with worker_connection(url, "sim-restart") as ws:
                (worker,) = await hub.wait_for_workers(1, timeout=5)
                task = asyncio.create_task(worker.execute(_assignment(1)))
                assign = await recv_message(ws)
                assert isinstance(assign, m.Assign) and assign.task_id == "1"
            for _ in range(100):
                if not worker.connected:
                    break
                await asyncio.sleep(0.01)
            assert not worker.connected
            await asyncio.sleep(0.2)
            assert not task.done(), "the attempt must wait for the grace period"
            async with worker_connection(url, "sim-restart", holding=(("1", 1),)) as ws2:
                await send_result(ws2, assign, png_for(assign))
                outcome = await asyncio.wait_for(task, 5)
                assert isinstance(outcome, WorkerResult) and outcome.task_id == 1
                ack = await recv_message(ws2)
                assert isinstance(ack, m.Ack) and ack.outcome == "accepted"
            assert worker.connections == 2

    asyncio.run(scenario())


def test_back_without_the_attempt_fails_it_at_once_and_a_late_result_is_judged() -> None:
    async def scenario() -> None:
        hub = make_hub(restart_grace=30.0)
        async with running(hub) as url:
            async with worker_connection(url, "sim-crash") as ws:
                (worker,) = await hub.wait_for_workers(1, timeout=5)
                task = asyncio.create_task(worker.execute(_assignment(1)))
                assign = await recv_message(ws)
                assert isinstance(assign, m.Assign)
            for _ in range(100):
                if not worker.connected:
                    break
                await asyncio.sleep(0.01)
            restart = asyncio.create_task(worker.restart())
            await asyncio.sleep(0.05)
            assert not restart.done() and not task.done()
            started = time.monotonic()
            async with worker_connection(url, "sim-crash") as ws2:  # holds nothing
                with pytest.raises(WorkerCrashed, match="without its attempt"):
                    await asyncio.wait_for(task, 5)
                assert time.monotonic() - started < 5, "not the 30 s grace period"
                assert await asyncio.wait_for(restart, 5) is True
                assert hub.workers["sim-crash"] is worker and not worker.busy
                # the late result of the lost attempt is acked (judged), not refused
                await send_result(ws2, assign, png_for(assign))
                ack = await recv_message(ws2)
                assert isinstance(ack, m.Ack) and ack.outcome == "unknown"
                client = asyncio.create_task(serve_assignments(ws2, 1))
                outcome = await worker.execute(_assignment(2))
                assert isinstance(outcome, WorkerResult) and outcome.task_id == 2
                await asyncio.wait_for(client, 5)

    asyncio.run(scenario())


def test_attempt_lost_only_when_the_grace_period_ends() -> None:
    async def scenario() -> None:
        hub = make_hub(restart_grace=0.5)
        async with running(hub) as url:
            async with worker_connection(url, "sim-gone") as ws:
                (worker,) = await hub.wait_for_workers(1, timeout=5)
                task = asyncio.create_task(worker.execute(_assignment(1)))
                await recv_message(ws)
            dropped = time.monotonic()
            with pytest.raises(WorkerCrashed, match="not back within"):
                await asyncio.wait_for(task, 5)
            waited = time.monotonic() - dropped
            assert waited >= 0.4, waited
            assert await worker.restart() is False  # the grace is spent: no second wait

    asyncio.run(scenario())


def test_restart_gives_up_after_grace_and_not_connected_is_a_crash() -> None:
    async def scenario() -> None:
        hub = make_hub(restart_grace=0.2)
        async with running(hub) as url:
            async with worker_connection(url, "sim-gone"):
                (worker,) = await hub.wait_for_workers(1, timeout=5)
            for _ in range(100):
                if not worker.connected:
                    break
                await asyncio.sleep(0.01)
            assert await worker.restart() is False
            with pytest.raises(WorkerCrashed):
                await worker.execute(_assignment(1))
            with pytest.raises(TimeoutError):
                await hub.wait_for_workers(1, timeout=0.1)

    asyncio.run(scenario())


def test_cancelling_execute_sends_cancel() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, worker_connection(url) as ws:
            (worker,) = await hub.wait_for_workers(1, timeout=5)
            task = asyncio.create_task(worker.execute(_assignment(5, attempt=2)))
            assign = await recv_message(ws)
            assert isinstance(assign, m.Assign)
            task.cancel()
            cancel = await asyncio.wait_for(recv_message(ws), 5)
            assert isinstance(cancel, m.Cancel)
            assert (cancel.task_id, cancel.attempt) == ("5", 2)
            assert not worker.busy

    asyncio.run(scenario())


def test_result_for_an_attempt_never_assigned_is_unknown_task() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, worker_connection(url) as ws:
            fake = m.Assign(task_id="99", attempt=1, prompt="never sent", deadline=1.0)
            await send_result(ws, fake, png_for(fake))
            error = await recv_message(ws)
            assert isinstance(error, m.Error) and error.code == "unknown_task"

    asyncio.run(scenario())
