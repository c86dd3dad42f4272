"""Remote simulated workers against a real Hub over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from novelgen_desktop.engine.model import (
    Assignment,
    ErrorKind,
    WorkerFailure,
    WorkerOutcome,
    WorkerResult,
)
from novelgen_desktop.engine.ratelimit import parse_reset_after
from novelgen_desktop.engine.worker import WorkerCrashed
from novelgen_desktop.output.imagecheck import inspect_image
from novelgen_desktop.protocol.convert import assign_from, assignment_from
from novelgen_desktop.protocol.messages import ByeReason
from novelgen_desktop.server import Hub, RemoteWorker
from novelgen_desktop.sim.remote import RemoteSimWorker, run_sim_workers
from novelgen_desktop.sim.worker import SimBehaviour

TOKEN = "q3X9vJ2mK8wR5tY7uI0oP4aS6dF1gH3jL5zX7cV9bN2"
Fleet = tuple[list[RemoteSimWorker], asyncio.Task[list[RemoteSimWorker]], asyncio.Event]
FAST = SimBehaviour(latency_median=0.005, latency_sigma=0.0, image_size=64, restart_delay=0.1)


def _hub(**overrides: Any) -> Hub:
    options: dict[str, Any] = {
        "auth_timeout": 2.0,
        "heartbeat_interval": 1.0,
        "idle_timeout": 30.0,
        **overrides,
    }
    return Hub(TOKEN, **options)


def _assignment(task_id: int) -> Assignment:
    return Assignment(
        task_id=task_id,
        attempt=1,
        prompt=f"Panel {task_id}: the keeper climbs the spiral stair",
        deadline=time.time() + 600,
        metadata={"chapter": 1, "page": task_id, "panel": 2},
    )


@contextlib.asynccontextmanager
async def _fleet(
    url: str, count: int, behaviour: SimBehaviour, **kwargs: Any
) -> AsyncIterator[Fleet]:
    stop = asyncio.Event()
    workers = [RemoteSimWorker(backoff_initial=0.02, backoff_max=0.2) for _ in range(count)]
    task = asyncio.create_task(
        run_sim_workers(url, TOKEN, count, behaviour, stop=stop, workers=workers, **kwargs)
    )
    try:
        yield workers, task, stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _execute_all(workers: list[RemoteWorker], total: int) -> list[WorkerOutcome]:
    """Spread tasks 1..total over the hub's workers, one attempt in flight each."""
    queue = list(range(1, total + 1))
    outcomes: list[WorkerOutcome] = []

    async def drive(worker: RemoteWorker) -> None:
        while queue:
            outcomes.append(await worker.execute(_assignment(queue.pop(0))))

    await asyncio.wait_for(asyncio.gather(*(drive(w) for w in workers)), 30)
    return outcomes


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_three_workers_deliver_thirty_valid_pngs() -> None:
    async def scenario() -> None:
        hub = _hub()
        port = await hub.start("127.0.0.1", 0)
        try:
            async with _fleet(f"ws://127.0.0.1:{port}/", 3, FAST, accounts=2) as (sims, _, _):
                workers = await hub.wait_for_workers(3, timeout=10)
                by_id = {w.worker_id: w for w in workers}
                assert sorted(by_id) == ["sim-1", "sim-2", "sim-3"]
                assert [by_id[f"sim-{i}"].account_id for i in (1, 2, 3)] == [
                    "sim-account-1",
                    "sim-account-2",
                    "sim-account-1",
                ]
                assert {w.kind for w in workers} == {"simulated"}
                outcomes = await _execute_all(workers, 30)
                assert sorted(o.task_id for o in outcomes) == list(range(1, 31))
                for outcome in outcomes:
                    assert isinstance(outcome, WorkerResult), outcome
                    info = inspect_image(outcome.image)
                    assert info.mime == "image/png"
                    assert (info.width, info.height) == (64, 64)
                    assert outcome.conversation_url is not None
                await asyncio.sleep(0.05)  # let the last acks arrive
                assert all(not s.unacked for s in sims)
                assert sum(s.sim.executed for s in sims if s.sim is not None) == 30
        finally:
            await hub.stop()

    _run(scenario)


