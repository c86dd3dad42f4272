"""``novelgen submit`` / ``follow`` as an author runs them: a real ``novelgen serve`` and
``novelgen sim-worker`` as separate processes, the client as a third."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli_hub import TIMEOUT, novelgen, run, serving

PROMPTS = ["A lighthouse at dusk, ink", "The keeper's kitchen at dawn", "A storm over the bay"]
FAST = ["--latency", "0.02", "--latency-sigma", "0", "--image-size", "32"]


def sim_workers(data: Path, url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        novelgen(data, "sim-worker", "--url", url, "--count", "2", *FAST, *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One hub with two fast simulated tabs, shared by the tests that expect success."""
    root = tmp_path_factory.mktemp("hub")
    data = root / "data"
    with serving(data, "--backoff-base", "0.05") as (ready, proc):
        workers = sim_workers(data, ready["url"])
        try:
            yield {**ready, "data": data}
        finally:
            finish(workers)
            finish(proc)


def script(tmp_path: Path, name: str = "lighthouse.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return path


def submit(hub: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return run(hub["data"], "submit", "--hub", hub["url"], *args)


def test_submit_runs_the_job_to_the_end(hub: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = submit(hub, str(script(tmp_path)), "--out", str(out), "--name", "Lighthouse")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.startswith("lighthouse-")
    assert f"job {job_id}: 3 image(s) queued" in result.stderr
    assert f"job {job_id}: finished: 3/3" in result.stderr
    assert len(list((out / job_id).rglob("*.png"))) == len(PROMPTS)


def test_detach_returns_the_job_id_and_follow_picks_it_up(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    started = time.monotonic()
    result = submit(hub, str(script(tmp_path)), "--detach")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert f"novelgen follow {job_id} --hub {hub['url']}" in result.stderr
    assert "finished" not in result.stderr
    assert time.monotonic() - started < 15
    followed = run(hub["data"], "follow", job_id[:-2], "--hub", hub["url"])
    assert followed.returncode == 0, followed.stderr
    assert f"job {job_id}: finished: 3/3" in followed.stderr


def test_a_script_error_names_file_and_line_and_creates_nothing(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"prompt": "a lighthouse"}\n{broken\n', encoding="utf-8")
    out = tmp_path / "out"
    result = submit(hub, str(bad), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert f"{bad}:2:" in result.stderr and "nothing was created" in result.stderr
    assert result.stdout == ""
    assert not out.exists()
    jobs = run(hub["data"], "jobs")
    assert "broken" not in jobs.stdout


def test_a_wrong_token_is_named_with_the_fix(hub: dict[str, Any], tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("W" * 43 + "\n")
    result = submit(hub, str(script(tmp_path)), "--token-file", str(token))
    assert result.returncode == 2
    assert f"refused the token in {token}" in result.stderr and "novelgen pair" in result.stderr


def test_no_hub_running_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/"
    token = tmp_path / "token"
    token.write_text("W" * 43 + "\n")
    result = run(data, "submit", str(script(tmp_path)), "--hub", url, "--token-file", str(token))
    assert result.returncode == 2
    assert f"no hub at {url}" in result.stderr and "novelgen serve" in result.stderr
    # Without a token file: no hub ever ran on this data dir.
    result = run(data, "submit", str(script(tmp_path)), "--hub", url)
    assert result.returncode == 2 and "novelgen serve" in result.stderr


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], text: str) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            continue
        if text in seen[-1]:
            return seen
    raise AssertionError(f"{text!r} never came; got {seen}")


def _drain(lines: queue.Queue[str]) -> str:
    """What the (exited) process wrote after the lines already taken."""
    taken = []
    while True:
        try:
            taken.append(lines.get(timeout=2))
        except queue.Empty:
            return "".join(taken)


def test_waiting_for_tabs_ctrl_c_then_an_incomplete_job(tmp_path: Path) -> None:
    """No tab: the client says how to get one; Ctrl-C leaves the job in the hub; tabs that
    refuse every prompt make it incomplete, which ``follow`` reports with the errors."""
    data = tmp_path / "data"
    with serving(data, "--backoff-base", "0.05") as (ready, proc):
        client = subprocess.Popen(
            novelgen(data, "submit", str(script(tmp_path)), "--hub", ready["url"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = _lines(client)
        _wait_for(lines, "waiting for ChatGPT tabs")
        client.send_signal(signal.SIGINT)
        # Not communicate(): it would read stderr too, racing the pump thread for it.
        assert client.stdout is not None
        stdout = client.stdout.read()
        client.wait(timeout=TIMEOUT)
        job_id = stdout.strip()
        rest = _drain(lines)
        assert client.returncode == 130, rest
        assert f"novelgen follow {job_id} --hub {ready['url']}" in rest

        workers = sim_workers(data, ready["url"], "--refusal-rate", "1")
        try:
            result = run(data, "follow", "--hub", ready["url"])
        finally:
            finish(workers)
            finish(proc)
    assert result.returncode == 1, result.stderr
    assert f"job {job_id}: incomplete: 0/3" in result.stderr
    assert "× refused:" in result.stderr
