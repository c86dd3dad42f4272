"""An ``ack`` lets the worker forget the image, so it only comes once the image is on disk."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from server_testkit import TOKEN, png_for, recv_message, send_result, worker_connection

from novelgen_desktop.engine.runner import JobRunner
from novelgen_desktop.engine.service import JobService, specs_from_prompts
from novelgen_desktop.errors import OutputError
from novelgen_desktop.paths import resolve_data_dir
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.hub import Hub


def _files_with(out_dir: Path, image: bytes) -> list[Path]:
    return [p for p in out_dir.rglob("*.png") if p.read_bytes() == image]


@pytest.mark.parametrize("write_delay", [0.0, 0.4])
def test_ack_comes_only_once_the_image_file_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_delay: float
) -> None:
    real_write = JobRunner._write_file

    def slow_write(self: JobRunner, *args: Any) -> Any:
        time.sleep(write_delay)  # a slow disk: an early ack would come before the file
        return real_write(self, *args)

    monkeypatch.setattr(JobRunner, "_write_file", slow_write)

    async def scenario() -> None:
        service = JobService(resolve_data_dir(tmp_path / "data"))
        await service.start()
        hub = Hub(TOKEN, service=service)
        port = await hub.start("127.0.0.1", 0)
        try:
            job, _ = await service.submit("durable", specs_from_prompts(["a", "b"])[0])
            async with worker_connection(f"ws://127.0.0.1:{port}/", "tab-1") as ws:
                for _ in range(2):
                    assign = await asyncio.wait_for(recv_message(ws), 10)
                    assert isinstance(assign, m.Assign)
                    image = png_for(assign)
                    await send_result(ws, assign, image)
                    ack = await asyncio.wait_for(recv_message(ws), 10)
                    assert isinstance(ack, m.Ack) and ack.outcome == "accepted"
                    # The moment the worker may forget the image, the image is safe.
                    assert len(_files_with(Path(job.out_dir), image)) == 1
        finally:
            await hub.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_image_that_cannot_be_written_is_acked_as_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_write(self: JobRunner, *args: Any) -> Any:
        raise OutputError("simulated I/O error writing the image")

    monkeypatch.setattr(JobRunner, "_write_file", failing_write)

    async def scenario() -> m.Message:
        service = JobService(resolve_data_dir(tmp_path / "data"))
        await service.start()
        hub = Hub(TOKEN, service=service)
        port = await hub.start("127.0.0.1", 0)
        try:
            await service.submit("broken disk", specs_from_prompts(["a"])[0])
            async with worker_connection(f"ws://127.0.0.1:{port}/", "tab-1") as ws:
                assign = await asyncio.wait_for(recv_message(ws), 10)
                assert isinstance(assign, m.Assign)
                await send_result(ws, assign, png_for(assign))
                return await asyncio.wait_for(recv_message(ws), 10)
        finally:
            await hub.stop()

    ack = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert isinstance(ack, m.Ack) and ack.outcome == "not_written"
