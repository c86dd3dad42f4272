"""A process's live flag set: overrides, the local file, the remote, rollbacks, the watch."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flag_testkit import ConfigServer, document

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import FlagConfigError, FlagSetting, Variant
from novelgen_desktop.flags.flagset import FlagSet
from novelgen_desktop.flags.service import (
    FlagService,
    flag_files,
    open_flags,
    overrides_from,
    stop_watching,
)

Heard = list[tuple[FlagSet, str]]
# A rollback must be in force within one poll; 0.5 s leaves room for a loaded machine and is
# still half of the 1 s the requirements allow.
LIVE_WITHIN = 0.5


@pytest.fixture
def services() -> Iterator[list[FlagService]]:
    """Services a test opens, closed at its end."""
    opened: list[FlagService] = []
    yield opened
    for service in opened:
        service.close()


def opened(services: list[FlagService], service: FlagService) -> FlagService:
    services.append(service)
    return service


def listen(service: FlagService) -> Heard:
    heard: Heard = []
    service.subscribe(lambda flags, reason: heard.append((flags, reason)))
    return heard


def write_local(root: Path, text: str) -> Path:
    path = flag_files(root).local
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def touch_later(path: Path, text: str) -> None:
    """Rewrite ``path`` with a later mtime than it had (the watch compares stat results)."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10_000_000, before + 10_000_000))


# --- overrides ----------------------------------------------------------------------------