def test_failure_and_refusal_rates_yield_worker_failures_of_the_right_kinds() -> None:
    behaviour = SimBehaviour(
        latency_median=0.0, image_size=64, failure_rate=0.5, refusal_rate=0.5, seed=3
    )

    async def scenario() -> None:
        hub = _hub()
        port = await hub.start("127.0.0.1", 0)
        try:
            async with _fleet(f"ws://127.0.0.1:{port}/", 2, behaviour):
                workers = await hub.wait_for_workers(2, timeout=10)
                outcomes = await _execute_all(workers, 24)
        finally:
            await hub.stop()
        assert all(isinstance(o, WorkerFailure) for o in outcomes)
        failures = [o for o in outcomes if isinstance(o, WorkerFailure)]
        transient = {ErrorKind.PAGE_ERROR, ErrorKind.NETWORK, ErrorKind.TIMEOUT}
        kinds = {f.kind for f in failures}
        assert kinds <= transient | {ErrorKind.REFUSED}
        assert ErrorKind.REFUSED in kinds and kinds & transient
        assert all(f.message.strip() for f in failures if f.kind is ErrorKind.REFUSED)

    _run(scenario)


def test_rate_limit_is_reported_with_a_parseable_reset() -> None:
    behaviour = SimBehaviour(
        latency_median=0.0, image_size=64, rate_limit_rate=1.0, rate_limit_reset=720.0
    )

    async def scenario() -> None:
        hub = _hub()
        port = await hub.start("127.0.0.1", 0)
        try:
            async with _fleet(f"ws://127.0.0.1:{port}/", 1, behaviour):
                workers = await hub.wait_for_workers(1, timeout=10)
                outcomes = await _execute_all(workers, 3)
        finally:
            await hub.stop()
        for outcome in outcomes:
            assert isinstance(outcome, WorkerFailure)
            assert outcome.kind is ErrorKind.RATE_LIMITED
            reset = outcome.retry_after or parse_reset_after(outcome.message)
            assert reset == 720.0

    _run(scenario)


def test_hub_stop_sends_bye_and_run_returns() -> None:
    async def scenario() -> None:
        hub = _hub()
        port = await hub.start("127.0.0.1", 0)
        stop = asyncio.Event()
        sim = RemoteSimWorker(backoff_initial=0.02, backoff_max=0.2)
        run = asyncio.create_task(
            sim.run(
                f"ws://127.0.0.1:{port}/",
                TOKEN,
                worker_id="sim-bye",
                account_id="acct-1",
                behaviour=FAST,
                stop=stop,
            )
        )
        await hub.wait_for_workers(1, timeout=10)
        await hub.stop()
        await asyncio.wait_for(run, 10)  # returned although stop was never set
        assert sim.bye_reason is ByeReason.SHUTDOWN
        assert not stop.is_set()
        assert sim.connections == 1

    _run(scenario)


def test_stop_event_ends_the_workers_and_disconnects_them() -> None:
    async def scenario() -> None:
        hub = _hub()
        port = await hub.start("127.0.0.1", 0)
        try:
            async with _fleet(f"ws://127.0.0.1:{port}/", 3, FAST) as (sims, task, stop):
                await hub.wait_for_workers(3, timeout=10)
                stop.set()
                assert await asyncio.wait_for(task, 10) == sims
            for _ in range(200):
                if not hub.connected_workers():
                    break
                await asyncio.sleep(0.01)
            assert hub.connected_workers() == []
        finally:
            await hub.stop()

    _run(scenario)


