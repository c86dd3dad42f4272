"""``novelgen serve``, ``pair`` and ``sim-worker`` as a user runs them: separate processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

TIMEOUT = 60


def novelgen(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "novelgen_desktop", "--data-dir", str(data_dir), *args]


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        novelgen(data_dir, *args), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def wait_for_file(path: Path, proc: subprocess.Popen[str]) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if path.exists():
            return dict(json.loads(path.read_text()))
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


@contextmanager
def serving(data_dir: Path, *args: str) -> Iterator[tuple[dict[str, Any], subprocess.Popen[str]]]:
    ready = data_dir.parent / f"ready-{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        novelgen(data_dir, "serve", "--port", "0", "--ready-file", str(ready), *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield wait_for_file(ready, proc), proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, err


# --- pair ---------------------------------------------------------------------------------


def test_pair_creates_a_private_token_keeps_it_and_regenerates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run(data, "pair", "--show-token")
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert len(token) >= 22 and token.replace("-", "").replace("_", "").isalnum()
    token_file = data / "pairing-token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert run(data, "pair", "--show-token").stdout.strip() == token
    again = run(data, "pair", "--regenerate", "--show-token").stdout.strip()
    assert again != token and token_file.read_text().strip() == again


def test_pair_an_extension_and_refuse_a_malformed_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = run(data, "pair", "--allow-extension", "not-an-id")
    assert bad.returncode == 2
    assert "32 letters a–p" in bad.stderr
    good = run(data, "pair", "--allow-extension", "a" * 32)
    assert good.returncode == 0, good.stderr
    assert f"chrome-extension://{'a' * 32}/options/options.html#hub=" in good.stdout


def test_damaged_token_file_is_named_with_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "pairing-token").write_text("short\n")
    result = run(data, "serve", "--port", "0")
    assert result.returncode == 2
    assert "pairing-token" in result.stderr and "novelgen pair --regenerate" in result.stderr


# --- serve: binding and TLS ---------------------------------------------------------------


def test_serve_on_the_network_without_tls_is_refused(tmp_path: Path) -> None:
    result = run(tmp_path / "data", "serve", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "--tls-cert" in result.stderr and "--insecure" in result.stderr


def test_serve_insecure_on_the_network_warns_and_serves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(data, "--host", "0.0.0.0", "--insecure") as (ready, proc):
        token = (data / "pairing-token").read_text().strip()
        port = ready["port"]

        async def hello() -> str:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send(
                    json.dumps(
                        {"v": 1, "type": "hello", "token": token, "role": "client", "versions": [1]}
                    )
                )
                return str(json.loads(await ws.recv())["type"])

        assert asyncio.run(hello()) == "welcome"
        code, err = stop(proc)
    assert code == 0, err
    assert "warning" in err and "WITHOUT TLS" in err


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(tmp_path / "data", "serve", "--port", str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "hub.crt", folder / "hub.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    return cert, key


def test_tls_hub_serves_wss_and_sim_workers_connect_with_the_ca(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cert, key = _self_signed(tmp_path)
    args = ("--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key))
    with serving(data, *args) as (ready, proc):
        port = ready["port"]
        assert ready["url"].startswith("wss://")
        url = f"wss://127.0.0.1:{port}/"
        token = (data / "pairing-token").read_text().strip()
        sim = subprocess.Popen(
            novelgen(data, "sim-worker", "--url", url, "--cafile", str(cert), "--count", "2",
                     "--latency", "0.01", "--latency-sigma", "0", "--image-size", "32"),
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        context = ssl.create_default_context(cafile=str(cert))

        async def job() -> tuple[str, list[str]]:
            async with connect(url, ssl=context) as ws:
                await ws.send(json.dumps({"v": 1, "type": "hello", "token": token,
                                          "role": "client", "versions": [1]}))  # fmt: skip
                assert json.loads(await ws.recv())["type"] == "welcome"
                await ws.send(json.dumps({"v": 1, "type": "submit", "request_id": "r1",
                                          "name": "tls", "prompts": ["a", "b", "c"]}))  # fmt: skip
                submitted = json.loads(await ws.recv())
                await ws.send(json.dumps({"v": 1, "type": "subscribe", "request_id": "r2",
                                          "job_ids": [submitted["job_id"]],
                                          "interval": 0.25}))  # fmt: skip
                states = []
                async with asyncio.timeout(TIMEOUT):
                    while not states or states[-1] != "finished":
                        frame = json.loads(await ws.recv())
                        if frame["type"] == "job_progress":
                            states.append(frame["state"])
                return submitted["job_id"], states

        job_id, states = asyncio.run(job())
        assert states[-1] == "finished"

        async def plain() -> None:
            async with connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
                await ws.recv()

        with pytest.raises(Exception):  # noqa: B017 - any handshake failure will do
            asyncio.run(plain())
        code, err = stop(proc)
        assert code == 0, err
        _out, sim_err = sim.communicate(timeout=TIMEOUT)
        assert sim.returncode == 0, sim_err
        assert "the hub said bye: shutdown" in sim_err
    assert (data / "output" / job_id / "manifest.jsonl").read_text().count("\n") == 3


# --- sim-worker -----------------------------------------------------------------------------


def test_sim_worker_with_a_wrong_token_exits_with_the_reason(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(data) as (ready, proc):
        result = run(data, "sim-worker", "--url", ready["url"], "--token", "W" * 43)
        assert result.returncode == 2
        assert "refused" in result.stderr and "4001" in result.stderr
        stop(proc)


def test_sim_worker_refuses_a_malformed_url_and_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run(data, "sim-worker", "--url", "http://127.0.0.1:1/", "--token", "W" * 43)
    assert result.returncode == 2 and "ws://" in result.stderr
    result = run(data, "sim-worker", "--token", "short")
    assert result.returncode == 2 and "--token" in result.stderr
    result = run(data, "sim-worker", "--token-file", str(tmp_path / "missing"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_serve_stop_drains_then_says_bye_and_a_restart_resumes_the_job(tmp_path: Path) -> None:
    """SIGTERM mid-job: sim workers get bye(shutdown) and exit 0; nothing finished is lost;
    a new serve on the same data dir resumes the job submitted through the hub."""
    data = tmp_path / "data"
    prompts = [f"panel {i}" for i in range(40)]

    async def submit(url: str, token: str) -> str:
        async with connect(url) as ws:
            await ws.send(json.dumps({"v": 1, "type": "hello", "token": token, "role": "client",
                                      "versions": [1]}))  # fmt: skip
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"v": 1, "type": "submit", "request_id": "r1",
                                      "name": "drain", "prompts": prompts}))  # fmt: skip
            return str(json.loads(await ws.recv())["job_id"])

    with serving(data, "--backoff-base", "0.05") as (ready, proc):
        token = (data / "pairing-token").read_text().strip()
        job_id = asyncio.run(submit(ready["url"], token))
        sim = subprocess.Popen(
            novelgen(data, "sim-worker", "--url", ready["url"], "--count", "2",
                     "--latency", "0.1", "--latency-sigma", "0", "--image-size", "32"),
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        manifest = data / "output" / job_id / "manifest.jsonl"
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if manifest.exists() and manifest.read_text().count("\n") >= 5:
                break
            time.sleep(0.05)
        code, err = stop(proc)
        assert code == 0, err
        _out, sim_err = sim.communicate(timeout=TIMEOUT)
        assert sim.returncode == 0 and "the hub said bye: shutdown" in sim_err, sim_err
    done_before = manifest.read_text().count("\n")
    assert 5 <= done_before < len(prompts)

    with serving(data, "--backoff-base", "0.05") as (ready, proc):
        sim = subprocess.Popen(
            novelgen(data, "sim-worker", "--url", ready["url"], "--count", "3",
                     "--latency", "0.01", "--latency-sigma", "0", "--image-size", "32"),
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and manifest.read_text().count("\n") < len(prompts):
            time.sleep(0.05)
        stop(proc)
        sim.communicate(timeout=TIMEOUT)

    from tests.integration.helpers import assert_job_complete_and_consistent

    assert_job_complete_and_consistent(data, job_id, len(prompts))
    assert os.path.exists(data / "novelgen.sqlite")
