"""Hub + extension + imitation of chatgpt.com, in real Debian Chromium.

One :class:`BrowserRig` is one run: a job service and hub in this process (on the test's
event loop), the fake site in a thread, and Chromium (headless new mode, a fresh profile)
with the unpacked extension from ``extension/``, driven by Playwright only to configure the
extension and to stop its service worker through CDP. Everything else goes through the real
paths: the extension connects to the hub with the pairing token, opens its own tabs, and the
images land on disk through the job service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.service import JobService
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.server.pairing import SHIPPED_EXTENSION_ID
from tests.fixtures.chatgpt import FakeChatGPT
from tests.fixtures.chromium import CHROMIUM, CHROMIUM_FLAGS, extension_flags
from tests.server.server_testkit import TOKEN, JobClient, heartbeat_text, start_service_hub

REPO = Path(__file__).resolve().parents[2]
EXTENSION_DIR = REPO / "extension"

E2E_RUN_SETTINGS = RunSettings(
    policy=SchedulerPolicy(backoff_base=0.2, backoff_cap=1.0),
    fsync_files=False,
    reaper_interval=0.2,
    stop_grace=5.0,
    progress_interval=0.2,
    wait_for_workers=True,
)


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")


@dataclass
class BrowserRig:
    site: FakeChatGPT
    service: JobService
    hub: Hub
    hub_url: str
    data_dir: Path
    playwright: Any
    profile: Path
    extension: Path
    context: Any = None  # playwright BrowserContext
    cdp: Any = None  # a CDP session on a helper page, for ServiceWorker.*
    log: list[str] = field(default_factory=list)
    chromium_args: tuple[str, ...] = ()  # a test's own flags, after the usual ones

    async def launch(self) -> None:
        """Start Chromium on this rig's profile (again, after :meth:`quit_browser`)."""
        self.context = await self.playwright.chromium.launch_persistent_context(
            str(self.profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                *CHROMIUM_FLAGS,
                *self.site.chromium_args(),
                *extension_flags(self.extension),
                *self.chromium_args,
            ],
        )
        if not self.context.service_workers:
            await self.context.wait_for_event("serviceworker", timeout=15000)
        page = self.context.pages[0] if self.context.pages else await self.context.new_page()
        self.cdp = await self.context.new_cdp_session(page)
        await self.cdp.send("ServiceWorker.enable")

    async def quit_browser(self) -> None:
        """The author quits Chromium (the profile, with the extension's storage, stays)."""
        if self.context is not None:
            with contextlib.suppress(Exception):
                await self.context.close()
            self.context = None

    @property
    def worker(self) -> Any:
        """The extension's service worker as Playwright sees it (it follows restarts)."""
        return self.context.service_workers[0]

    async def evaluate(self, script: str, arg: Any = None) -> Any:
        """Run ``script`` in the service worker, waking it first if it was stopped."""
        for _ in range(50):
            workers = self.context.service_workers
            if workers:
                with contextlib.suppress(Exception):
                    return await workers[0].evaluate(script, arg)
            await asyncio.sleep(0.2)
        raise AssertionError("the extension's service worker is not running")

    async def configure(self, *, tabs: int = 1, chat_mode: str = "per_task") -> None:
        """Pair the extension with the hub, as the options page does, and restart it."""
        settings = {
            "hubUrl": self.hub_url,
            "token": TOKEN,
            "accountId": "profile-e2e",
            "tabs": tabs,
            "chatMode": chat_mode,
        }
        await self.evaluate(
            """async (s) => {
                await chrome.storage.local.set({settings: s});
                const orch = await ready;
                await orch.restart(await loadSettings(orch.store));
                return true;
            }""",
            settings,
        )

    async def stop_service_worker(self) -> None:
        """What MV3 does to an idle worker: stop it (its WebSockets close at once)."""
        await self.cdp.send("ServiceWorker.stopAllWorkers")

    def workers(self) -> list[Any]:
        return [w for w in self.hub.workers.values() if w.kind == "extension"]

    def connected(self) -> list[Any]:
        return [w for w in self.workers() if w.session is not None]

    async def wait_connected(self, n: int, timeout: float = 60.0) -> None:
        await wait_until(lambda: len(self.connected()) >= n, timeout, f"{n} extension worker(s)")

    async def extension_errors(self) -> dict[str, list[str]]:
        """What chrome://extensions shows for the extension: install warnings, manifest errors
        and uncaught runtime errors (an unhandled rejection in the service worker lands here).
        """
        page = await self.context.new_page()
        try:
            await page.goto(f"chrome://extensions/?id={SHIPPED_EXTENSION_ID}")
            info: dict[str, list[str]] = await page.evaluate(
                """(id) => new Promise((resolve) => chrome.developerPrivate.getExtensionInfo(
                    id, (i) => resolve({
                        warnings: i.installWarnings || [],
                        manifest: (i.manifestErrors || []).map((e) => e.message),
                        runtime: (i.runtimeErrors || []).map((e) => e.message),
                    })))""",
                SHIPPED_EXTENSION_ID,
            )
            return info
        finally:
            await page.close()

    async def extension_status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.evaluate(
            "async () => { const o = await ready; return {status: o.connectionStatus()}; }"
        )
        return result


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def browser_rig(
    tmp_path: Path,
    site: FakeChatGPT,
    *,
    hub_options: dict[str, Any] | None = None,
    run: RunSettings = E2E_RUN_SETTINGS,
    chromium_args: tuple[str, ...] = (),
) -> AsyncIterator[BrowserRig]:
    from playwright.async_api import async_playwright

    require_chromium()
    data_dir = tmp_path / "hub-data"
    options = {"extension_ids": [SHIPPED_EXTENSION_ID], "heartbeat_interval": 15.0}
    options.update({"idle_timeout": 45.0, "auth_timeout": 5.0, **(hub_options or {})})
    service, hub, url = await start_service_hub(data_dir, run=run, **options)
    # A private copy: Chromium writes nothing into it, but a test may patch files in it.
    ext = tmp_path / "extension"
    shutil.copytree(EXTENSION_DIR, ext, ignore=shutil.ignore_patterns("tests", "node_modules"))
    try:
        async with async_playwright() as pw:
            rig = BrowserRig(
                site,
                service,
                hub,
                url,
                data_dir,
                pw,
                tmp_path / "profile",
                ext,
                chromium_args=chromium_args,
            )
            await rig.launch()
            try:
                yield rig
            finally:
                await rig.quit_browser()
    finally:
        await hub.stop()
        await service.stop()


async def run_job(
    rig: BrowserRig,
    prompts: list[str],
    *,
    timeout: float,
    during: Callable[[], Any] | None = None,
    states: tuple[str, ...] = ("finished", "incomplete", "cancelled"),
) -> m.JobProgress:
    """Submit ``prompts`` as one job and wait for it to end; ``during`` runs alongside."""
    async with JobClient.connect(rig.hub_url) as client:
        submitted = await client.submit("e2e", prompts)
        await client.subscribe(submitted.job_id, interval=0.5)
        sides = [asyncio.create_task(keep_alive(client))]
        if during is not None:
            sides.append(asyncio.create_task(during()))
        try:
            final = await client.progress_until(submitted.job_id, states, timeout=timeout)
        finally:
            for side in sides:
                side.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await side
        return final


async def keep_alive(client: JobClient) -> None:
    """A client must send a data message every < 20 s too, or the hub drops it after 45 s."""
    while True:
        await asyncio.sleep(10)
        await client.ws.send(heartbeat_text())


def job_outputs(data_dir: Path, job_id: str) -> dict[str, Any]:
    from benchmarks.loadtest.harness import inspect_job

    return inspect_job(data_dir, job_id)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