def test_environment_and_cli_overrides(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    service = opened(
        services,
        open_flags(
            isolated_data_dir,
            environ={
                "NOVELGEN_FLAG_MULTI_TAB": "off",
                "NOVELGEN_FLAG_MEMORY_GOVERNOR": "no",
                "UNRELATED": "x",
            },
            cli_overrides=["memory_governor=on", "fresh_chat=yes"],
        ),
    )
    flags = service.current
    assert flags.value("multi_tab") is False
    assert flags.source("multi_tab") == "environment NOVELGEN_FLAG_MULTI_TAB"
    assert flags.value("memory_governor") is True  # --flag beats the environment
    assert flags.source("memory_governor") == "--flag"
    assert flags.value("fresh_chat") is True
    assert flags.source("selector_updates") == "default"
    # overrides are this process's own: the shared, versioned set does not have them
    assert service.versions()[0].settings["multi_tab"] == FlagSetting(value=True)
    assert flags.browser_flags()["multi_tab"] is False


def test_open_flags_reads_the_real_environment(
    isolated_data_dir: Path, services: list[FlagService], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVELGEN_FLAG_SELECTOR_UPDATES", "0")
    service = opened(services, open_flags(isolated_data_dir))
    assert service.current.value("selector_updates") is False
    assert service.files.root == isolated_data_dir / "flags"


@pytest.mark.parametrize(
    ("environ", "cli", "message"),
    [
        (
            {"NOVELGEN_FLAG_MULTI_TAB": "maybe"},
            [],
            "NOVELGEN_FLAG_MULTI_TAB: expected on/off (true/false, 1/0, yes/no), got 'maybe'",
        ),
        ({"NOVELGEN_FLAG_MULTI_TABS": "off"}, [], "NOVELGEN_FLAG_MULTI_TABS: unknown flag"),
        ({}, ["multi_tab"], "--flag 'multi_tab': expected NAME=VALUE"),
        ({}, ["nope=on"], "--flag 'nope=on': expected NAME=VALUE with NAME one of multi_tab"),
        ({}, ["multi_tab=sometimes"], "--flag 'multi_tab=sometimes': expected on/off"),
    ],
)
def test_a_bad_override_names_the_variable(
    isolated_data_dir: Path, environ: dict[str, str], cli: list[str], message: str
) -> None:
    with pytest.raises(FlagConfigError) as caught:
        open_flags(isolated_data_dir, environ=environ, cli_overrides=cli)
    assert caught.value.source == "flag overrides"
    assert any(message in problem for problem in caught.value.problems), caught.value.problems
    assert not (isolated_data_dir / "flags" / "history.sqlite3").exists()


def test_every_bad_override_is_named_at_once() -> None:
    with pytest.raises(FlagConfigError) as caught:
        overrides_from(
            {"NOVELGEN_FLAG_MULTI_TAB": "2", "NOVELGEN_FLAG_X": "1"}, ["fresh_chat=?", "y"]
        )
    assert len(caught.value.problems) == 4


# --- the local file -----------------------------------------------------------------------


def test_a_bad_local_file_at_start_names_file_and_line(isolated_data_dir: Path) -> None:
    path = write_local(
        isolated_data_dir, '{\n  "schema": 1,\n  "flags": {\n    "multi_tab": "no"\n  }\n}\n'
    )
    with pytest.raises(ConfigError) as caught:
        open_flags(isolated_data_dir, environ={})
    text = str(caught.value)
    assert str(path) in text
    assert 'line 4: flags.multi_tab: expected true or false, got "no"' in text


def test_invalid_json_local_file_at_start(isolated_data_dir: Path) -> None:
    path = write_local(isolated_data_dir, '{"schema": 1,\n "flags": {\n')
    with pytest.raises(ConfigError, match=r"line 3, column 1: not valid JSON") as caught:
        open_flags(isolated_data_dir, environ={})
    assert str(path) in str(caught.value)


def test_a_bad_local_file_not_strict_starts_on_defaults(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    write_local(isolated_data_dir, document(multi_tab="no"))
    service = opened(services, open_flags(isolated_data_dir, environ={}, strict=False))
    assert service.current.value("multi_tab") is True
    assert len(service.problems) == 1
    assert service.problems[0].startswith("local flag file ignored, the previous set stays")


def test_a_local_file_edited_into_a_bad_state_keeps_the_previous_set(
    isolated_data_dir: Path, services: list[FlagService], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_local(isolated_data_dir, document(multi_tab=False))
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    heard = listen(service)
    assert service.current.value("multi_tab") is False
    assert service.current.source("multi_tab") == "local file"
    version = service.current.version
    touch_later(path, document(multi_tab=False, memory_governor="off"))
    with caplog.at_level(logging.WARNING):
        assert service.refresh() is False
    assert service.current.value("multi_tab") is False
    assert service.current.value("memory_governor") is True
    assert service.current.version == version
    assert len(service.versions()) == 1
    assert heard == []
    assert len(service.problems) == 1
    assert str(path) in service.problems[0]
    assert "flags.memory_governor: expected true or false" in service.problems[0]
    assert any("local flag file ignored" in r.getMessage() for r in caplog.records)
    # not re-read (nor re-logged) on every poll while it stays the same
    caplog.clear()
    assert service.refresh() is False
    assert not caplog.records
    # fixed: picked up, the problem cleared, a new version recorded and announced
    touch_later(path, document(multi_tab=False, memory_governor=False))
    assert service.refresh() is True
    assert service.current.value("memory_governor") is False
    assert service.problems == []
    assert service.current.version == version + 1
    assert heard[-1][1] == "flags.json changed"


def test_a_deleted_local_file_falls_back_to_defaults(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    path = write_local(isolated_data_dir, document(multi_tab=False))
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    path.unlink()
    assert service.refresh() is True
    assert service.current.value("multi_tab") is True
    assert service.current.source("multi_tab") == "default"


def test_set_local_writes_the_file_and_records_a_version(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    heard = listen(service)
    experiment = FlagSetting(
        variants=(Variant("control", 1.0, False), Variant("fresh", 1.0, True)), salt="fc"
    )
    flags = service.set_local("fresh_chat", experiment)
    assert flags.setting("fresh_chat") == experiment
    assert flags.source("fresh_chat") == "local file"
    saved = json.loads(service.files.local.read_text(encoding="utf-8"))
    assert saved == {
        "schema": 1,
        "flags": {
            "fresh_chat": {
                "variants": [
                    {"name": "control", "weight": 1.0, "value": False},
                    {"name": "fresh", "weight": 1.0, "value": True},
                ],
                "salt": "fc",
            }
        },
    }
    assert flags.version == 2
    assert service.versions()[0].reason == "flags set fresh_chat"
    assert heard[-1][1] == "flags set fresh_chat"
    service.set_local("multi_tab", FlagSetting(value=False))
    assert set(json.loads(service.files.local.read_text(encoding="utf-8"))["flags"]) == {
        "fresh_chat",
        "multi_tab",
    }
    flags = service.set_local("fresh_chat", None)
    assert flags.value("fresh_chat") is False
    assert flags.source("fresh_chat") == "default"
    assert list(json.loads(service.files.local.read_text(encoding="utf-8"))["flags"]) == [
        "multi_tab"
    ]
    assert [v.version for v in service.versions()] == [4, 3, 2, 1]
    with pytest.raises(ConfigError, match="unknown flag 'multitab'"):
        service.set_local("multitab", FlagSetting(value=False))


def test_set_local_refuses_to_overwrite_a_bad_file(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    write_local(isolated_data_dir, "{oops")
    with pytest.raises(FlagConfigError):
        service.set_local("multi_tab", FlagSetting(value=False))
    assert service.files.local.read_text(encoding="utf-8") == "{oops"


def test_set_local_ends_a_rollback(isolated_data_dir: Path, services: list[FlagService]) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    service.set_local("multi_tab", FlagSetting(value=False))
    service.rollback()
    assert service.current.pinned_to == 1
    assert service.current.value("multi_tab") is True
    flags = service.set_local("memory_governor", FlagSetting(value=False))
    assert flags.pinned_to is None
    assert service.history.pinned() is None
    # the change builds on the restored set: the file the rollback undid does not come back
    assert flags.value("multi_tab") is True
    assert flags.value("memory_governor") is False
    saved = json.loads(service.files.local.read_text(encoding="utf-8"))
    assert saved["flags"] == {"memory_governor": False}
    assert service.versions()[0].reason == "flags set memory_governor"


def test_set_local_during_a_rollback_keeps_the_restored_local_flags(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    service.set_local("multi_tab", FlagSetting(value=False))  # v2
    service.set_local("selector_updates", FlagSetting(value=False))  # v3
    service.rollback()  # to v2: multi_tab off (from the file), selector_updates on
    flags = service.set_local("fresh_chat", FlagSetting(value=True))
    assert flags.pinned_to is None
    assert (flags.value("multi_tab"), flags.value("selector_updates")) == (False, True)
    assert flags.value("fresh_chat") is True
    saved = json.loads(service.files.local.read_text(encoding="utf-8"))
    assert saved["flags"] == {"fresh_chat": True, "multi_tab": False}


def test_set_local_after_rolling_back_to_a_rollback_version(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    service.set_local("multi_tab", FlagSetting(value=False))  # v2
    service.set_local("selector_updates", FlagSetting(value=False))  # v3
    restored = service.rollback()  # v4 = v2's set
    service.release()  # v4 again: the file (multi_tab, selector_updates off) decides: v5
    service.rollback(to=restored.version)  # back to v4, itself a rollback's record
    flags = service.set_local("fresh_chat", FlagSetting(value=True))
    # v4's multi_tab came from the local file: it stays in the file
    assert flags.value("multi_tab") is False
    assert flags.value("selector_updates") is True
    saved = json.loads(service.files.local.read_text(encoding="utf-8"))
    assert saved["flags"] == {"fresh_chat": True, "multi_tab": False}


# --- rollback -----------------------------------------------------------------------------


def test_rollback_through_the_service_notifies_the_restored_values(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    service.set_local("multi_tab", FlagSetting(value=False))
    service.set_local("memory_governor", FlagSetting(value=False))
    heard = listen(service)
    restored = service.rollback()
    assert restored.reason == "rollback to v2"
    assert len(heard) == 1
    flags, reason = heard[0]
    assert reason == "rollback to v2"
    assert flags is service.current
    assert flags.pinned_to == 2
    assert flags.version == restored.version == 4
    assert flags.value("multi_tab") is False
    assert flags.value("memory_governor") is True
    assert flags.source("memory_governor") == "rollback to v2"
    # the pin holds against the local file until released
    assert service.refresh(force=True)
    assert service.current.value("memory_governor") is True
    service.rollback()
    assert heard[-1][0].pinned_to == 1
    assert heard[-1][0].value("multi_tab") is True
    assert service.release() is True
    released, reason = heard[-1]
    assert reason == "rollback released"
    assert released.value("memory_governor") is False
    assert released.pinned_to is None
    assert service.release() is False


def test_a_failed_rollback_notifies_nobody(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    heard = listen(service)
    with pytest.raises(ConfigError, match="nothing to roll back to"):
        service.rollback()
    with pytest.raises(ConfigError, match=r"there is no flag set version 7 \(versions 1–1\)"):
        service.rollback(to=7)
    assert heard == []


def test_a_failing_listener_does_not_stop_the_others(
    isolated_data_dir: Path, services: list[FlagService], caplog: pytest.LogCaptureFixture
) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))

    def broken(flags: FlagSet, reason: str) -> None:
        raise RuntimeError("listener bug")

    service.subscribe(broken)
    heard = listen(service)
    unsubscribe = service.subscribe(lambda flags, reason: heard.append((flags, "second")))
    service.set_local("multi_tab", FlagSetting(value=False))
    assert [reason for _, reason in heard] == ["flags set multi_tab", "second"]
    assert any("flag listener failed" in r.getMessage() for r in caplog.records)
    unsubscribe()
    unsubscribe()  # twice is harmless
    service.set_local("multi_tab", None)
    assert [reason for _, reason in heard][-1] == "flags set multi_tab"


async def _first_change(heard: Heard, count: int, timeout: float) -> float:
    started = time.monotonic()
    while len(heard) < count:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"no change heard within {timeout} s")
        await asyncio.sleep(0.005)
    return time.monotonic()


def test_a_rollback_by_another_service_is_picked_up_within_one_poll(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    poll = 0.05
    hub = opened(services, open_flags(isolated_data_dir, environ={}))
    hub.set_local("multi_tab", FlagSetting(value=False))
    heard = listen(hub)

    async def scenario() -> float:
        task = hub.start_watching(poll=poll)
        try:
            await asyncio.sleep(3 * poll)  # the watch is running and quiet
            assert heard == []
            other = opened(services, open_flags(isolated_data_dir, environ={}))
            other.rollback()  # what `novelgen flags rollback` does in its own process
            done = time.monotonic()
            return await _first_change(heard, 1, timeout=2.0) - done
        finally:
            await stop_watching(task)

    latency = asyncio.run(scenario())
    print(f"rollback picked up by the watching service after {latency * 1000:.1f} ms")
    assert latency <= LIVE_WITHIN, latency
    flags, reason = heard[0]
    assert reason == "rollback to v1"
    assert flags.pinned_to == 1
    assert flags.value("multi_tab") is True
    assert hub.current is flags


_ROLLBACK_CHILD = """
import sys
import time
from pathlib import Path
from novelgen_desktop.flags.service import open_flags
service = open_flags(Path(sys.argv[1]), environ={})
version = service.rollback().version
print(version, time.time())  # the wall-clock moment the rollback was committed
service.close()
"""


def test_a_rollback_in_another_process_is_picked_up_by_the_watch(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    poll = 0.05
    hub = opened(services, open_flags(isolated_data_dir, environ={}))
    hub.set_local("memory_governor", FlagSetting(value=False))
    heard_at: list[float] = []
    hub.subscribe(lambda flags, reason: heard_at.append(time.time()))
    heard = listen(hub)

    async def scenario() -> str:
        task = hub.start_watching(poll=poll)
        try:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _ROLLBACK_CHILD,
                str(isolated_data_dir),
                stdout=subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(child.communicate(), 60)
            assert child.returncode == 0
            await _first_change(heard, 1, timeout=2.0)
            return out.decode()
        finally:
            await stop_watching(task)

    version, committed_at = asyncio.run(scenario()).split()
    latency = heard_at[0] - float(committed_at)
    print(f"rollback from another process heard {latency * 1000:.1f} ms after its commit")
    assert version == "3"
    assert heard[0][0].value("memory_governor") is True
    assert heard[0][0].pinned_to == 1
    assert heard[0][1] == "rollback to v1"
    assert len(heard) == 1
    assert latency <= LIVE_WITHIN, latency


def test_the_watch_picks_up_a_local_edit(
    isolated_data_dir: Path, services: list[FlagService]
) -> None:
    path = write_local(isolated_data_dir, document(multi_tab=False))
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    heard = listen(service)

    async def scenario() -> None:
        task = service.start_watching(poll=0.02)
        try:
            await asyncio.sleep(0.06)
            touch_later(path, document(multi_tab=True))
            await _first_change(heard, 1, timeout=2.0)
        finally:
            await stop_watching(task)

    asyncio.run(scenario())
    assert heard[0][0].value("multi_tab") is True
    assert heard[0][1] == "flags.json changed"


# --- the remote through the service -------------------------------------------------------


def test_remote_layer_through_the_service(
    isolated_data_dir: Path, services: list[FlagService], config_server: ConfigServer
) -> None:
    write_local(isolated_data_dir, document(multi_tab=False, selector_updates=False))
    config_server.publish(document(selector_updates=True, memory_governor=False))
    service = opened(
        services,
        open_flags(isolated_data_dir, environ={"NOVELGEN_FLAGS_URL": config_server.url}),
    )
    assert service.remote is not None
    assert service.remote.location == config_server.url
    heard = listen(service)
    result = asyncio.run(service.fetch_remote())
    assert result is not None
    assert result.status == "updated"
    flags = service.current
    assert heard[-1][0] is flags
    assert heard[-1][1].startswith("remote configuration updated")
    assert flags.value("multi_tab") is False
    assert flags.source("multi_tab") == "local file"
    assert flags.value("selector_updates") is True  # remote beats local
    assert flags.source("selector_updates") == "remote"
    assert flags.value("memory_governor") is False
    assert flags.version == 2
    # unchanged: nothing recorded, nobody told
    assert asyncio.run(service.fetch_remote()).status == "unchanged"  # type: ignore[union-attr]
    assert len(heard) == 1
    assert len(service.versions()) == 2


def test_no_remote_means_no_fetch(isolated_data_dir: Path, services: list[FlagService]) -> None:
    service = opened(services, open_flags(isolated_data_dir, environ={}))
    assert service.remote is None
    assert asyncio.run(service.fetch_remote()) is None


@pytest.mark.parametrize(
    "bad",
    [
        '{"schema": 1, "flags": {"multi_tab": tru}}',
        document(multi_tab=False, kill_everything=True),
        document(multi_tab="false"),
    ],
    ids=["invalid-json", "unknown-flag", "wrong-type"],
)
def test_a_malformed_remote_changes_nothing(
    isolated_data_dir: Path,
    services: list[FlagService],
    config_server: ConfigServer,
    caplog: pytest.LogCaptureFixture,
    bad: str,
) -> None:
    config_server.publish(document(multi_tab=False))
    service = opened(services, open_flags(isolated_data_dir, remote=config_server.url, environ={}))
    asyncio.run(service.fetch_remote())
    before = service.current
    versions = service.versions()
    heard = listen(service)
    config_server.publish(bad)
    with caplog.at_level(logging.WARNING, logger="novelgen_desktop.flags.remote"):
        result = asyncio.run(service.fetch_remote())
    assert result is not None
    assert result.status == "rejected"
    assert service.current is before
    assert service.current.value("multi_tab") is False
    assert service.versions() == versions
    assert heard == []
    assert service.problems == [result.reason]
    assert any("remote flags refused" in r.getMessage() for r in caplog.records)
    # refreshing does not undo it either
    assert service.refresh() is False
    assert service.current is before
    # a good document again clears the problem
    config_server.publish(document(multi_tab=False, fresh_chat=True))
    assert asyncio.run(service.fetch_remote()).status == "updated"  # type: ignore[union-attr]
    assert service.problems == []
    assert service.current.value("fresh_chat") is True


def test_server_down_keeps_the_last_known_good_and_a_restart_uses_the_cache(
    isolated_data_dir: Path, services: list[FlagService], config_server: ConfigServer
) -> None:
    config_server.publish(document(multi_tab=False))
    url = config_server.url
    first = opened(services, open_flags(isolated_data_dir, remote=url, environ={}))
    asyncio.run(first.fetch_remote())
    version = first.current.version
    config_server.stop()
    result = asyncio.run(first.fetch_remote())
    assert result is not None
    assert result.status == "unreachable"
    assert first.current.value("multi_tab") is False
    assert first.current.version == version
    first.close()
    services.remove(first)
    # a restart while the server is still down: the cached copy, no new version
    restarted = opened(services, open_flags(isolated_data_dir, remote=url, environ={}))
    assert restarted.current.value("multi_tab") is False
    assert restarted.current.source("multi_tab") == "remote"
    assert restarted.current.version == version
    assert asyncio.run(restarted.fetch_remote()).status == "unreachable"  # type: ignore[union-attr]
    assert restarted.current.value("multi_tab") is False


def test_remote_changes_are_held_while_a_rollback_is_pinned(
    isolated_data_dir: Path, services: list[FlagService], config_server: ConfigServer
) -> None:
    config_server.publish(document(multi_tab=False))
    service = opened(services, open_flags(isolated_data_dir, remote=config_server.url, environ={}))
    asyncio.run(service.fetch_remote())  # v2: multi_tab off
    config_server.publish(document(multi_tab=False, memory_governor=False))
    asyncio.run(service.fetch_remote())  # v3: memory_governor off too
    service.rollback()  # back to v2
    pinned = service.current
    assert pinned.pinned_to == 2
    assert pinned.value("memory_governor") is True
    config_server.publish(document(multi_tab=True, memory_governor=False, fresh_chat=True))
    result = asyncio.run(service.fetch_remote())
    assert result is not None
    assert result.status == "updated"
    held = service.current
    assert held.pinned_to == 2
    assert held.version == pinned.version
    assert held.value("fresh_chat") is False
    assert held.value("multi_tab") is False
    assert held.value("memory_governor") is True
    assert service.versions()[0].version == pinned.version  # nothing recorded meanwhile
    assert service.release() is True
    released = service.current
    assert released.pinned_to is None
    assert released.value("fresh_chat") is True
    assert released.value("multi_tab") is True
    assert released.value("memory_governor") is False
    assert released.version == pinned.version + 1


def test_two_services_sharing_a_remote_do_not_flip_the_set(
    isolated_data_dir: Path, services: list[FlagService], config_server: ConfigServer
) -> None:
    """The window and `novelgen serve` on one data folder, one of them fetching first: the
    other must not re-record its older view on each poll (a new version and a flipped
    multi_tab every 0.2 s until it fetches too)."""
    config_server.publish(document(multi_tab=False))
    hub = opened(services, open_flags(isolated_data_dir, remote=config_server.url, environ={}))
    window = opened(services, open_flags(isolated_data_dir, remote=config_server.url, environ={}))
    heard = listen(hub)
    asyncio.run(window.fetch_remote())
    for _ in range(5):
        hub.refresh()
        window.refresh()
    assert len(hub.versions()) == 2
    assert hub.current.value("multi_tab") is False
    assert window.current.value("multi_tab") is False
    assert hub.current.version == window.current.version == 2
    assert [flags.value("multi_tab") for flags, _ in heard] == [False]


def test_the_watch_fetches_the_remote(
    isolated_data_dir: Path, services: list[FlagService], config_server: ConfigServer
) -> None:
    config_server.publish(document(fresh_chat=True))
    service = opened(services, open_flags(isolated_data_dir, remote=config_server.url, environ={}))
    heard = listen(service)

    async def scenario() -> None:
        task = service.start_watching(poll=0.02, remote_every=0.1)
        try:
            await _first_change(heard, 1, timeout=5.0)
            await asyncio.sleep(0.35)
        finally:
            await stop_watching(task)

    asyncio.run(scenario())
    assert heard[0][0].value("fresh_chat") is True
    assert len(heard) == 1
    statuses = [seen.status for seen in config_server.requests]
    assert statuses[0] == 200
    assert 2 <= len(statuses) <= 8, statuses
    assert set(statuses[1:]) == {304}


def test_a_restart_after_a_rejected_remote_uses_the_last_known_good(
    isolated_data_dir: Path, services: list[FlagService], config_server: ConfigServer
) -> None:
    config_server.publish(document(multi_tab=False))
    first = opened(services, open_flags(isolated_data_dir, remote=config_server.url, environ={}))
    asyncio.run(first.fetch_remote())
    config_server.publish(document(multi_tab=False, fresh_chat="yes"))
    assert asyncio.run(first.fetch_remote()).status == "rejected"  # type: ignore[union-attr]
    versions = first.versions()
    restarted = opened(
        services, open_flags(isolated_data_dir, remote=config_server.url, environ={})
    )
    assert restarted.current.value("multi_tab") is False
    assert restarted.current.value("fresh_chat") is False
    assert restarted.versions() == versions
