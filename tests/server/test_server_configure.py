"""``configure`` (hub → worker) and what a worker's ``bye`` does to its attempt in flight.

docs/protocol.md: ``configure`` comes right after ``welcome`` when the hub has settings for
the browsers, and again to every connected worker when they change; a ``bye`` other than
``restart`` gives the attempt back at once, while ``bye restart`` or a dropped connection
waits the restart grace period for the worker to come back with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest
from server_testkit import (
    FAST_RUN_SETTINGS,
    JobClient,
    hello_text,
    make_hub,
    png_for,
    recv_message,
    running,
    send_result,
    serve_assignments,
    start_service_hub,
    worker_connection,
)
from websockets.asyncio.client import ClientConnection, connect

from novelgen_desktop.protocol import messages as m

TABLE = '{"version":9,"keys":{"sendButton":["#composer-submit-button"]}}'
CONFIG = m.Configure(tabs=3, chat_mode=m.ChatMode.PER_SEQUENCE, selector_table=TABLE)
LONG_GRACE = 30.0
"""Far longer than any wait below: an attempt given back "at once" must not wait for it."""
QUIET = 2.5
"""How long a worker watches for an assignment that must not come (yet); the idle worker
loop polls about once a second, so a wrongly requeued attempt would show up well within it."""
SHORT_DRAIN = replace(FAST_RUN_SETTINGS, stop_grace=0.5)
"""See test_job_finishes_promptly_after_a_tab_closed_mid_task: a worker that said bye keeps
its engine loop waiting for it until the run's ``stop_grace`` cuts it off."""


async def next_frame(ws: ClientConnection, timeout: float = 5.0) -> m.Message:
    """The very next frame from the hub, heartbeats included ("before anything else")."""
    return await asyncio.wait_for(recv_message(ws, skip_heartbeats=False), timeout)


async def nothing_for(ws: ClientConnection, seconds: float) -> None:
    """Assert that no frame other than a heartbeat arrives within ``seconds``."""
    with contextlib.suppress(TimeoutError):
        message = await asyncio.wait_for(recv_message(ws), seconds)
        raise AssertionError(f"expected nothing, got {message}")


def attempts(data_dir: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(data_dir / "novelgen.sqlite")) as conn:
        return conn.execute(
            "SELECT task_id, attempt, worker_id, outcome, error_kind, error_message "
            "FROM attempts ORDER BY task_id, attempt"
        ).fetchall()


# -- configure ----------------------------------------------------------------------------


def test_configure_comes_right_after_welcome_before_the_first_assign(tmp_path: Path) -> None:
    async def scenario() -> None:
        _service, hub, url = await start_service_hub(tmp_path / "data", browser_config=CONFIG)
        try:
            async with JobClient.connect(url) as client:
                submitted = await client.submit("configured", ["a lighthouse at dusk"])
                await client.subscribe(submitted.job_id)
                # The job is waiting for a worker: the assign is ready the moment one attaches.
                async with worker_connection(url, "tab-1") as ws:  # welcome read there
                    assert await next_frame(ws) == CONFIG
                    assign = await next_frame(ws)
                    assert isinstance(assign, m.Assign), assign
                    await send_result(ws, assign, png_for(assign))
                    await client.progress_until(submitted.job_id, {"finished"})
                assert not any(isinstance(x, m.Configure) for x in client.messages)
        finally:
            await asyncio.wait_for(hub.stop(), 20)

    asyncio.run(scenario())


def test_no_configure_without_browser_settings(tmp_path: Path) -> None:
    async def scenario() -> None:
        _service, hub, url = await start_service_hub(tmp_path / "data")
        assert hub.browser_config is None
        try:
            async with JobClient.connect(url) as client:
                submitted = await client.submit("plain", ["a lighthouse at dusk"])
                async with worker_connection(url, "tab-1") as ws:
                    assign = await next_frame(ws)
                    assert isinstance(assign, m.Assign), assign
                    await send_result(ws, assign, png_for(assign))
                    await client.subscribe(submitted.job_id)
                    await client.progress_until(submitted.job_id, {"finished"})
        finally:
            await asyncio.wait_for(hub.stop(), 20)

    asyncio.run(scenario())


