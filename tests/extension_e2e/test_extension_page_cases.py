"""The awkward parts of the ChatGPT page, end to end: two candidates, "Try again", the
compare-responses dialog inside one conversation per sequence, a Cloudflare challenge, and
settings pushed by the hub (tab count, a newer selector table)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

from novelgen_desktop.protocol.messages import ChatMode, Configure
from tests.extension_e2e.rig import BrowserRig, browser_rig, dump, job_outputs, run_job, wait_until
from tests.extension_e2e.test_extension_run import _assert_images_match_site, _tasks
from tests.fixtures.chatgpt import Behaviour, FakeChatGPT


def failed_attempts(rig: BrowserRig, job_id: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(rig.data_dir / "novelgen.sqlite")) as conn:
        return conn.execute(
            "SELECT a.task_id, a.attempt, a.worker_id, a.error_kind, a.error_message "
            "FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE t.job_id = ? AND a.outcome != 'done' ORDER BY a.started_at",
            (job_id,),
        ).fetchall()


def test_two_candidates_keep_the_first_and_try_again_recovers(tmp_path: Path) -> None:
    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            site.add_rule("TWO", Behaviour.two_candidates(delay=0.8))
            site.add_rule("FLAKY", Behaviour.error_try_again(failures=1), times=1)
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=1)
                await rig.wait_connected(1, timeout=60)
                final = await run_job(rig, ["TWO herons", "FLAKY lantern"], timeout=120)
                report = job_outputs(rig.data_dir, final.job_id)
                assert final.state == "finished" and report["done"] == 2, dump(report)
                two = site.requests_for("TWO")
                sent_twice = [(r.seq, r.action, r.page_id, r.picks, r.time) for r in two]
                assert len(two) == 1 and two[0].picks == [0], (
                    sent_twice,
                    failed_attempts(rig, final.job_id),
                )
                first = site.image_sha256[two[0].file_ids[0]]
                task = next(t for t in _tasks(rig.data_dir, final.job_id) if "TWO" in t[1])
                assert task[5] == first, "the saved image is not the first candidate"
                flaky = site.requests_for("FLAKY")
                # One send, one "Try again" in the page: no second prompt paid for.
                assert [r.action for r in flaky] == ["send", "retry"], flaky
                _assert_images_match_site(rig, final.job_id)

    asyncio.run(scenario())


def test_per_sequence_chats_share_a_conversation_and_dismiss_the_compare_dialog(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        with FakeChatGPT(Behaviour.compare_dialog(delay=0.5, dialog_after=0.2)) as site:
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=1, chat_mode="per_sequence")
                await rig.wait_connected(1, timeout=60)
                prompts = ["first panel of the page", "second panel", "third panel"]
                final = await run_job(rig, prompts, timeout=120)
                report = job_outputs(rig.data_dir, final.job_id)
                assert final.state == "finished" and report["done"] == 3, dump(report)
                conversations = {r.conversation_id for r in site.requests}
                # Inline prompts have no chapter/page: one sequence, one conversation.
                assert len(conversations) == 1, conversations
                dismissed = [r.dialog_dismissed for r in site.requests[:-1]]
                assert all(dismissed), [(r.prompt, r.dialog_dismissed) for r in site.requests]
                _assert_images_match_site(rig, final.job_id)

    asyncio.run(scenario())


def test_a_cloudflare_challenge_marks_the_tab_unresponsive(tmp_path: Path) -> None:
    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            site.set_mode("cloudflare")
            async with browser_rig(tmp_path, site) as rig:
                await rig.configure(tabs=1)
                await rig.wait_connected(1, timeout=60)

                def unresponsive() -> bool:
                    return any(
                        w.last_status is not None and w.last_status.tab_health == "unresponsive"
                        for w in rig.workers()
                    )

                await wait_until(unresponsive, 60, "status unresponsive from the extension")
                status = (await rig.extension_status())["status"]
                assert status["slots"][0]["health"] == "unresponsive", dump(status)
                # The challenge clears: a reload brings the tab back to work.
                site.set_mode("normal")
                tab = status["slots"][0]["tab_id"]
                await rig.evaluate("(id) => chrome.tabs.reload(id)", tab)
                final = await run_job(rig, ["after the challenge"], timeout=90)
                assert final.state == "finished"

    asyncio.run(scenario())


def test_the_hub_sets_the_tab_count_and_pushes_a_newer_selector_table(tmp_path: Path) -> None:
    """`novelgen serve --tabs 2 --selectors FILE`: the extension (set to 1 tab) opens a second
    tab, and its content scripts use the pushed table (seen through the self-test)."""
    table = {
        "version": 50,
        "keys": {
            "composer": ["#no-such-composer", '#prompt-textarea[contenteditable="true"]'],
        },
    }
    config = Configure(tabs=2, chat_mode=ChatMode.PER_TASK, selector_table=json.dumps(table))

    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            async with browser_rig(tmp_path, site, hub_options={"browser_config": config}) as rig:
                await rig.configure(tabs=1)
                await rig.wait_connected(2, timeout=60)
                final = await run_job(rig, [f"panel {i}" for i in range(4)], timeout=120)
                assert final.state == "finished", dump(
                    [job_outputs(rig.data_dir, final.job_id), failed_attempts(rig, final.job_id)]
                )
                assert {w.worker_id for w in rig.workers()} == {
                    stat.worker_id for stat in final.workers
                }, "both tabs should have worked"
                stored = await rig.evaluate(
                    "async () => (await chrome.storage.local.get('selectorTable')).selectorTable"
                )
                assert stored["version"] == 50
                result = await rig.evaluate("async () => (await ready).selfTest()")
                composer = result["results"]["composer"]
                # The pushed table's first entry matches nothing; its second does.
                assert composer["index"] == 1, dump(result)

    asyncio.run(scenario())


def test_a_selector_table_the_extension_cannot_use_is_refused_and_reported(
    tmp_path: Path,
) -> None:
    """Python's regex syntax is not JavaScript's: `(?P<name>…)` passes the hub's check but
    not the extension's. The extension keeps its table, keeps working, and the hub's worker
    status says why."""
    table = {"version": 60, "keys": {"tryAgain": [{"css": "button", "text": "(?P<t>Try again)"}]}}
    config = Configure(selector_table=json.dumps(table))

    async def scenario() -> None:
        with FakeChatGPT(Behaviour.image(delay=0.5)) as site:
            async with browser_rig(tmp_path, site, hub_options={"browser_config": config}) as rig:
                await rig.configure(tabs=1)
                await rig.wait_connected(1, timeout=60)

                def reported() -> bool:
                    return any(
                        w.last_status is not None
                        and "selector table version 60 refused" in (w.last_status.detail or "")
                        and "keys.tryAgain[0]" in (w.last_status.detail or "")
                        for w in rig.workers()
                    )

                await wait_until(reported, 30, "the refusal in the worker's status")
                stored = await rig.evaluate(
                    "async () => (await chrome.storage.local.get('selectorTable')).selectorTable"
                )
                assert stored is None
                final = await run_job(rig, ["still works"], timeout=60)
                assert final.state == "finished"

    asyncio.run(scenario())
