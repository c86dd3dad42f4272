"""The single-tab fallback (issue 9) end to end: hub + extension + imitation of chatgpt.com in
real Chromium.

The browser runs 3 tabs and a job is under way; the hub sends ``configure`` with the flag
``multi_tab: false``. The extension closes two tabs — a tab with an attempt in hand first
finishes it and delivers its image — and the rest of the job runs on the one tab left, every
task done exactly once, every prompt sent to ChatGPT once. ``multi_tab: true`` then brings
the three tabs back.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

from novelgen_desktop.flags.document import FlagSetting
from novelgen_desktop.flags.service import open_flags
from novelgen_desktop.server.flag_wiring import FlagWiring
from tests.extension_e2e.rig import BrowserRig, browser_rig, dump, job_outputs, run_job, wait_until
from tests.fixtures.chatgpt import Behaviour, FakeChatGPT
from tests.integration.helpers import assert_job_complete_and_consistent

PROMPTS = [
    f"Page {i // 4 + 1}, panel {i % 4 + 1}: the lighthouse in fog, scene {i}" for i in range(9)
]


def follow_flags(rig: BrowserRig) -> FlagWiring:
    """The hub's flag system, as ``novelgen serve`` wires it: the job's runner reads the set
    (the hub's own single-tab rule) and the browsers hear every change in ``configure``."""
    flags = open_flags(rig.data_dir, environ={})
    rig.service.flags = flags  # before the job starts: its runner reads this set
    wiring = FlagWiring(flags, rig.service, hub=rig.hub)
    wiring.start()
    return wiring


async def send_flags(wiring: FlagWiring, flags: dict[str, bool]) -> None:
    """As ``novelgen flags set NAME on|off`` does (the running hub follows the file)."""
    for name, value in flags.items():
        wiring.flags.set_local(name, FlagSetting(value=value))
    await asyncio.sleep(0)  # the configure goes out from a task of its own


def chatgpt_pages(rig: BrowserRig) -> list[Any]:
    """The ChatGPT tabs open in the browser (Playwright sees every page of the profile)."""
    return [p for p in rig.context.pages if p.url.startswith("https://chatgpt.com/")]


def attempts(rig: BrowserRig, job_id: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(rig.data_dir / "novelgen.sqlite")) as conn:
        return conn.execute(
            "SELECT a.task_id, a.attempt, a.worker_id, a.outcome, a.error_kind, a.started_at, "
            "a.ended_at FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ? "
            "ORDER BY a.started_at",
            (job_id,),
        ).fetchall()


def test_multi_tab_off_falls_back_to_one_tab_mid_job_and_on_again_reopens_three(
    tmp_path: Path,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=1.5)) as site:
            async with browser_rig(tmp_path, site) as rig:
                wiring = follow_flags(rig)
                await rig.configure(tabs=3)
                await rig.wait_connected(3, timeout=60)
                await wait_until(lambda: len(chatgpt_pages(rig)) == 3, 30, "3 ChatGPT tabs")
                started = time.monotonic()

                async def fall_back() -> None:
                    # Mid-job: the first round is done and the tabs are on the next prompts.
                    await wait_until(
                        lambda: sum(r.action == "send" for r in site.requests) >= 4,
                        60,
                        "4 prompts sent",
                    )
                    status = (await rig.extension_status())["status"]
                    seen["busy_at_switch"] = {
                        s["worker_id"]: s["task_id"] for s in status["slots"] if s["busy"]
                    }
                    seen["switched_at"] = time.time()
                    await send_flags(wiring, {"multi_tab": False})
                    await wait_until(
                        lambda: len(rig.connected()) == 1 and len(chatgpt_pages(rig)) == 1,
                        30,
                        "one worker connection and one ChatGPT tab",
                    )
                    seen["single_at"] = time.time()
                    seen["single_worker"] = rig.connected()[0].worker_id
                    status = (await rig.extension_status())["status"]
                    seen["slots_after"] = [s["worker_id"] for s in status["slots"]]
                    seen["flags_after"] = status["flags"]

                final = await run_job(rig, PROMPTS, timeout=120, during=fall_back)
                seen["job_seconds"] = time.monotonic() - started
                report = job_outputs(rig.data_dir, final.job_id)
                assert final.state == "finished", dump(report)
                assert "single_at" in seen, "the job ended before the fallback was seen"

                # Still one tab and one connection at the end of the job.
                assert len(chatgpt_pages(rig)) == 1
                assert [w.worker_id for w in rig.connected()] == [seen["single_worker"]]
                assert seen["slots_after"] == [seen["single_worker"]]
                assert seen["flags_after"]["multi_tab"] is False

                # Nothing lost, nothing twice: one done attempt and one file per task, and
                # every prompt reached ChatGPT exactly once (no paid attempt thrown away).
                assert_job_complete_and_consistent(rig.data_dir, final.job_id, len(PROMPTS))
                sent = Counter(r.prompt for r in site.requests if r.action == "send")
                assert all(sent[p] == 1 for p in PROMPTS), {p: sent[p] for p in PROMPTS}
                rows = attempts(rig, final.job_id)
                assert all(row[3] == "done" for row in rows), dump(rows)

                # A tab busy at the switch (not the one kept) finished its attempt first.
                others_busy = {
                    w: t for w, t in seen["busy_at_switch"].items() if w != seen["single_worker"]
                }
                assert others_busy, seen
                finished_by_others = {
                    (str(row[0]), row[2])
                    for row in rows
                    if row[2] != seen["single_worker"] and row[6] >= seen["switched_at"]
                }
                assert {(t, w) for w, t in others_busy.items()} <= finished_by_others, (
                    seen,
                    dump(rows),
                )
                # Every attempt started after the switch went to the one tab left.
                after = [row for row in rows if row[5] > seen["switched_at"]]
                assert after, dump(rows)
                assert {row[2] for row in after} == {seen["single_worker"]}, dump(rows)

                # On again: the configured three tabs come back.
                await send_flags(wiring, {"multi_tab": True})
                await rig.wait_connected(3, timeout=30)
                await wait_until(lambda: len(chatgpt_pages(rig)) == 3, 30, "3 ChatGPT tabs again")
                errors = await rig.extension_errors()
                assert errors == {"warnings": [], "manifest": [], "runtime": []}, errors
                print(  # pytest -s
                    f"single-tab fallback: job {seen['job_seconds']:.1f} s, busy at the switch "
                    f"{seen['busy_at_switch']}, one tab after "
                    f"{seen['single_at'] - seen['switched_at']:.1f} s"
                )
                await wiring.stop()
                wiring.flags.close()

    asyncio.run(scenario())
