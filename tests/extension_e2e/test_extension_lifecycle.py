"""The extension's life around the work: its tabs, its keep-alive alarm, a browser that is
quit mid-generation, and a hub that shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

from tests.extension_e2e.rig import BrowserRig, browser_rig, dump, job_outputs, run_job, wait_until
from tests.extension_e2e.test_extension_run import _assert_images_match_site
from tests.fixtures.chatgpt import Behaviour, FakeChatGPT

TABS_OF_THE_EXTENSION = """async () => {
    const orch = await ready;
    const ids = [...orch.slots.values()].map((s) => s.tabId).filter((id) => id != null);
    return Promise.all(ids.map((id) => chrome.tabs.get(id)));
}"""


async def tabs_ready(rig: BrowserRig, n: int, timeout: float = 30.0) -> dict[str, Any]:
    """The extension's status once ``n`` slots have a loaded tab (tabs open 2 s apart, after
    the slots' connections)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status: dict[str, Any] = (await rig.extension_status())["status"]
        slots = status["slots"]
        if len(slots) >= n and all(s["health"] == "ok" and s["tab_id"] for s in slots):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{n} tabs not ready: {dump(status)}")
        await asyncio.sleep(0.2)


def test_tabs_are_pinned_kept_from_discarding_opened_apart_and_the_alarm_is_kept(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=3)
                await rig.wait_connected(3, timeout=60)
                status = await tabs_ready(rig, 3)
                tabs = await rig.evaluate(TABS_OF_THE_EXTENSION)
                assert len(tabs) == 3, dump(tabs)
                assert all(t["pinned"] and not t["autoDiscardable"] for t in tabs), dump(tabs)
                assert all(t["url"].startswith("https://chatgpt.com/") for t in tabs)
                opened = sorted(s["tab_opened_at"] for s in status["slots"])
                gaps = [b - a for a, b in itertools.pairwise(opened)]
                assert all(gap >= 1900 for gap in gaps), gaps  # 2 s apart (ms)

                # The toolbar badge shows the connected tabs without opening anything.
                for _ in range(20):
                    badge = await rig.evaluate("() => chrome.action.getBadgeText({})")
                    if badge == "3":
                        break
                    await asyncio.sleep(0.25)
                assert badge == "3", badge

                # The health check (every 30 s on the alarm; run here at once) reports each
                # tab's memory to the hub.
                def memory_reported() -> bool:
                    return all(
                        w.last_status is not None and (w.last_status.memory_bytes or 0) > 0
                        for w in rig.connected()
                    )

                for _ in range(10):
                    await rig.evaluate("async () => (await ready).checkHealth()")
                    with contextlib.suppress(AssertionError):
                        await wait_until(memory_reported, 3, "memory")
                        break
                assert memory_reported(), [w.last_status for w in rig.connected()]

                alarm = await rig.evaluate("() => chrome.alarms.get('novelgen-keepalive')")
                assert alarm["periodInMinutes"] >= 0.5, alarm
                await rig.stop_service_worker()
                await asyncio.sleep(1)
                # A restarted worker must not re-create (and so postpone) the alarm: its
                # schedule stays on the same 30 s grid (it may have fired meanwhile).
                again = await rig.evaluate("() => chrome.alarms.get('novelgen-keepalive')")
                shift = (again["scheduledTime"] - alarm["scheduledTime"]) % 30000
                assert min(shift, 30000 - shift) < 5, (alarm, again)

    asyncio.run(scenario())


def test_quitting_the_browser_mid_generation_resumes_without_sending_again(
    tmp_path: Path,
) -> None:
    """The prompt was sent and the image is being drawn when the author quits Chromium. On the
    next start the extension finds its in-flight record (storage.local/IndexedDB), tells the
    hub it still holds the attempt, reopens the conversation and takes the image there: the
    prompt is never sent twice."""

    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            site.add_rule("LONG", Behaviour.image(delay=8.0))
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=1)
                await rig.wait_connected(1, timeout=60)

                async def quit_and_come_back() -> None:
                    await wait_until(lambda: bool(site.requests_for("LONG")), 60, "the send")
                    await asyncio.sleep(1.5)  # the conversation URL is known by now
                    await rig.quit_browser()
                    await asyncio.sleep(2)
                    await rig.launch()

                final = await run_job(
                    rig, ["LONG night over the harbour"], timeout=120, during=quit_and_come_back
                )
                report = job_outputs(rig.data_dir, final.job_id)
                assert final.state == "finished" and report["done"] == 1, dump(report)
                sent = Counter(r.prompt for r in site.requests if r.action == "send")
                assert sent == {"LONG night over the harbour": 1}, sent
                _assert_images_match_site(rig, final.job_id)
                assert report["attempts"] == 1, dump(report)  # held across the restart

    asyncio.run(scenario())


def test_the_hub_shutting_down_closes_the_tabs_and_the_extension_waits_for_it(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=2)
                await rig.wait_connected(2, timeout=60)
                await tabs_ready(rig, 2)
                assert len(await rig.evaluate(TABS_OF_THE_EXTENSION)) == 2
                await rig.hub.stop()  # bye shutdown to every worker

                async def tab_count() -> int:
                    tabs = await rig.evaluate(
                        "() => chrome.tabs.query({url: 'https://chatgpt.com/*'})"
                    )
                    return len(tabs)

                deadline = asyncio.get_running_loop().time() + 20
                while await tab_count() and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.3)
                assert await tab_count() == 0
                status = (await rig.extension_status())["status"]
                assert status["state"] in {"connecting", "disconnected"}, dump(status)

    asyncio.run(scenario())