def test_configure_browsers_reaches_connected_workers_and_is_kept_for_later_ones() -> None:
    async def scenario() -> None:
        hub = make_hub()
        async with (
            running(hub) as url,
            worker_connection(url, "tab-1") as one,
            worker_connection(url, "tab-2") as two,
            connect(url, compression=None) as client,
        ):
            await client.send(hello_text(None))
            assert isinstance(await recv_message(client), m.Welcome)
            await hub.wait_for_workers(2, timeout=5)
            await nothing_for(one, 0.2)  # no settings yet: nothing was sent

            await hub.configure_browsers(CONFIG)
            assert hub.browser_config == CONFIG
            assert await next_frame(one) == CONFIG
            assert await next_frame(two) == CONFIG

            async with worker_connection(url, "tab-3") as three:
                assert await next_frame(three) == CONFIG  # kept for a later worker

            # A worker that left (tab-3) is no obstacle; the newest settings replace the old.
            newer = m.Configure(tabs=5)
            await hub.configure_browsers(newer)
            assert await next_frame(one) == newer
            assert await next_frame(two) == newer
            async with worker_connection(url, "tab-4") as four:
                assert await next_frame(four) == newer
                await nothing_for(four, 0.3)  # once, not the old one as well

            # A client connection drives no browser: it never gets a configure.
            await nothing_for(client, 0.3)

    asyncio.run(scenario())


def test_new_settings_reach_a_worker_whose_older_connection_is_still_closing() -> None:
    """A tab reconnects while its old connection hangs (it never answers the hub's close):
    the hub is still closing the old one, the new one is past ``welcome`` but not attached
    yet. Settings changed in that moment must still reach it, and the stuck connection must
    not hold them up for the others."""

    async def scenario() -> None:
        hub = make_hub()
        async with running(hub) as url, worker_connection(url, "tab-1") as old:
            await hub.wait_for_workers(1, timeout=5)
            old.transport.pause_reading()  # stuck: the hub's close gets no answer
            try:
                async with connect(url, compression=None) as ws:
                    await ws.send(hello_text("tab-1"))
                    assert isinstance(await recv_message(ws), m.Welcome)
                    await asyncio.sleep(0.2)  # the hub now waits for the old one to close
                    # old one detached, new one not attached yet: the window under test
                    assert not hub.workers["tab-1"].connected
                    configuring = asyncio.create_task(hub.configure_browsers(CONFIG))
                    assert await next_frame(ws, timeout=3.0) == CONFIG
            finally:
                old.transport.resume_reading()
            await asyncio.wait_for(configuring, 15)

    asyncio.run(scenario())


# -- bye: at once, or after the grace period ---------------------------------------------------


@pytest.mark.parametrize("reason", ["tab_closed", "user", "error", "shutdown"])
def test_bye_other_than_restart_gives_the_attempt_back_at_once(tmp_path: Path, reason: str) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        _service, hub, url = await start_service_hub(
            data_dir, run=SHORT_DRAIN, restart_grace=LONG_GRACE
        )
        try:
            async with JobClient.connect(url) as client:
                submitted = await client.submit("tab closed", ["a lighthouse at dusk"])
                await client.subscribe(submitted.job_id)
                async with worker_connection(url, "tab-a") as a:
                    first = await next_frame(a)
                    assert isinstance(first, m.Assign) and first.attempt == 1
                    async with worker_connection(url, "tab-b") as b:
                        await hub.wait_for_workers(2, timeout=5)
                        left = time.monotonic()
                        await a.send(m.encode(m.Bye(reason=m.ByeReason(reason))))
                        again = await asyncio.wait_for(recv_message(b), LONG_GRACE / 3)
                        waited = time.monotonic() - left
                        assert isinstance(again, m.Assign), again
                        assert (again.task_id, again.attempt) == (first.task_id, 2)
                        assert waited < 5.0, f"reassigned after {waited:.1f} s"
                        await send_result(b, again, png_for(again))
                        await client.progress_until(submitted.job_id, {"finished"})
        finally:
            await asyncio.wait_for(hub.stop(), 20)

    asyncio.run(scenario())
    rows = attempts(data_dir)
    assert [(r[1], r[2], r[4]) for r in rows] == [(1, "tab-a", "worker_lost"), (2, "tab-b", None)]
    assert f"bye ({reason})" in str(rows[0][5])
    assert rows[1][3] == "done"


