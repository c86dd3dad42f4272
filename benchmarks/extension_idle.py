"""Idle survival of the extension's service worker, with no DevTools attached to it.

An MV3 service worker is stopped by Chrome after 30 s without extension events; the extension
relies on its WebSocket traffic with the hub (Chrome 116+ counts it as activity) to stay
alive while it has nothing to do. A test that drives the worker through Playwright or any CDP
session attached to it proves nothing here: an attached debugger keeps a worker alive by
itself. So this run uses plain Chromium and the real ``novelgen serve``, and:

* pairs the extension the way a user does, through the options page's one-click pairing link
  (a raw CDP connection to the *browser* endpoint opens that page, attaches to *that page
  only*, clicks "Pair", checks the saved settings, closes the page and disconnects; it checks
  with ``Target.getTargets`` that the service worker was never attached);
* then watches from the hub's side only: the hub's INFO log lines
  ``worker W connected (instance I, …)`` / ``worker W disconnected (…, close code C)`` /
  ``worker W restarted (instance I)`` (read from the ``serve`` process's stderr), plus a
  protocol client that sends ``list_jobs`` every sample to prove the hub itself is live;
* samples every ``--interval`` seconds for ``--minutes``; success is one instance id per
  slot (worker id), connected at every sample, with zero disconnects and zero restarts.

Chromium's process-tree memory (USS and PSS, summed) is taken when the slots have connected
and at the end. Run: ``.venv/bin/python -m benchmarks.extension_idle [--minutes 10.5]
[--tabs 1] [--json out.json]`` from the repository root (it imports the fake chatgpt.com from
``tests``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.common import machine
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.pairing import SHIPPED_EXTENSION_ID
from tests.fixtures.chatgpt import FakeChatGPT
from tests.fixtures.chromium import CHROMIUM, CHROMIUM_FLAGS, HEADLESS_NEW, extension_flags

REPO = Path(__file__).resolve().parents[1]
EXTENSION_DIR = REPO / "extension"

# The hub's log lines this run depends on (novelgen_desktop/server/hub.py).
_CONNECTED = re.compile(r"worker (\S+) connected \(instance (\S+), session (\S+)\)")
_DISCONNECTED = re.compile(
    r"worker (\S+) disconnected \(instance (\S+), session (\S+), close code (\S+)\)"
)
_RESTARTED = re.compile(r"worker (\S+) restarted \(instance (\S+)\)")
_NOTEWORTHY = re.compile(r" (WARNING|ERROR|CRITICAL) ")

Log = Callable[[str], None]


def _stderr_log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Slot:
    """What the hub's log says about one worker id (one ChatGPT tab of the extension)."""

    worker_id: str
    instances: list[str] = field(default_factory=list)
    connected: bool = False
    connects: int = 0
    disconnects: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0


@dataclass
class HubWatch:
    """Parses the hub's stderr as it arrives; the only view of the workers this run uses."""

    started: float = field(default_factory=time.monotonic)
    slots: dict[str, Slot] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    noteworthy: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)

    def feed(self, line: str) -> None:
        self.tail = [*self.tail[-199:], line]
        at = round(time.monotonic() - self.started, 1)
        if match := _CONNECTED.search(line):
            slot = self._slot(match[1])
            slot.connected = True
            slot.connects += 1
            if match[2] not in slot.instances:
                slot.instances.append(match[2])
            self.events.append({"t": at, "event": "connected", "line": line})
        elif match := _DISCONNECTED.search(line):
            slot = self._slot(match[1])
            slot.connected = False
            slot.disconnects.append({"t": at, "instance": match[2], "close_code": match[4]})
            self.events.append({"t": at, "event": "disconnected", "line": line})
        elif match := _RESTARTED.search(line):
            self._slot(match[1]).restarts += 1
            self.events.append({"t": at, "event": "restarted", "line": line})
        elif _NOTEWORTHY.search(line):
            self.noteworthy.append(line)

    def _slot(self, worker_id: str) -> Slot:
        return self.slots.setdefault(worker_id, Slot(worker_id))

    def connected(self) -> list[str]:
        return sorted(w for w, s in self.slots.items() if s.connected)


