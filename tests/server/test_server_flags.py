"""Feature flags reach the browsers through the hub (``configure.flags``, docs/flags.md).

The extension obeys the flags the hub sends: a kill switch or a rollback changes what every
connected browser does without reinstalling anything. ``selector_updates`` off also makes the
hub withhold its pushed selector table, so a bad table is gone from every tab at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from server_testkit import make_hub, recv_message, running, worker_connection

from novelgen_desktop.engine.service import JobService
from novelgen_desktop.flags.document import FlagSetting
from novelgen_desktop.flags.service import open_flags
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.flag_wiring import FlagWiring

TABLE = '{"version":9,"keys":{"sendButton":["#composer-submit-button"]}}'
ALL_ON = {"multi_tab": True, "selector_updates": True, "reference_images": True}


async def next_configure(ws: object) -> m.Configure:
    message = await asyncio.wait_for(recv_message(ws), 5)  # type: ignore[arg-type]
    assert isinstance(message, m.Configure), message
    return message


def test_flag_changes_reach_every_browser_and_later_ones(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data").ensure()

    async def scenario() -> None:
        flags = open_flags(paths.root, environ={})
        service = JobService(paths, flags=flags)
        hub = make_hub(browser_config=m.Configure(tabs=3, selector_table=TABLE))
        wiring = FlagWiring(flags, service, hub=hub)
        wiring.start(poll=0.05)
        try:
            async with running(hub) as url, worker_connection(url, "tab-1") as one:
                first = await next_configure(one)
                assert first.flags == ALL_ON
                assert first.tabs == 3 and first.selector_table == TABLE

                # The kill switch for pushed selector tables: the table is withheld and the
                # extension told to go back to its own.
                flags.set_local("selector_updates", FlagSetting(value=False))
                off = await next_configure(one)
                assert off.flags == {**ALL_ON, "selector_updates": False}
                assert off.selector_table is None and off.tabs == 3

                # A rollback made by another process (`novelgen flags rollback`) arrives too.
                terminal = open_flags(paths.root, environ={})
                terminal.rollback()
                terminal.close()
                back = await next_configure(one)
                assert back.flags == ALL_ON and back.selector_table == TABLE

                flags.set_local("multi_tab", FlagSetting(value=False))
                single = await next_configure(one)
                assert single.flags == {**ALL_ON, "multi_tab": False}
                async with worker_connection(url, "tab-2") as two:  # a later browser
                    assert (await next_configure(two)).flags == {**ALL_ON, "multi_tab": False}
        finally:
            await wiring.stop()
            await hub.stop()
            flags.close()

    asyncio.run(scenario())


def test_a_flag_set_with_no_change_for_the_browser_sends_nothing(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data").ensure()

    async def scenario() -> None:
        flags = open_flags(paths.root, environ={})
        service = JobService(paths, flags=flags)
        hub = make_hub()
        wiring = FlagWiring(flags, service, hub=hub)
        wiring.start(poll=0.05)
        try:
            async with running(hub) as url, worker_connection(url, "tab-1") as one:
                assert (await next_configure(one)).flags == ALL_ON
                # chat_strategies is the hub's own business: the browsers hear nothing.
                flags.set_local("chat_strategies", FlagSetting(value=False))
                await asyncio.sleep(0.3)
                try:
                    extra = await asyncio.wait_for(recv_message(one), 0.5)
                except TimeoutError:
                    extra = None
                assert extra is None, extra
        finally:
            await wiring.stop()
            await hub.stop()
            flags.close()

    asyncio.run(scenario())