def test_workers_reconnect_to_a_hub_restarted_on_the_same_port() -> None:
    async def scenario() -> None:
        first = _hub()
        port = await first.start("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/"
        second = _hub()
        try:
            async with _fleet(url, 3, FAST) as (sims, _, _):
                await first.wait_for_workers(3, timeout=10)
                instances = [s.instance_id for s in sims]
                await first.stop(ByeReason.RESTART)
                await asyncio.sleep(0.3)  # the workers retry against a closed port meanwhile
                assert await second.start("127.0.0.1", port) == port
                workers = await second.wait_for_workers(3, timeout=10)
                outcomes = await _execute_all(workers, 6)
                assert all(isinstance(o, WorkerResult) for o in outcomes)
                assert [s.instance_id for s in sims] == instances  # reconnected, not restarted
                assert all(s.connections == 2 for s in sims)
                assert all(s.bye_reason is ByeReason.RESTART for s in sims)
        finally:
            await second.stop()
            await first.stop()

    _run(scenario)


def test_crash_is_seen_by_the_hub_and_the_worker_returns_as_a_new_instance() -> None:
    behaviour = SimBehaviour(
        latency_median=0.01, latency_sigma=0.0, image_size=64, crash_rate=1.0, restart_delay=0.1
    )

    async def scenario() -> None:
        hub = _hub()
        port = await hub.start("127.0.0.1", 0)
        try:
            async with _fleet(f"ws://127.0.0.1:{port}/", 1, behaviour) as (sims, _, _):
                (worker,) = await hub.wait_for_workers(1, timeout=10)
                session = worker.session
                assert session is not None and session.hello is not None
                first_instance = session.hello.instance_id
                assert first_instance == sims[0].instance_ids[0]
                try:
                    await asyncio.wait_for(worker.execute(_assignment(1)), 10)
                except WorkerCrashed:
                    pass
                else:
                    raise AssertionError("the hub side should have seen the crash")
                assert await worker.restart()
                session = worker.session
                assert session is not None and session.hello is not None
                assert session.hello.instance_id != first_instance
                assert session.hello.instance_id == sims[0].instance_id
                assert sims[0].crashes == 1
                assert len(set(sims[0].instance_ids)) == 2
                assert worker.restarts == 1
                assert session.hello.holding == ()  # a crashed instance forgot everything
        finally:
            await hub.stop()

    _run(scenario)


def test_an_outcome_outlives_a_dropped_connection_and_is_resent() -> None:
    slow = SimBehaviour(latency_median=0.3, latency_sigma=0.0, image_size=64)
    late: list[WorkerOutcome] = []

    def on_late(_worker: RemoteWorker, outcome: WorkerOutcome) -> str:
        late.append(outcome)
        return "accepted"

    async def scenario() -> None:
        hub = _hub(on_late_outcome=on_late)
        port = await hub.start("127.0.0.1", 0)
        try:
            async with _fleet(f"ws://127.0.0.1:{port}/", 1, slow) as (sims, _, _):
                (worker,) = await hub.wait_for_workers(1, timeout=10)
                execute = asyncio.create_task(worker.execute(_assignment(7)))
                await asyncio.sleep(0.05)
                session = worker.session
                assert session is not None and session.ws.transport is not None
                session.ws.transport.abort()  # the network drops mid-attempt
                # The worker reconnects holding the attempt, within the grace period: the
                # attempt is not lost, its result is the answer to the original assign.
                outcome = await asyncio.wait_for(execute, 10)
                assert late == []
                assert isinstance(outcome, WorkerResult) and outcome.task_id == 7
                inspect_image(outcome.image)
                assert sims[0].connections == 2 and sims[0].crashes == 0
                assert len(sims[0].instance_ids) == 1
                await asyncio.sleep(0.05)
                assert not sims[0].unacked
        finally:
            await hub.stop()

    _run(scenario)


def test_assignment_from_inverts_assign_from() -> None:
    original = _assignment(4812)
    assert assignment_from(assign_from(original)) == original


def test_idle_worker_heartbeats_and_is_not_dropped() -> None:
    async def scenario() -> None:
        hub = _hub(heartbeat_interval=1.0, idle_timeout=2.0)
        port = await hub.start("127.0.0.1", 0)
        try:
            async with _fleet(f"ws://127.0.0.1:{port}/", 1, FAST) as (sims, _, _):
                (worker,) = await hub.wait_for_workers(1, timeout=10)
                session = worker.session
                await asyncio.sleep(3.0)  # > idle_timeout: only heartbeats keep it alive
                assert worker.session is session and worker.connected
                assert sims[0].connections == 1
        finally:
            await hub.stop()

    _run(scenario)