# --- processes ------------------------------------------------------------------------------


async def _pump(stream: asyncio.StreamReader, watch: HubWatch) -> None:
    while line := await stream.readline():
        watch.feed(line.decode("utf-8", "replace").rstrip())


async def _wait_for_file(path: Path, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            text = path.read_text(encoding="utf-8")
            if text.strip():
                return text
        await asyncio.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what} ({path})")


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def chromium_memory(pid: int) -> dict[str, Any]:
    """USS and PSS summed over Chromium's process tree (RSS would count shared pages many
    times over in a multi-process browser)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {"processes": 0}
    uss = pss = rss = 0
    counted = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        counted += 1
        uss += info.uss
        pss += getattr(info, "pss", 0)
        rss += info.rss
    mib = 2**20
    return {
        "processes": counted,
        "uss_mib": round(uss / mib, 1),
        "pss_mib": round(pss / mib, 1),
        "rss_sum_mib": round(rss / mib, 1),
    }


# --- pairing through the options page, over a raw CDP connection ----------------------------


class Cdp:
    """The minimum of the Chrome DevTools Protocol: numbered commands, flat sessions."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        ident = next(self._ids)
        frame: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            frame["sessionId"] = session
        await self.ws.send(json.dumps(frame))
        while True:  # events (and nothing else, one command at a time) come in between
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"CDP {method} failed: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result


_PAIR_SCRIPT = """(async (tabs) => {
  const $ = (id) => document.getElementById(id);
  const shown = () => $("pair-banner") !== null && !$("pair-banner").hidden;
  for (let i = 0; i < 100 && !shown(); i++) {  // the page may still be loading
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!shown()) return {error: "the pairing banner never appeared"};
  $("tabs").value = String(tabs);
  $("pair-accept").click();
  for (let i = 0; i < 100; i++) {
    const saved = (await chrome.storage.local.get("settings")).settings;
    if (saved && saved.token) {
      return {hubUrl: saved.hubUrl, tabs: saved.tabs, tokenLength: saved.token.length,
              token: saved.token, status: $("form-status").textContent};
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {error: "no settings saved", status: $("form-status").textContent};
})"""


async def pair_via_options_page(
    profile: Path, hub_url: str, token: str, tabs: int, log: Log
) -> dict[str, Any]:
    """Open the pairing link in a new tab, click "Pair", close the tab, disconnect.

    Attaches to the options page only; the service worker is listed (to wait for the
    extension to load, and to check afterwards that nothing is attached to it) but never
    attached to.
    """
    text = await _wait_for_file(profile / "DevToolsActivePort", 30, "Chromium's DevTools port")
    port, path = text.split()[:2]
    ext_origin = f"chrome-extension://{SHIPPED_EXTENSION_ID}/"
    link = (
        f"{ext_origin}options/options.html#hub={quote(hub_url, safe='')}"
        f"&token={quote(token, safe='')}"
    )
    async with connect(f"ws://127.0.0.1:{port}{path}", max_size=2**24) as ws:
        cdp = Cdp(ws)
        deadline = time.monotonic() + 30
        while True:  # the extension loads a moment after the browser starts
            infos = (await cdp.send("Target.getTargets"))["targetInfos"]
            if any(
                t["type"] == "service_worker" and t["url"].startswith(ext_origin) for t in infos
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the extension's service worker never appeared: {infos}")
            await asyncio.sleep(0.2)
        target = (await cdp.send("Target.createTarget", {"url": link}))["targetId"]
        session = (await cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True}))[
            "sessionId"
        ]
        for attempt in range(20):  # a new target starts on about:blank, then navigates
            try:
                reply = await cdp.send(
                    "Runtime.evaluate",
                    {
                        "expression": f"{_PAIR_SCRIPT}({tabs})",
                        "awaitPromise": True,
                        "returnByValue": True,
                    },
                    session,
                )
            except RuntimeError as exc:
                if "context was destroyed" not in str(exc) or attempt == 19:
                    raise
                await asyncio.sleep(0.25)
                continue
            if reply.get("result", {}).get("value") or attempt == 19:
                break
            await asyncio.sleep(0.25)  # evaluated in about:blank, before the navigation
        saved: dict[str, Any] = reply.get("result", {}).get("value") or {"error": str(reply)}
        await cdp.send("Target.detachFromTarget", {"sessionId": session})
        await cdp.send("Target.closeTarget", {"targetId": target})
        infos = (await cdp.send("Target.getTargets"))["targetInfos"]
    workers = [t for t in infos if t["type"] == "service_worker"]
    attached = [t for t in infos if t.get("attached")]
    result = {
        "hubUrl": saved.get("hubUrl"),
        "tabs": saved.get("tabs"),
        "status": saved.get("status"),
        "token_matches": saved.get("token") == token,
        "error": saved.get("error"),
        "attached_only_to": f"the options page (target {target})",
        "service_workers_seen": [{"url": t["url"], "attached": t.get("attached")} for t in workers],
        "attached_at_disconnect": [{"type": t["type"], "url": t["url"]} for t in attached],
    }
    log(f"paired through the options page: {json.dumps(result)}")
    if saved.get("error") or not result["token_matches"] or saved.get("tabs") != tabs:
        raise RuntimeError(f"pairing through the options page failed: {saved}")
    if any(t.get("attached") for t in workers):
        raise RuntimeError(f"a service worker is attached to a debugger: {workers}")
    return result


