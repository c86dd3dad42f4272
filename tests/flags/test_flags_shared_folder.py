"""Several processes on one data folder agree on one flag set.

Only the process given the remote source (the hub, ``--flags-url``) fetches it; every other
process on the folder (the window, a ``novelgen flags`` command) follows the last known good
copy it keeps there. None of them records a version of its own view without the remote —
which would make the set flip between processes, and a rollback go back to the wrong set.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from novelgen_desktop.flags.service import FlagService, flag_files


def write_remote(path: Path, multi_tab: bool) -> None:
    path.write_text(json.dumps({"schema": 1, "flags": {"multi_tab": multi_tab}}))


def test_a_process_without_the_remote_follows_the_folders_copy(tmp_path: Path) -> None:
    remote = tmp_path / "published.json"
    write_remote(remote, False)
    files = flag_files(tmp_path / "data")
    hub = FlagService(files, remote=str(remote))
    assert hub.remote is not None
    hub.apply_remote(hub.remote.fetch())
    assert hub.current.value("multi_tab") is False
    versions = len(hub.versions())

    command = FlagService(files)  # e.g. `novelgen flags show` with no NOVELGEN_FLAGS_URL
    assert command.current.value("multi_tab") is False
    assert command.current.source("multi_tab") == "remote"
    assert command.current.version == hub.current.version
    assert len(command.versions()) == versions  # it recorded nothing of its own

    # A rollback typed there goes back to the set before the remote's change.
    command.rollback()
    hub.refresh()
    assert hub.current.value("multi_tab") is True and command.current.value("multi_tab") is True
    command.close()
    hub.close()


def test_a_newer_remote_fetched_by_one_process_reaches_the_others_once(tmp_path: Path) -> None:
    remote = tmp_path / "published.json"
    write_remote(remote, True)
    files = flag_files(tmp_path / "data")
    hub = FlagService(files, remote=str(remote))
    assert hub.remote is not None
    hub.apply_remote(hub.remote.fetch())
    window = FlagService(files)
    heard: list[bool] = []
    window.subscribe(lambda flags, _reason: heard.append(bool(flags.value("multi_tab"))))

    async def scenario() -> None:
        watch = window.start_watching(poll=0.02)
        try:
            write_remote(remote, False)
            assert hub.remote is not None
            hub.apply_remote(hub.remote.fetch())
            async with asyncio.timeout(5):
                while heard != [False]:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # and nothing more: no flipping between the two
        finally:
            watch.cancel()

    before = len(hub.versions())
    asyncio.run(scenario())
    assert heard == [False]
    assert len(hub.versions()) == before + 1  # one version for one change
    window.close()
    hub.close()


def test_forgetting_the_remote_goes_back_to_the_files(tmp_path: Path) -> None:
    remote = tmp_path / "published.json"
    write_remote(remote, False)
    files = flag_files(tmp_path / "data")
    hub = FlagService(files, remote=str(remote))
    assert hub.remote is not None
    hub.apply_remote(hub.remote.fetch())
    hub.close()
    command = FlagService(files)
    assert command.current.value("multi_tab") is False
    assert command.forget_remote() is True
    assert command.current.value("multi_tab") is True
    assert command.current.source("multi_tab") == "default"
    assert command.forget_remote() is False
    command.close()


def test_a_remote_forgotten_in_one_process_is_forgotten_in_the_others(tmp_path: Path) -> None:
    remote = tmp_path / "published.json"
    write_remote(remote, False)
    files = flag_files(tmp_path / "data")
    hub = FlagService(files, remote=str(remote))
    assert hub.remote is not None
    hub.apply_remote(hub.remote.fetch())
    hub.close()
    window = FlagService(files)
    command = FlagService(files)
    assert window.current.value("multi_tab") is False
    assert command.forget_remote() is True
    window.refresh()
    assert window.current.value("multi_tab") is True
    assert window.current.version == command.current.version  # no version of its own
    window.close()
    command.close()
