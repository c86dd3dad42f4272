"""Volume fuzz: ≥10,000 random and mutated frames, over several connections authenticated as
workers and as clients, at a hub with a real job service — while a well-behaved client's job
is carried by a well-behaved simulated worker, and must finish.

The frames come from one seeded ``random.Random``: random text, random bytes, every example
message (``examples.example_messages``) unchanged and mutated (fields set to values of the
wrong type, huge numbers, unicode, lone surrogates, dropped, added, the type or version
changed, duplicate keys, truncated, deeply nested), and binary image frames with wrong
headers. Client frames reach the job service (mutated ``submit``s that stay valid create jobs).

The fuzzing connections are kept from hurting the good job only where the protocol *lets*
them (a valid ``control`` naming the good job would pause it, a valid ``task_error`` naming an
attempt a fuzzing worker holds would fail it): those frames stay valid but are pointed
elsewhere. Everything else goes through untouched.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from server_testkit import (
    FAST_RUN_SETTINGS,
    TOKEN,
    JobClient,
    make_hub,
    recv_message,
    running,
    start_service_hub,
    worker_connection,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.codes import CloseCode, ProtocolError
from novelgen_desktop.protocol.examples import example_messages
from novelgen_desktop.protocol.framing import image_frame
from novelgen_desktop.sim.remote import run_sim_workers
from novelgen_desktop.sim.render import render_panel_png
from novelgen_desktop.sim.worker import SimBehaviour
from tests.integration.helpers import assert_job_complete_and_consistent

SEED = 20261203
FRAMES_PER_CONNECTION = 1300
WORKER_CONNECTIONS = 4
CLIENT_CONNECTIONS = 4
UNAUTHENTICATED = 60
"""Connections whose first frame is a fuzzed one (closed 4001 by the hub)."""
GOOD_TASKS = 120
FUZZ_RUN = replace(FAST_RUN_SETTINGS, policy=replace(FAST_RUN_SETTINGS.policy, max_failures=1000))
"""A fuzzing worker may be handed an attempt of the good job (a new connection is healthy
until its ``status`` says otherwise; it answers it properly) and then drop the connection
with a valid ``bye`` and come back without it: the hub rightly counts ``worker_lost`` and
retries. With the default five failures such a task could end ``dead``; here it is retried
until the good worker does it."""
GOOD_WORKER = SimBehaviour(latency_median=0.03, latency_sigma=0.0, reuse_images=8, image_size=64)

SEEDS: list[dict[str, Any]] = [m.to_wire(x) for x in example_messages()]
FIELD_NAMES = sorted({key for wire in SEEDS for key in wire})
TYPES = sorted({wire["type"] for wire in SEEDS})
PNG = render_panel_png("fuzz", width=32, height=32, seed="fuzz")

HUGE_INT_FRAME = '{"v": 1, "type": "heartbeat", "ts": 1' + "0" * 400 + "}"
"""An integer beyond the float range in a number field (once an OverflowError in decode)."""


HUGE = [10**400, -(10**400)]


# -- the generator ---------------------------------------------------------------------------


def rand_text(rng: random.Random, n: int) -> str:
    """Printable ASCII, controls, accents, CJK, emoji, RTL marks — never a lone surrogate
    (a text frame must be valid UTF-8; lone surrogates travel as JSON escapes instead)."""
    pools = [
        (0x20, 0x7E),
        (0x00, 0x1F),
        (0xA0, 0x2FF),
        (0x4E00, 0x4FFF),
        (0x1F600, 0x1F64F),
        (0x200B, 0x202E),
        (0xFFF0, 0xFFFF),
    ]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def rand_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(16 if depth < 2 else 13)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2, 1000, 1001, 2**31, 2**53 + 1, 10**30, -(10**30), *HUGE])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e308, 1e-320, 1795000000.25, 604800.5])
    if kind == 4:
        return rand_text(rng, rng.randint(0, 30))
    if kind == 5:
        return rng.choice(["1", "4812", "007", "-1", "1e3", " 1", "0", "9" * 17])
    if kind == 6:
        return rng.choice(["binary", "base64", "worker", "client", "hub", "pause", "cancel"])
    if kind == 7:
        return rng.choice(["running", "finished", "rate_limited", "refused", "ok", "crashed"])
    if kind == 8:
        return "a" * rng.choice([64, 65, 128, 129, 4096, 4097, 32001])
    if kind == 9:
        return "\ud800" + rand_text(rng, 3)  # a lone surrogate (sent as a JSON escape)
    if kind == 10:
        return rng.choice(["https://chatgpt.com/c/x", "javascript:alert(1)", "http://a b"])
    if kind == 11:
        return rng.choice(["{page}", "{nope}", "../{seq}", "{seq}-{slug}", "{page"])
    if kind == 12:
        return rng.choice(["req-1", "Lighthouse", "lighthouse-keeper-20261123-7f3a", "x" * 129])
    if kind == 13:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 14:
        return {rand_text(rng, 3): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return [{"task_id": "1", "attempt": 1}] * rng.choice([1, 65])


def mutate(rng: random.Random, wire: dict[str, Any]) -> dict[str, Any]:
    wire = dict(wire)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(6)
        keys = sorted(wire) or ["v"]
        if action == 0:  # a field gets a value of any type
            wire[rng.choice(keys)] = rand_value(rng)
        elif action == 1:  # a field disappears
            wire.pop(rng.choice(keys), None)
        elif action == 2:  # a field of another message, or an unknown one
            name = rng.choice(FIELD_NAMES) if rng.random() < 0.7 else rand_text(rng, 5)
            wire[name] = rand_value(rng)
        elif action == 3:  # another type with these fields
            wire["type"] = rng.choice(TYPES)
        elif action == 4:  # a list or string field changes length
            key = rng.choice(keys)
            value = wire.get(key)
            if isinstance(value, list):
                wire[key] = value * rng.choice([0, 2, 30])
            elif isinstance(value, str):
                wire[key] = value[: rng.randint(0, len(value))] + rand_text(rng, 2)
        else:  # the envelope
            wire["v"] = rng.choice([0, 2, "1", 1.0, None, 1, 1])
    return wire


def to_text(rng: random.Random, wire: dict[str, Any]) -> str:
    text = json.dumps(wire, ensure_ascii=rng.random() < 0.5)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: only as a JSON escape
        text = json.dumps(wire)
    roll = rng.random()
    if roll < 0.06:  # truncated
        text = text[: rng.randint(0, len(text))]
    elif roll < 0.12:  # unicode injected anywhere
        cut = rng.randint(0, len(text))
        text = text[:cut] + rand_text(rng, rng.randint(1, 6)) + text[cut:]
    elif roll < 0.15:  # a duplicate key
        text = text[:-1] + ', "type": "heartbeat"}' if text.endswith("}") else text
    elif roll < 0.17:  # NaN / Infinity
        text = text.replace(": 1", ": NaN", 1).replace(": 0", ": -Infinity", 1)
    return text


def binary_frame(rng: random.Random) -> bytes:
    roll = rng.randrange(6)
    if roll == 0:
        return image_frame(str(rng.randint(0, 10**6)), rng.randint(1, 1000), PNG)
    if roll == 1:
        return b"NGI1" + rng.randbytes(rng.randint(0, 40))
    if roll == 2:
        return b"NGI2" + image_frame("1", 1, PNG)[4:]
    if roll == 3:
        return image_frame("1", 1, PNG)[: rng.randint(0, 12)]
    if roll == 4:  # header says 200 bytes of task id
        return b"NGI1\x00\x00\x00\x01\xc8" + b"1" * 20 + PNG
    return rng.randbytes(rng.randint(0, 300))


def frames(rng: random.Random) -> list[str | bytes]:
    """One fuzz frame, or a few that belong together (an announced image + a wrong frame)."""
    roll = rng.random()
    if roll < 0.08:
        return [rand_text(rng, rng.randint(0, 200))]
    if roll < 0.14:
        return [binary_frame(rng)]
    if roll < 0.20:
        return [json.dumps(rng.choice(SEEDS))]  # valid as it stands (for some role)
    if roll < 0.23:  # an announcement, then something else than its image
        result = dict(next(w for w in SEEDS if w["type"] == "result" and "data" not in w))
        result["task_id"] = str(rng.randint(10**6, 10**7))
        instead: list[str | bytes] = [binary_frame(rng), "{}", json.dumps(result)]
        return [json.dumps(result), rng.choice(instead)]
    if roll < 0.24:  # absurd nesting, absurd numbers
        return [
            rng.choice(
                [
                    "[" * 5000 + "]" * 5000,
                    '{"v": 1, "type": "heartbeat", "ts": ' + "9" * 5000 + "}",
                    '{"v": 1e400, "type": "heartbeat", "ts": 1}',
                    '{"v": 1, "type": "list_jobs", "request_id": "r", "limit": 1e999}',
                    '{"v": 1, "type": "heartbeat", "ts": 1, "x": "' + "y" * 300_000 + '"}',
                ]
            )
        ]
    return [to_text(rng, mutate(rng, rng.choice(SEEDS)))]


# -- keeping valid frames from aiming at the good job ---------------------------------------


@dataclass
class Aim:
    good_job: str
    fuzz_jobs: list[str] = field(default_factory=list)
    script: Path | None = None
    out_dir: Path | None = None
    redirected: Counter[str] = field(default_factory=Counter)

    def text(self, text: str, role: m.Role) -> tuple[str, bool]:
        """``text`` itself, unless it is a valid frame that could touch the good job; and
        whether it is a valid ``bye`` (the last frame a peer sends on a connection)."""
        try:
            message = m.decode(text, sender=role)
        except ProtocolError:
            return text, False
        wire = json.loads(text)
        if isinstance(message, m.Control) and self.good_job.lower().startswith(
            message.job_id.lower()  # the hub also finds a job by a prefix of its id
        ):
            wire["job_id"] = random.Random(text).choice([*self.fuzz_jobs, "no-such-job"])
        elif isinstance(message, m.TaskError | m.Result | m.Progress):
            wire["task_id"] = str(10**6 + int(message.task_id) % 10**6)
        elif isinstance(message, m.Status) and message.tab_health in ("ok", "loading"):
            wire["tab_health"] = "unresponsive"  # a fuzzing worker asks for no work
        elif isinstance(message, m.Submit):
            if message.path is not None and self.script is not None:
                wire["path"] = str(self.script)
            if message.out_dir is not None and self.out_dir is not None:
                wire["out_dir"] = str(self.out_dir)
        else:
            return text, isinstance(message, m.Bye)
        self.redirected[message.type] += 1
        return json.dumps(wire), False


# -- the connections -------------------------------------------------------------------------


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Tally:
    sent: int = 0
    sent_by_role: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    closes: Counter[int] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    submitted: list[str] = field(default_factory=list)
    invalid_from_hub: list[str] = field(default_factory=list)
    assigns_answered: int = 0


def fuzz_hello(role: m.Role, index: int) -> str:
    if role is m.Role.CLIENT:
        return m.encode(m.Hello(token=TOKEN, role=role, versions=(1,), agent="fuzz"))
    return m.encode(
        m.Hello(
            token=TOKEN,
            role=role,
            versions=(1,),
            worker_id=f"fuzz-{index}",
            account_id=f"fuzz-account-{index}",  # its rate limits are not the good worker's
            kind="simulated",
            capabilities=("binary_frames",),
        )
    )


def base64_result(assign: m.Assign) -> str:
    return m.encode(
        m.Result(
            task_id=assign.task_id,
            attempt=assign.attempt,
            sha256=hashlib.sha256(PNG).hexdigest(),
            size=len(PNG),
            mime=m.ImageMime.PNG,
            encoding=m.ImageEncoding.BASE64,
            data=base64.b64encode(PNG).decode("ascii"),
        )
    )


async def read_all(ws: ClientConnection, tally: Tally, aim: Aim, seen: asyncio.Event) -> None:
    """Drain everything the hub sends; every frame must decode; assignments are answered."""
    answers: set[asyncio.Task[None]] = set()
    with contextlib.suppress(ConnectionClosed):
        async for frame in ws:
            if not isinstance(frame, str):
                tally.invalid_from_hub.append(f"binary frame {frame[:20]!r}")
                continue
            try:
                message = m.decode(frame, sender=m.Role.HUB)
            except ProtocolError as err:
                tally.invalid_from_hub.append(f"{err}: {frame[:200]}")
                continue
            tally.received[message.type] += 1
            if isinstance(message, m.Error):
                tally.error_codes[message.code] += 1
                if message.code == "unknown_type" and message.re == "still-there":
                    seen.set()
            elif isinstance(message, m.Jobs) and message.re == "still-there":
                seen.set()
            elif isinstance(message, m.Submitted):
                tally.submitted.append(message.job_id)
                aim.fuzz_jobs.append(message.job_id)
            elif isinstance(message, m.Assign):  # a stray assignment is done properly
                tally.assigns_answered += 1
                answer = asyncio.create_task(ws.send(base64_result(message)))
                answers.add(answer)  # (sent aside: this reader never stops reading)
                answer.add_done_callback(answers.discard)


async def fuzz_connection(
    url: str, role: m.Role, index: int, *, rng: random.Random, aim: Aim, tally: Tally
) -> None:
    """Send ``FRAMES_PER_CONNECTION`` fuzz frames; reconnect when a valid ``bye`` (or an
    invalid UTF-8 text frame) ended the connection; then check the connection serves."""
    to_send: list[str | bytes] = []
    while len(to_send) < FRAMES_PER_CONNECTION:
        to_send.extend(frames(rng))
    position = 0
    while True:
        async with connect(url, compression=None, max_size=2**26, close_timeout=2) as ws:
            tally.connections += 1
            await ws.send(fuzz_hello(role, index))
            assert isinstance(await asyncio.wait_for(recv_message(ws), 5), m.Welcome)
            if role is m.Role.WORKER:
                status = m.Status(ts=time.time(), tab_health=m.TabHealth.UNRESPONSIVE, busy=False)
                await ws.send(m.encode(status))
            seen = asyncio.Event()
            reader = asyncio.create_task(read_all(ws, tally, aim, seen))
            try:
                while position < len(to_send):
                    frame, last = to_send[position], False
                    if isinstance(frame, str):
                        frame, last = aim.text(frame, role)
                    if rng.random() < 0.002:  # a text frame that is not UTF-8
                        frame, last = b'{"v": 1, "type": "\xff\xfe"}', True
                        await ws.send(frame, text=True)
                    else:
                        await ws.send(frame)
                    position += 1
                    tally.sent += 1
                    tally.sent_by_role[role.value] += 1
                    if last:  # the hub closes this connection: wait for it, then reconnect
                        await asyncio.wait_for(ws.wait_closed(), 10)
                    if position % 50 == 0:
                        await asyncio.sleep(0)  # let the good worker's frames through
                # Still serving: a refused frame is answered (worker), a request too (client).
                if role is m.Role.CLIENT:
                    await ws.send(m.encode(m.ListJobs(request_id="still-there", limit=1)))
                else:
                    await ws.send('{"v": 1, "type": "ping", "request_id": "still-there"}')
                await asyncio.wait_for(seen.wait(), 10)
                return
            except ConnectionClosed:
                pass
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        code = ws.close_code
        assert code is not None
        tally.closes[code] += 1
        # Only a valid bye (1000) or a text frame that is not UTF-8 (1007) may end it.
        assert code in (CloseCode.NORMAL, 1007), (code, ws.close_reason)


def is_valid_hello(text: str) -> bool:
    try:
        return isinstance(m.decode(text), m.Hello)
    except ProtocolError:
        return False


async def unauthenticated(url: str, rng: random.Random, tally: Tally) -> None:
    """A fuzz frame as the very first frame: closed 4001 (or 1009 when too big), no data."""
    batch = frames(rng)
    while any(isinstance(f, str) and is_valid_hello(f) for f in batch):
        batch = frames(rng)  # (the examples carry the test token: that one would get in)
    async with connect(url, compression=None, max_size=2**26) as ws:
        for frame in batch:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)
                tally.sent += 1
                tally.sent_by_role["unauthenticated"] += 1
        received = []
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    received.append(await ws.recv())
    assert received == [], received
    assert ws.close_code in (CloseCode.UNAUTHORIZED, 1009, 1007), ws.close_code
    tally.closes[ws.close_code] += 1


def test_ten_thousand_fuzzed_frames_while_a_good_job_finishes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    script = tmp_path / "fuzz-script.txt"
    script.write_text("a fuzzed job from a file\nits second panel\n")
    errors = ErrorLog()
    loggers = [logging.getLogger(n) for n in ("novelgen_desktop.server", "novelgen_desktop.engine")]
    for logger in loggers:
        logger.addHandler(errors)
    rng = random.Random(SEED)
    tally = Tally()

    async def scenario() -> tuple[str, int, int]:
        service, hub, url = await start_service_hub(
            data_dir, run=FUZZ_RUN, refused_limit=10**9, restart_grace=0.5
        )
        stop = asyncio.Event()
        good_workers = asyncio.create_task(
            run_sim_workers(url, TOKEN, 1, GOOD_WORKER, stop=stop, prefix="good")
        )
        try:
            async with JobClient.connect(url) as good:
                submitted = await good.submit("good job", [f"good panel {i}" for i in range(120)])
                job_id = submitted.job_id
                await good.subscribe(job_id)
                await good.wait_for(lambda x: isinstance(x, m.JobProgress) and x.done >= 1)
                done_before = (await service.view(job_id)).done
                aim = Aim(job_id, script=script, out_dir=tmp_path / "fuzz-out")
                fuzzers = [
                    fuzz_connection(
                        url, m.Role.WORKER, i, rng=random.Random(rng.random()), aim=aim, tally=tally
                    )
                    for i in range(WORKER_CONNECTIONS)
                ] + [
                    fuzz_connection(
                        url, m.Role.CLIENT, i, rng=random.Random(rng.random()), aim=aim, tally=tally
                    )
                    for i in range(CLIENT_CONNECTIONS)
                ]

                async def unauthenticated_ones() -> None:
                    for _ in range(UNAUTHENTICATED):
                        await unauthenticated(url, rng, tally)

                async with asyncio.timeout(60):
                    await asyncio.gather(*fuzzers, unauthenticated_ones())
                done_during = (await service.view(job_id)).done - done_before
                final = await good.progress_until(job_id, {"finished"}, timeout=30)
                assert final.done == GOOD_TASKS
                # The hub still takes new connections, and answers them.
                async with JobClient.connect(url) as late:
                    listed = await late.request(m.ListJobs(request_id="late"))
                    assert isinstance(listed, m.Jobs)
                    assert job_id in [j.job_id for j in listed.jobs]
                for fuzz_job in tally.submitted:  # every job a fuzzed submit created exists
                    assert (await service.find_job(fuzz_job)).id == fuzz_job
                async with worker_connection(url, "late-worker"):
                    pass
                return job_id, done_before, done_during
        finally:
            stop.set()
            await asyncio.wait_for(hub.stop(), 30)
            await asyncio.wait_for(good_workers, 10)

    try:
        job_id, done_before, done_during = asyncio.run(scenario())
    finally:
        for logger in loggers:
            logger.removeHandler(errors)

    summary = (
        f"sent {tally.sent} {dict(tally.sent_by_role)} over {tally.connections} connections, "
        f"closes {dict(tally.closes)}, errors {dict(tally.error_codes)}, "
        f"received {dict(tally.received)}, fuzz jobs {len(tally.submitted)}"
    )
    print(summary)
    assert tally.sent >= 10_000, summary
    assert tally.sent_by_role["worker"] >= 4000 and tally.sent_by_role["client"] >= 4000
    assert [r.getMessage() for r in errors.records] == [], summary
    assert tally.invalid_from_hub == [], tally.invalid_from_hub[:5]
    # The frames were varied enough to hit every refusal the hub can make.
    for code in (
        "bad_json",
        "bad_version",
        "unknown_type",
        "missing_field",
        "bad_field",
        "unknown_field",
        "too_large",
        "forbidden_role",
        "unexpected_binary",
        "binary_expected",
        "image_mismatch",
        "unknown_task",
        "unknown_job",
    ):
        assert tally.error_codes[code] > 0, (code, summary)
    assert "internal" not in tally.error_codes, summary
    assert tally.submitted, "some mutated submits stayed valid and created jobs"
    assert tally.closes[CloseCode.UNAUTHORIZED] > 0
    # The good worker kept working while the frames flew, and its job is whole.
    assert done_during > 0, (done_before, done_during)
    assert_job_complete_and_consistent(data_dir, job_id, GOOD_TASKS)


def test_the_default_refused_limit_closes_with_4008() -> None:
    async def scenario() -> None:
        hub = make_hub()  # the default refused_limit
        assert hub.refused_limit == 20
        rng = random.Random(SEED)
        async with running(hub) as url, worker_connection(url, "fuzz-limit") as ws:
            sent, errors = 0, 0
            garbage = [t for t in (rand_text(rng, 20) for _ in range(40)) if t.strip()]
            with contextlib.suppress(ConnectionClosed):
                for frame in garbage:
                    await ws.send(frame)
                    sent += 1
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        if isinstance(await recv_message(ws), m.Error):
                            errors += 1
            assert ws.close_code == CloseCode.POLICY
            assert errors == 20
            assert sent > 20

    asyncio.run(scenario())


def test_an_integer_beyond_the_float_range_is_a_bad_field() -> None:
    with pytest.raises(ProtocolError) as refused:
        m.decode(HUGE_INT_FRAME)
    assert refused.value.code == "bad_field" and refused.value.field == "ts"
    errors = ErrorLog()
    logger = logging.getLogger("novelgen_desktop.server")
    logger.addHandler(errors)

    async def scenario() -> m.Message:
        async with running(make_hub()) as url, worker_connection(url, "huge") as ws:
            await ws.send(HUGE_INT_FRAME)
            return await asyncio.wait_for(recv_message(ws), 5)

    try:
        answer = asyncio.run(scenario())
    finally:
        logger.removeHandler(errors)
    assert isinstance(answer, m.Error)
    assert (answer.code, answer.field) == ("bad_field", "ts"), answer
    assert errors.records == []


def test_a_first_frame_with_a_huge_integer_is_closed_4001_like_any_bad_hello() -> None:
    errors = ErrorLog()
    logger = logging.getLogger("novelgen_desktop.server")
    logger.addHandler(errors)

    async def scenario() -> int | None:
        async with running(make_hub()) as url, connect(url, compression=None) as ws:
            await ws.send(HUGE_INT_FRAME)
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            return ws.close_code

    try:
        code = asyncio.run(scenario())
    finally:
        logger.removeHandler(errors)
    assert code == CloseCode.UNAUTHORIZED
    assert errors.records == []