# --- the hub as a protocol client -------------------------------------------------------------


class HubClient:
    """A role-client connection: proves the hub answers while the workers sit idle (and,
    sending a data frame every sample, stays under the hub's client idle limit)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, url: str, token: str) -> HubClient:
        ws = await connect(url, max_size=2**24)
        hello = m.Hello(token=token, role=m.Role.CLIENT, versions=(1,), agent="extension_idle")
        await ws.send(m.encode(hello))
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"the hub refused the observer client: {welcome}")
        return cls(ws)

    async def list_jobs(self) -> int:
        request_id = f"idle-{next(self._ids)}"
        await self.ws.send(m.encode(m.ListJobs(request_id=request_id)))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if reply.get("type") == "jobs" and reply.get("re") == request_id:
                return len(reply.get("jobs", []))


# --- the run ----------------------------------------------------------------------------------


async def run_idle(
    minutes: float,
    tabs: int = 1,
    interval: float = 10.0,
    connect_timeout: float = 60.0,
    log: Log = _stderr_log,
) -> dict[str, Any]:
    """Start everything, pair, then watch the idle workers for ``minutes``; the report."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is not installed")
    root = Path(tempfile.mkdtemp(prefix="novelgen-idle-"))
    watch = HubWatch()
    procs: list[asyncio.subprocess.Process] = []
    pumps: list[asyncio.Task[None]] = []
    client: HubClient | None = None
    try:
        with FakeChatGPT() as site:
            env = dict(os.environ, NOVELGEN_DATA_DIR=str(root / "data"))
            ready = root / "ready.json"
            hub = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "novelgen_desktop",
                "serve",
                "--port",
                "0",
                "--ready-file",
                str(ready),
                "--log-level",
                "INFO",
                cwd=REPO,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            procs.append(hub)
            assert hub.stderr is not None
            pumps.append(asyncio.create_task(_pump(hub.stderr, watch)))
            info = json.loads(await _wait_for_file(ready, 30, "novelgen serve"))
            token = Path(info["token_file"]).read_text(encoding="utf-8").strip()
            hub_url = str(info["url"])
            log(f"hub at {hub_url} (pid {info['pid']})")

            ext = root / "extension"
            shutil.copytree(
                EXTENSION_DIR, ext, ignore=shutil.ignore_patterns("tests", "node_modules")
            )
            profile = root / "profile"
            chrome_log = (root / "chromium.log").open("wb")
            chromium = await asyncio.create_subprocess_exec(
                str(CHROMIUM),
                HEADLESS_NEW,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                *extension_flags(ext),
                "--remote-debugging-port=0",
                *site.chromium_args(),
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=chrome_log,
                stderr=chrome_log,
            )
            chrome_log.close()
            procs.append(chromium)
            log(f"chromium pid {chromium.pid}")

            pairing = await pair_via_options_page(profile, hub_url, token, tabs, log)
            deadline = time.monotonic() + connect_timeout
            while len(watch.connected()) < tabs:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {watch.connected()} of {tabs} slot(s) connected in "
                        f"{connect_timeout:g} s; hub log tail: {watch.tail[-20:]}"
                    )
                await asyncio.sleep(0.2)
            # Let the slots finish settling (a tab opening, a status) before the baseline.
            await asyncio.sleep(min(5.0, interval))
            baseline = {w: list(s.instances) for w, s in watch.slots.items()}
            connects0 = {w: s.connects for w, s in watch.slots.items()}
            events0 = len(watch.events)
            log(f"connected: {baseline}; idle for {minutes:g} min from now")

            client = await HubClient.open(hub_url, token)
            memory_start = chromium_memory(chromium.pid)
            start = watch.started = time.monotonic()  # event times from the idle start
            samples: list[dict[str, Any]] = []
            end = start + minutes * 60
            while True:
                now = time.monotonic()
                jobs = await client.list_jobs()
                sample = {
                    "t": round(now - start, 1),
                    "connected": watch.connected(),
                    "instances": {w: list(s.instances) for w, s in watch.slots.items()},
                    "disconnects": sum(len(s.disconnects) for s in watch.slots.values()),
                    "restarts": sum(s.restarts for s in watch.slots.values()),
                    "jobs": jobs,
                    "chromium_alive": chromium.returncode is None,
                }
                samples.append(sample)
                if len(samples) % 6 == 1:
                    log(f"sample {json.dumps(sample)}")
                if now >= end or chromium.returncode is not None:
                    break
                await asyncio.sleep(min(interval, max(0.0, end - time.monotonic())))
            duration = time.monotonic() - start
            memory_end = chromium_memory(chromium.pid)
            # Frozen before the teardown, whose own disconnects (1001) are not idle drops.
            final = copy.deepcopy(watch.slots)
            events_end = len(watch.events)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.ws.close()
        for proc in reversed(procs):
            await _terminate(proc)
        for pump in pumps:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        shutil.rmtree(root, ignore_errors=True)

    slots: dict[str, dict[str, Any]] = {
        w: {
            "instances": s.instances,
            "connects_during_idle": s.connects - connects0.get(w, 0),
            "disconnects": s.disconnects,
            "restarts": s.restarts,
        }
        for w, s in sorted(final.items())
    }
    problems: list[str] = []
    if len(slots) != tabs:
        problems.append(f"{len(slots)} worker id(s) seen, {tabs} expected")
    for worker_id, slot in slots.items():
        if len(slot["instances"]) != 1:
            problems.append(f"{worker_id}: instances {slot['instances']}")
        if slot["disconnects"] or slot["restarts"] or slot["connects_during_idle"]:
            problems.append(f"{worker_id}: dropped or reconnected while idle")
    short = [s["t"] for s in samples if len(s["connected"]) != tabs or not s["chromium_alive"]]
    if short:
        problems.append(f"not all slots connected at t = {short[:10]} s")
    if duration < minutes * 60 - 1:
        problems.append(f"ran {duration:.0f} s of the {minutes * 60:.0f} s asked")
    return {
        "ok": not problems,
        "problems": problems,
        "minutes_asked": minutes,
        "tabs": tabs,
        "idle_seconds": round(duration, 1),
        "samples": len(samples),
        "sample_interval_s": interval,
        "slots": slots,
        "baseline_instances": baseline,
        "events_during_idle": watch.events[events0:events_end],
        "events_at_teardown": watch.events[events_end:],
        "hub_warnings": watch.noteworthy[-50:],
        "chromium_memory_start": memory_start,
        "chromium_memory_end": memory_end,
        "pairing": pairing,
        "sample_log": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.5, help="idle time (default 10.5)")
    parser.add_argument("--tabs", type=int, default=1, help="slots (ChatGPT tabs), default 1")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report here")
    args = parser.parse_args()
    result = asyncio.run(run_idle(args.minutes, args.tabs, args.interval))
    report = {"benchmark": "extension_idle", "machine": machine(), "result": result}
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    compact = {**report, "result": {k: v for k, v in result.items() if k != "sample_log"}}
    print(json.dumps(compact, indent=1))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