def test_job_finishes_promptly_after_a_tab_closed_mid_task(tmp_path: Path) -> None:
    async def scenario() -> None:
        run = replace(FAST_RUN_SETTINGS, stop_grace=6.0)
        _service, hub, url = await start_service_hub(
            tmp_path / "data", run=run, restart_grace=LONG_GRACE
        )
        try:
            async with JobClient.connect(url) as client, contextlib.AsyncExitStack() as stack:
                submitted = await client.submit("tab closed", ["a lighthouse at dusk"])
                await client.subscribe(submitted.job_id)
                a = await stack.enter_async_context(worker_connection(url, "tab-a"))
                first = await next_frame(a)
                assert isinstance(first, m.Assign)
                b = await stack.enter_async_context(worker_connection(url, "tab-b"))
                await hub.wait_for_workers(2, timeout=5)
                await a.send(m.encode(m.Bye(reason=m.ByeReason.TAB_CLOSED)))
                acks = await asyncio.wait_for(serve_assignments(b, 1), 10)
                assert acks[0].outcome == "accepted"
                # the last image is in: the job is finished, whatever the closed tab does
                await client.progress_until(submitted.job_id, {"finished"}, timeout=3.0)
        finally:
            await asyncio.wait_for(hub.stop(), 30)

    asyncio.run(scenario())


def test_dropped_connection_keeps_the_attempt_for_the_grace_period(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        _service, hub, url = await start_service_hub(data_dir, restart_grace=LONG_GRACE)
        try:
            async with JobClient.connect(url) as client, contextlib.AsyncExitStack() as stack:
                submitted = await client.submit("dropped", ["a lighthouse at dusk"])
                await client.subscribe(submitted.job_id)
                a = await stack.enter_async_context(worker_connection(url, "tab-a"))
                first = await next_frame(a)
                assert isinstance(first, m.Assign) and first.attempt == 1
                b = await stack.enter_async_context(worker_connection(url, "tab-b"))
                await hub.wait_for_workers(2, timeout=5)
                await a.close()  # the connection drops: no bye
                await nothing_for(b, QUIET)
                assert hub.workers["tab-a"].busy, "the attempt waits for its worker"
                # Back without it: only now is it given back (to either tab).
                back = await stack.enter_async_context(worker_connection(url, "tab-a"))
                served = [asyncio.create_task(serve_assignments(ws, 1)) for ws in (back, b)]
                await client.progress_until(submitted.job_id, {"finished"})
                for task in served:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            await asyncio.wait_for(hub.stop(), 20)

    asyncio.run(scenario())
    rows = attempts(data_dir)
    assert [(r[1], r[2], r[4]) for r in rows][:1] == [(1, "tab-a", "worker_lost")], rows
    assert [(r[1], r[3]) for r in rows][1:] == [(2, "done")], rows
    assert "without its attempt" in str(rows[0][5])


def test_bye_restart_keeps_the_attempt_and_its_result_counts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        _service, hub, url = await start_service_hub(data_dir, restart_grace=LONG_GRACE)
        try:
            async with JobClient.connect(url) as client, contextlib.AsyncExitStack() as stack:
                submitted = await client.submit("restart", ["a lighthouse at dusk"])
                await client.subscribe(submitted.job_id)
                a = await stack.enter_async_context(worker_connection(url, "tab-a"))
                first = await next_frame(a)
                assert isinstance(first, m.Assign) and first.attempt == 1
                b = await stack.enter_async_context(worker_connection(url, "tab-b"))
                await hub.wait_for_workers(2, timeout=5)
                await a.send(m.encode(m.Bye(reason=m.ByeReason.RESTART)))
                await nothing_for(b, QUIET)
                assert not hub.workers["tab-a"].connected
                assert hub.workers["tab-a"].busy, "bye restart: the attempt waits for its worker"
                holding = ((first.task_id, first.attempt),)
                back = await stack.enter_async_context(worker_connection(url, "tab-a", holding))
                await send_result(back, first, png_for(first))
                ack = await asyncio.wait_for(recv_message(back), 10)
                assert isinstance(ack, m.Ack) and ack.outcome == "accepted", ack
                await client.progress_until(submitted.job_id, {"finished"})
        finally:
            await asyncio.wait_for(hub.stop(), 20)

    asyncio.run(scenario())
    rows = attempts(data_dir)
    assert [(r[1], r[2], r[3]) for r in rows] == [(1, "tab-a", "done")], rows
