"""The options page in real Chromium with the unpacked extension, against a real hub.

Covers what unit tests of lib/settings.js cannot: the pairing link's fragment is read and then
removed from the address, errors reach the form's accessible markup, settings land in
chrome.storage.local, and "Test connection" really completes a hello with `novelgen serve`.
Skipped where Playwright or /usr/bin/chromium is missing (never downloads a browser).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.chromium import CHROMIUM, CHROMIUM_FLAGS, HEADLESS_NEW, extension_flags

playwright_sync = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "extension"
EXTENSION_ID = "jiehgpegehofiljbeepelopkoiliedji"
OPTIONS = f"chrome-extension://{EXTENSION_ID}/options/options.html"
TIMEOUT = 60

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`novelgen serve` on a free port, with its token."""
    data = tmp_path_factory.mktemp("hub") / "data"
    base = [sys.executable, "-m", "novelgen_desktop", "--data-dir", str(data)]
    token = subprocess.run(
        [*base, "pair", "--show-token"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    ready = data.parent / "ready.json"
    proc = subprocess.Popen(
        [*base, "serve", "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready.exists():
            assert proc.poll() is None, "novelgen serve exited"
            assert time.monotonic() < deadline, "novelgen serve never became ready"
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        yield {"url": f"ws://127.0.0.1:{info['port']}/", "token": token}
    finally:
        proc.kill()
        proc.wait(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("profile")
    with playwright_sync.sync_playwright() as playwright:
        ctx = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                HEADLESS_NEW,
                *CHROMIUM_FLAGS,
                *extension_flags(EXTENSION),
            ],
        )
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A fresh options page over empty extension storage."""
    blank = context.new_page()
    blank.goto(OPTIONS)
    blank.wait_for_selector("#hubUrl")
    blank.evaluate("async () => { await chrome.storage.local.clear(); }")
    blank.close()
    new = context.new_page()
    yield new
    new.close()


def wait_until(page: Any, predicate: str, timeout: float = 15.0) -> None:
    """Poll a JS expression with page.evaluate: wait_for_function compiles its predicate with
    eval, which an extension page's CSP (script-src 'self') forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({predicate})"):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.05)


def stored_settings(page: Any) -> Any:
    return page.evaluate("async () => (await chrome.storage.local.get('settings')).settings")


def test_pairing_link_prefills_saves_and_leaves_no_token_in_the_url(
    page: Any, hub: dict[str, Any]
) -> None:
    page.goto(f"{OPTIONS}#hub={hub['url']}&token={hub['token']}")
    page.wait_for_selector("#pair-banner:not([hidden])")
    assert page.evaluate("location.hash") == ""
    assert hub["token"] not in page.evaluate("location.href")
    assert page.input_value("#hubUrl") == hub["url"]
    assert page.input_value("#token") == hub["token"]
    banner_token = page.text_content("#pair-token")
    assert hub["token"] not in banner_token  # masked
    assert stored_settings(page) is None, "nothing is saved before the user agrees"
    page.click("#pair-accept")
    page.wait_for_selector("#pair-banner", state="hidden")
    saved = stored_settings(page)
    assert saved["hubUrl"] == hub["url"]
    assert saved["token"] == hub["token"]
    assert saved["tabs"] == 1 and saved["chatMode"] == "per_task"


def test_dismissing_the_pairing_link_saves_nothing(page: Any, hub: dict[str, Any]) -> None:
    page.goto(f"{OPTIONS}#hub={hub['url']}&token={hub['token']}")
    page.click("#pair-dismiss")
    assert stored_settings(page) is None
    assert page.input_value("#token") == ""


def test_invalid_values_are_reported_on_the_fields(page: Any) -> None:
    page.goto(OPTIONS)
    page.fill("#hubUrl", "http://127.0.0.1:8765/")
    page.fill("#token", "short")
    page.fill("#tabs", "12")
    page.click("#save")
    page.wait_for_selector("#error-summary:not([hidden])")
    for field in ("hubUrl", "token", "tabs"):
        assert page.get_attribute(f"#{field}", "aria-invalid") == "true", field
        assert page.is_visible(f"#{field}-error"), field
    assert page.get_attribute("#accountId", "aria-invalid") is None
    assert page.evaluate("document.activeElement.id") == "error-summary"
    assert "Not saved" in page.text_content("#form-status")
    assert stored_settings(page) is None


def test_unencrypted_remote_hub_needs_the_checkbox(page: Any) -> None:
    page.goto(OPTIONS)
    assert page.is_hidden("#allowUnencrypted-field")
    page.fill("#hubUrl", "ws://192.168.1.20:8765/")
    assert page.is_visible("#allowUnencrypted-field")
    page.fill("#token", "a" * 43)
    page.click("#save")
    page.wait_for_selector("#hubUrl-error:not([hidden])")
    assert "unencrypted" in page.text_content("#hubUrl-error")
    page.check("#allowUnencrypted")
    page.click("#save")
    wait_until(page, "document.getElementById('form-status').textContent.startsWith('Saved')")
    assert stored_settings(page)["allowUnencrypted"] is True


def test_token_toggle(page: Any) -> None:
    page.goto(OPTIONS)
    assert page.get_attribute("#token", "type") == "password"
    page.click("#token-toggle")
    assert page.get_attribute("#token", "type") == "text"
    assert page.get_attribute("#token-toggle", "aria-pressed") == "true"
    page.keyboard.press("Enter")  # the button has focus: keyboard toggles it back
    assert page.get_attribute("#token", "type") == "password"


def test_test_connection_against_a_real_hub(page: Any, hub: dict[str, Any]) -> None:
    page.goto(OPTIONS)
    page.fill("#hubUrl", hub["url"])
    page.fill("#token", hub["token"])
    page.click("#test-connection")
    wait_until(page, "document.getElementById('form-status').dataset.kind !== 'info'")
    assert "accepted the token" in page.text_content("#form-status")

    page.fill("#token", "x" * 43)
    page.click("#test-connection")
    wait_until(page, "document.getElementById('form-status').dataset.kind === 'error'")
    assert "refused the token" in page.text_content("#form-status")


def test_test_connection_with_no_hub(page: Any) -> None:
    page.goto(OPTIONS)
    page.fill("#hubUrl", "ws://127.0.0.1:9/")  # discard port: nothing listens
    page.fill("#token", "a" * 43)
    page.click("#test-connection")
    wait_until(page, "document.getElementById('form-status').dataset.kind === 'error'")
    assert "Could not reach the hub" in page.text_content("#form-status")


def test_status_and_self_test_follow_storage(page: Any) -> None:
    page.goto(OPTIONS)
    page.wait_for_selector("#hubUrl")
    # The real service worker publishes its own status on every change of its connections
    # (earlier tests paired it with hubs that are gone, so it keeps retrying): unpair it and
    # let it publish "unpaired" once, so the status written below is not overwritten.
    page.evaluate(
        """async () => {
        await chrome.storage.local.set({settings: {}});
        await chrome.runtime.sendMessage({type: "ng.settingsChanged"});
    }"""
    )
    wait_until(page, "document.getElementById('status-badge').dataset.state === 'unpaired'")
    time.sleep(0.5)  # the worker's publish is throttled to 250 ms
    page.evaluate(
        """async () => {
        await chrome.storage.local.set({connection: {state: "connecting", hub: "ws://x/",
            detail: "", since: Date.now(), slots: []}});
        await chrome.storage.session.set({connection: {state: "connected", hub: "ws://x/",
            detail: "", since: Date.now(), slots: [{slot: 1, worker_id: "ext-a-1", tab_id: 7,
            health: "logged_out", busy: false, task_id: null}]}});
        await chrome.storage.local.set({selfTest: {ts: Date.now(), url: "https://chatgpt.com/",
            results: {composer: {matched: "#prompt-textarea", index: 0, count: 1},
                      send_button: {matched: null, index: -1, count: 0}}}});
    }"""
    )
    # storage.session wins over storage.local; changes arrive without a reload.
    wait_until(page, "document.getElementById('status-badge').dataset.state === 'connected'")
    assert "login required" in page.text_content("#slots-body")
    wait_until(page, "!document.getElementById('selftest-table').hidden")
    assert "1 of 2 found" in page.text_content("#selftest-meta")
    assert "not found" in page.text_content("#selftest-body")
