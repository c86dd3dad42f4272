"""``novelgen serve --tabs N --chat-mode M --selectors FILE`` as a user runs it: bad values are
refused before the hub starts, good ones reach every worker in ``configure``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_cli_hub import run, serving, stop
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.pairing import SHIPPED_EXTENSION_ID
from tests.server.server_testkit import hello_text, recv_message

TABLE: dict[str, Any] = {
    "version": 12,
    "keys": {
        "sendButton": ['button[data-testid="send-button"]', "#composer-submit-button"],
        "multigenPick": [{"css": "button", "text": "^Image 1$"}],
    },
}


def refused_before_start(tmp_path: Path, *args: str) -> str:
    """Run ``serve`` with ``args``: it must exit 2 with a one-line reason, never listen."""
    ready = tmp_path / "ready.json"
    result = run(tmp_path / "data", "serve", "--port", "0", "--ready-file", str(ready), *args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert not ready.exists(), "the hub must not have started"
    return result.stderr


@pytest.mark.parametrize("tabs", ["0", "11", "-1", "abc", "2.5", ""])
def test_tabs_out_of_range_or_not_a_number_is_a_usage_error(tmp_path: Path, tabs: str) -> None:
    err = refused_before_start(tmp_path, "--tabs", tabs)
    assert f"argument --tabs: expected 1 to 10 tabs, got {tabs}" in err, err


FLAGS_ON = {"multi_tab": True, "reference_images": True, "selector_updates": True}


def test_unknown_chat_mode_is_a_usage_error(tmp_path: Path) -> None:
    err = refused_before_start(tmp_path, "--chat-mode", "per_chapter")
    assert "argument --chat-mode: invalid choice: 'per_chapter'" in err, err


def test_missing_selector_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-table.json"
    err = refused_before_start(tmp_path, "--selectors", str(missing))
    assert f"novelgen: error: cannot read selector table {missing}" in err, err


def test_bad_json_in_the_selector_file_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text('{"version": 2,\n "keys": {"sendButton": ["#send",]}}\n', encoding="utf-8")
    err = refused_before_start(tmp_path, "--tabs", "2", "--selectors", str(path))
    assert f"novelgen: error: {path}, line 2, column 34: not valid JSON" in err, err


def test_bad_entry_in_the_selector_file_names_key_and_index(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    bad = {"version": 2, "keys": {"sendButton": ["#send", {"css": "b", "text": "(("}]}}
    path.write_text(json.dumps(bad, indent=2), encoding="utf-8")
    err = refused_before_start(tmp_path, "--selectors", str(path))
    assert f"novelgen: error: {path}: keys.sendButton[1].text: not a regular expression" in err


async def _first_frames(url: str, token: str, role: str, count: int) -> list[dict[str, Any]]:
    """``count`` frames after ``welcome`` (raw JSON), or fewer if nothing more comes."""
    frames: list[dict[str, Any]] = []
    async with connect(url, compression=None) as ws:
        worker_id = "tab-1" if role == "worker" else None
        await ws.send(hello_text(worker_id, token=token))
        assert isinstance(await recv_message(ws), m.Welcome)
        try:
            while len(frames) < count:
                text = await asyncio.wait_for(ws.recv(), 1.0)
                frame = json.loads(text)
                if frame["type"] != "heartbeat":
                    frames.append(frame)
        except TimeoutError:
            pass
    return frames


def test_serve_pushes_its_settings_to_every_worker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    table = tmp_path / "table.json"
    table.write_text(json.dumps(TABLE, indent=4), encoding="utf-8")
    args = ("--tabs", "3", "--chat-mode", "per_sequence", "--selectors", str(table))
    with serving(data, *args) as (ready, proc):
        token = (data / "pairing-token").read_text().strip()
        url = ready["url"]
        frames = asyncio.run(_first_frames(url, token, "worker", 2))
        assert frames == [
            {
                "v": 1,
                "type": "configure",
                "tabs": 3,
                "chat_mode": "per_sequence",
                "selector_table": json.dumps(TABLE, separators=(",", ":")),
                "flags": FLAGS_ON,
            }
        ]
        assert asyncio.run(_first_frames(url, token, "client", 1)) == []

        # The shipped extension is paired without a pairing step; others are not.
        async def origin_status(origin: str) -> str:
            try:
                async with connect(url, origin=origin) as ws:
                    await ws.send(hello_text("tab-2", token=token))
                    return str(json.loads(await ws.recv())["type"])
            except InvalidStatus as exc:
                return str(exc.response.status_code)

        assert asyncio.run(origin_status(f"chrome-extension://{SHIPPED_EXTENSION_ID}")) == (
            "welcome"
        )
        assert asyncio.run(origin_status("chrome-extension://" + "b" * 32)) == "403"
        code, err = stop(proc)
    assert code == 0, err


def test_serve_with_tabs_only_leaves_the_rest_to_the_extension(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(data, "--tabs", "3") as (ready, proc):
        token = (data / "pairing-token").read_text().strip()
        frames = asyncio.run(_first_frames(ready["url"], token, "worker", 2))
        assert frames == [{"v": 1, "type": "configure", "tabs": 3, "flags": FLAGS_ON}]
        code, err = stop(proc)
    assert code == 0, err


def test_serve_without_browser_options_sends_only_the_flags(tmp_path: Path) -> None:
    """No tabs, chat mode or table: the extension keeps its own options; the feature flags
    are always said, so a kill switch is in force from the first message."""
    data = tmp_path / "data"
    with serving(data, "--flag", "multi_tab=off") as (ready, proc):
        token = (data / "pairing-token").read_text().strip()
        frames = asyncio.run(_first_frames(ready["url"], token, "worker", 2))
        assert frames == [{"v": 1, "type": "configure", "flags": {**FLAGS_ON, "multi_tab": False}}]
        code, err = stop(proc)
    assert code == 0, err
