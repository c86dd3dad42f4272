"""``novelgen serve``'s memory governor options: bad thresholds are refused before anything
starts, naming the option; a synthetic machine already short of memory is reported to a
subscribed client as ``memory_state``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_cli_hub import run, serving, stop
from websockets.asyncio.client import connect

from novelgen_desktop.protocol import messages as m
from tests.server.server_testkit import hello_text, recv_message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--memory-resume", "85"), "--memory-resume: 85 must be below --memory-pause 80"),
        (("--memory-critical", "70"), "--memory-critical: 70 must be above --memory-pause 80"),
        (("--memory-pause", "120"), "--memory-pause: 120 is not between 1 and 100"),
        (("--memory-interval", "0.001"), "--memory-interval: 0.001 s is not within 0.01–60 s"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_option(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run(tmp_path / "data", "serve", "--port", "0", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "listening" not in result.stderr


@pytest.mark.parametrize("value", ["8192", "100,200", "x,y", "0,0"])
def test_bad_synthetic_memory_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = run(tmp_path / "data", "serve", "--port", "0", "--synthetic-memory", value)
    assert result.returncode == 2
    assert f"expected TOTAL_MIB,BASE_MIB with 0 ≤ BASE ≤ TOTAL (e.g. 8192,4096), got {value}" in (
        result.stderr
    )


async def _memory_state(url: str, token: str) -> dict[str, object]:
    async with connect(url, compression=None) as ws:
        await ws.send(hello_text(None, token=token))
        assert isinstance(await recv_message(ws), m.Welcome)
        await ws.send(m.encode(m.Subscribe(request_id="s-1")))
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "memory_state":
                    return dict(frame)


def test_a_machine_short_of_memory_is_reported_to_clients(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(data, "--synthetic-memory", "1000,850") as (ready, proc):
        token = (data / "pairing-token").read_text().strip()
        frame = asyncio.run(_memory_state(str(ready["url"]), token))
        assert frame["state"] == "pressure"
        assert frame["previous"] == "normal"
        assert frame["system_percent"] == 85.0
        assert frame["reason"] == "system memory 85.0 % ≥ 80 %"
        code, _err = stop(proc)
        assert code == 0
