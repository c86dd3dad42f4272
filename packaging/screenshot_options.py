"""Screenshot the extension's options page for docs/extension.md.

Loads the unpacked extension into Debian's Chromium (never a downloaded browser) through
Playwright, fills the form with plausible values, stores a made-up connection status and
self-test result, and writes ``docs/images/extension-options.png``.

Run: ``.venv/bin/python packaging/screenshot_options.py [--out FILE] [--dark]``.

The extension id is fixed by the manifest's ``key``, so the options page URL is known in
advance. If the service worker file does not exist yet, a temporary copy of extension/ with an
empty one is loaded instead (Chrome refuses an extension whose service worker is missing).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

# Run as a script from anywhere: the Chromium flags are shared with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.chromium import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    HEADLESS_NEW,
    extension_flags,
)

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "extension"
EXTENSION_ID = "jiehgpegehofiljbeepelopkoiliedji"
OPTIONS_URL = f"chrome-extension://{EXTENSION_ID}/options/options.html"
DEFAULT_OUT = ROOT / "docs" / "images" / "extension-options.png"
DEMO_TOKEN = "q3X9vJ2mK8wR5tY7uI0oP4aS6dF1gH3jL5zX7cV9bN2"  # docs/protocol.md's example

# A made-up status, in the shape the service worker writes (see options.js).
DEMO_STATE = """
async ([token]) => {
  const now = Date.now();
  const connection = {
    state: "connected", hub: "ws://127.0.0.1:8765/", detail: "", since: now - 7 * 60 * 1000,
    slots: [
      {slot: 1, worker_id: "ext-7f3a-1", tab_id: 1843211, connection: "open", health: "ok",
       busy: true, task_id: "4812", stage: "generating"},
      {slot: 2, worker_id: "ext-7f3a-2", tab_id: 1843214, connection: "open", health: "ok",
       busy: true, task_id: "4813", stage: "typing"},
      {slot: 3, worker_id: "ext-7f3a-3", tab_id: 1843217, connection: "open", health: "ok",
       busy: false, task_id: null},
    ],
  };
  const selfTest = {
    ts: now - 26 * 60 * 1000, url: "https://chatgpt.com/",
    results: {
      composer: {matched: "#prompt-textarea", index: 0, count: 1},
      send_button: {matched: "button[data-testid='send-button']", index: 0, count: 1},
      stop_button: {matched: "button[data-testid='stop-button']", index: 0, count: 0},
      generated_image: {matched: "img[alt^='Generated image']", index: 1, count: 2},
      login_button: {matched: null, index: -1, count: 0},
    },
  };
  await chrome.storage.local.set({
    settings: {hubUrl: "ws://127.0.0.1:8765/", token, accountId: "anna-plus", tabs: 3,
               chatMode: "per_task", allowUnencrypted: false},
    selfTest,
  });
  try {
    await chrome.storage.session.set({connection});
  } catch (e) {
    await chrome.storage.local.set({connection});
  }
}
"""


def _wait_until(page: Any, predicate: str, timeout: float = 15.0) -> None:
    """Poll with page.evaluate: wait_for_function compiles its predicate with eval, which the
    extension page's CSP (script-src 'self') forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({predicate})"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {predicate}")
        time.sleep(0.05)


def loadable_extension(workdir: Path) -> Path:
    """extension/ itself, or a copy with an empty service worker if it is not written yet."""
    if (EXTENSION / "background" / "service_worker.js").is_file():
        return EXTENSION
    copy = workdir / "extension"
    shutil.copytree(EXTENSION, copy, ignore=shutil.ignore_patterns("tests", "node_modules"))
    (copy / "background").mkdir(exist_ok=True)
    (copy / "background" / "service_worker.js").write_text("// placeholder\n", encoding="utf-8")
    return copy


def take(out: Path, dark: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="ng-shot-") as temp:
        workdir = Path(temp)
        extension = loadable_extension(workdir)
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(workdir / "profile"),
                executable_path=str(CHROMIUM),
                headless=True,
                color_scheme="dark" if dark else "light",
                viewport={"width": 900, "height": 900},
                device_scale_factor=1,
                args=[
                    HEADLESS_NEW,
                    *CHROMIUM_FLAGS,
                    *extension_flags(extension),
                ],
            )
            try:
                page = context.new_page()
                page.goto(OPTIONS_URL)
                page.wait_for_selector("#hubUrl")
                page.evaluate(DEMO_STATE, [DEMO_TOKEN])
                # The page follows storage.onChanged; reload anyway so the shot shows a fresh
                # load, as a user sees it (a live service worker may overwrite the status).
                page.reload()
                _wait_until(page, "document.getElementById('tabs').value === '3'")
                page.evaluate(DEMO_STATE, [DEMO_TOKEN])  # in case the service worker republished
                time.sleep(0.5)
                _wait_until(
                    page, "document.getElementById('status-badge').dataset.state === 'connected'"
                )
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), full_page=True)
            finally:
                context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the extension's options page.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG file to write")
    parser.add_argument("--dark", action="store_true", help="dark colour scheme")
    args = parser.parse_args(argv)
    take(args.out, args.dark)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
