"""Run a :class:`~benchmarks.loadtest.scenarios.Scenario` against the real command line.

``novelgen serve`` and each ``novelgen sim-worker`` group are child processes
(``subprocess.Popen``); the client runs in this process's event loop; a thread samples the
hub's RSS every 100 ms with psutil. When the client sees the job end, the hub is stopped with
SIGTERM (it must exit 0 and say ``bye`` to the workers, which must then exit 0 too), and the
store is read directly: SQLite for the tasks and attempts, the job's folder for image files
and ``manifest.jsonl``. Every process is killed in a ``finally`` and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

from benchmarks.common import machine, scratch
from benchmarks.loadtest.client import HubClient, JobWatch
from benchmarks.loadtest.scenarios import FAST_IMAGES, ZERO_LATENCY, Scenario

NOVELGEN = (sys.executable, "-m", "novelgen_desktop")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
WORKER_EXIT_TIMEOUT = 15.0
"""Seconds a worker connected at the hub's shutdown has to exit after its ``bye``."""
AWAY_EXIT_TIMEOUT = 3.0
"""The same, in scenarios where a worker may be away (disconnected) when the hub stops: it
never hears the ``bye`` and keeps reconnecting, as the contract says; it is then stopped with
SIGTERM, which must also end it with status 0."""
SAMPLE_INTERVAL = 0.1
TEMP_SUFFIX = ".tmp"
MANIFEST = "manifest.jsonl"

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- processes ------------------------------------------------------------------------------


class HubProcess:
    """``novelgen serve``: started, SIGKILLed and started again on the same data dir and port."""

    def __init__(self, data_dir: Path, logs: Path, options: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.logs = logs
        self.options = tuple(options)
        self.port = 0
        self.url = ""
        self.token_file = data_dir / "pairing-token"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[dict[str, Any]] = []
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def token(self) -> str:
        return self.token_file.read_text().strip()

    async def start(self) -> None:
        """Start ``serve`` (port 0 the first time, the same port after) and wait until its
        ready file says it listens."""
        number = len(self.starts) + 1
        ready = self.logs / f"hub-ready-{number}.json"
        ready.unlink(missing_ok=True)
        log_path = self.logs / f"hub-{number}.log"
        self._log = log_path.open("wb")
        command = [
            *NOVELGEN,
            "--data-dir",
            str(self.data_dir),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ready-file",
            str(ready),
            *self.options,
        ]
        started = time.monotonic()
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        info = await _wait_ready(self.proc, ready, log_path, READY_TIMEOUT)
        self.port = int(info["port"])
        self.url = str(info.get("url") or f"ws://127.0.0.1:{self.port}/")
        if info.get("token_file"):
            self.token_file = Path(info["token_file"])
        self.starts.append(
            {
                "pid": self.proc.pid,
                "ready_seconds": round(time.monotonic() - started, 3),
                "ended": None,
                "exit_code": None,
            }
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(timeout=10)
        self.starts[-1].update(ended="sigkill", exit_code=code)
        self._close_log()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then wait; SIGKILL (and return None) if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        code = await _wait_exit(self.proc, timeout)
        if code is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.starts[-1].update(ended="sigterm-timeout-killed", exit_code=None)
        else:
            self.starts[-1].update(ended="sigterm", exit_code=code)
        self._close_log()
        return code

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class WorkerProcess:
    """One ``novelgen sim-worker`` process (a group of simulated tabs)."""

    def __init__(self, index: int, count: int, options: Sequence[str], logs: Path) -> None:
        self.index = index
        self.count = count
        self.prefix = f"g{index}"
        self.options = tuple(options)
        self.log_path = logs / f"workers-{self.prefix}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self._log: IO[bytes] | None = None

    def start(self, url: str, token_file: Path, seed: int) -> None:
        self._log = self.log_path.open("wb")
        command = [
            *NOVELGEN,
            "sim-worker",
            "--url",
            url,
            "--token-file",
            str(token_file),
            "--count",
            str(self.count),
            "--id-prefix",
            self.prefix,
            "--seed",
            str(seed),
            *FAST_IMAGES,
            *ZERO_LATENCY,
            *self.options,
        ]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    async def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        self.exit_code = await _wait_exit(self.proc, timeout)
        return self.exit_code

    async def terminate(self, timeout: float) -> int | None:
        """SIGTERM (the tabs say ``bye``), then wait."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


async def _wait_ready(
    proc: subprocess.Popen[bytes], ready: Path, log_path: Path, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"serve exited with {proc.returncode} before it was ready:\n{_tail(log_path)}"
            )
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(ready.read_text())
            if isinstance(info, dict) and info.get("port"):
                return info
        await asyncio.sleep(0.02)
    raise TimeoutError(f"serve not ready after {timeout} s:\n{_tail(log_path)}")


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.02)
    return None


# -- sampling -------------------------------------------------------------------------------


class ProcessSampler(threading.Thread):
    """Samples the RSS and CPU time of the hub (whichever ``serve`` runs now) every
    ``interval`` seconds, and the CPU time of other processes (the workers)."""

    def __init__(self, interval: float = SAMPLE_INTERVAL) -> None:
        super().__init__(name="loadtest-sampler", daemon=True)
        self.interval = interval
        self.samples = 0
        self.peak_rss = 0
        self.peaks: dict[int, int] = {}
        self.cpu: dict[str, float] = {}
        self._hub: psutil.Process | None = None
        self._others: dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def watch_hub(self, pid: int) -> None:
        with self._lock:
            self._hub = psutil.Process(pid)
            self.peaks.setdefault(pid, 0)

    def watch_other(self, label: str, pid: int) -> None:
        with self._lock, contextlib.suppress(psutil.Error):
            self._others[label] = psutil.Process(pid)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            hub, others = self._hub, dict(self._others)
        if hub is not None:
            try:
                with hub.oneshot():
                    rss = hub.memory_info().rss
                    times = hub.cpu_times()
                self.samples += 1
                self.peak_rss = max(self.peak_rss, rss)
                self.peaks[hub.pid] = max(self.peaks.get(hub.pid, 0), rss)
                self.cpu[f"hub-{hub.pid}"] = times.user + times.system
            except psutil.Error:
                pass
        for label, proc in others.items():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                self.cpu[label] = times.user + times.system + times.children_user

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)


# -- reading the outcome from the store -----------------------------------------------------


def job_ids(data_dir: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(data_dir / "novelgen.sqlite")) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM jobs ORDER BY created_at")]


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def steady_rate(ends: Sequence[float], low: float = 0.1, high: float = 0.9) -> float | None:
    """Completions per second between the ``low`` and ``high`` fractions of the completions
    (ramp-up and tail excluded)."""
    ends = sorted(ends)
    if len(ends) < 10:
        return None
    first = int(low * len(ends))
    last = max(first + 1, math.ceil(high * len(ends)) - 1)
    span = ends[last] - ends[first]
    return (last - first) / span if span > 0 else None


def inspect_job(data_dir: Path, job_id: str, *, verify_hashes: bool = True) -> dict[str, Any]:
    """Everything the report needs from the store, read after the hub stopped."""
    with contextlib.closing(sqlite3.connect(data_dir / "novelgen.sqlite")) as conn:
        job_state, out_dir = conn.execute(
            "SELECT state, out_dir FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        tasks = conn.execute(
            "SELECT id, state, output_path, sha256, size, finished_at FROM tasks WHERE job_id = ?",
            (job_id,),
        ).fetchall()
        attempts = conn.execute(
            "SELECT a.task_id, a.worker_id, a.started_at, a.ended_at, a.outcome, a.error_kind "
            "FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ?",
            (job_id,),
        ).fetchall()
    out = Path(out_dir)
    states = Counter(state for _id, state, *_ in tasks)
    done_attempts = [a for a in attempts if a[4] == "done"]
    done_per_task = Counter(a[0] for a in done_attempts)
    starts = [a[2] for a in attempts if a[2] is not None]
    ends = [a[3] for a in done_attempts if a[3] is not None]
    latencies = sorted(a[3] - a[2] for a in done_attempts if a[3] is not None)
    first_assign = min(starts) if starts else None
    # The last completion: a done attempt's end, or a task's finish time (which is also
    # there for a task whose done attempt went missing: reported below).
    finishes = [t[5] for t in tasks if t[1] == "done" and t[5] is not None]
    last_done = max(ends + finishes) if ends or finishes else None
    span = (last_done - first_assign) if first_assign is not None and last_done else None

    # Files: every file in the job's folder but the manifest should be one task's image.
    recorded = {t[2]: t for t in tasks if t[1] == "done" and t[2]}
    files: set[str] = set()
    temp_files = 0
    if out.is_dir():
        for path in out.rglob("*"):
            if not path.is_file() or (path.parent == out and path.name == MANIFEST):
                continue
            if path.name.endswith(TEMP_SUFFIX):
                temp_files += 1
            else:
                files.add(path.relative_to(out).as_posix())
    extra_files = sorted(files - set(recorded))
    missing_files = sorted(set(recorded) - files)
    hash_mismatches = 0
    if verify_hashes:
        for rel, (_id, _state, _path, sha, size, _finished) in recorded.items():
            path = out / rel
            if rel in files:
                data = path.read_bytes()
                if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                    hash_mismatches += 1

    # The manifest: one row per done task, agreeing with the database.
    manifest_rows: Counter[int] = Counter()
    bad_rows = 0
    disagreeing = 0
    by_id = {t[0]: t for t in tasks}
    manifest = out / MANIFEST
    if manifest.exists():
        for line in manifest.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
                task_id = int(row["task"])
            except (ValueError, KeyError, TypeError):
                bad_rows += 1
                continue
            manifest_rows[task_id] += 1
            task = by_id.get(task_id)
            if (
                task is None
                or task[1] != "done"
                or (row.get("file"), row.get("sha256"))
                != (
                    task[2],
                    task[3],
                )
            ):
                disagreeing += 1
    done_tasks = states.get("done", 0)
    duplicated = {
        "tasks_with_several_done_attempts": sum(1 for c in done_per_task.values() if c > 1),
        "extra_image_files": len(extra_files),
        "extra_manifest_rows": sum(c - 1 for c in manifest_rows.values() if c > 1),
    }
    return {
        "job_state": job_state,
        "out_dir": str(out),
        "tasks": len(tasks),
        "task_states": dict(states),
        "done": done_tasks,
        "not_done": len(tasks) - done_tasks,
        "attempts": len(attempts),
        "attempts_by_outcome": dict(Counter(str(a[4]) for a in attempts)),
        "errors_by_kind": dict(Counter(a[5] for a in attempts if a[5])),
        # Must be 0: an image recovered from the manifest or adopted from disk after a hub
        # SIGKILL gets its done attempt too, and a duplicate of the attempt that drew the
        # image (resent by a worker that missed the acknowledgement) must not undo it.
        "done_without_done_attempt": sum(
            1 for t in tasks if t[1] == "done" and done_per_task.get(t[0], 0) == 0
        ),
        "done_by_worker": dict(sorted(Counter(str(a[1]) for a in done_attempts).items())),
        "first_assign": first_assign,
        "last_done": last_done,
        "seconds_first_assign_to_last_done": round(span, 3) if span else None,
        "throughput_per_s": round(states.get("done", 0) / span, 1) if span else None,
        "steady_rate_per_s": _round(steady_rate(ends), 2),
        "latency_s": {
            "p50": _round(percentile(latencies, 50), 4),
            "p99": _round(percentile(latencies, 99), 4),
            "mean": _round(sum(latencies) / len(latencies), 4) if latencies else None,
            "max": _round(latencies[-1], 4) if latencies else None,
        },
        "duplicated": sum(duplicated.values()),
        "duplicated_detail": duplicated,
        "extra_files_sample": extra_files[:10],
        "missing_files": len(missing_files),
        "hash_mismatches": hash_mismatches,
        "temp_files": temp_files,
        "manifest_rows": sum(manifest_rows.values()),
        "manifest_bad_rows": bad_rows,
        "manifest_rows_disagreeing": disagreeing,
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# -- one run --------------------------------------------------------------------------------


def prompts_for(count: int, tag: str) -> list[str]:
    """Distinct prompts (the hub skips duplicates), script-like in length."""
    return [
        f"Panel {i % 6 + 1} of page {i // 6 + 1} ({tag}): the keeper climbs the spiral stair, "
        "storm light through the window, ink and watercolour"
        for i in range(count)
    ]


STYLE_BIBLE = """\
[bible]
name = "Load test"
version = "1"

[style]
medium = "ink and watercolour graphic-novel panel"
palette = "cold slate and teal"
aspect = "square 1:1 image"
negative = ["lettering", "watermarks"]

[characters.Maren]
description = "A woman of 24 in a mustard-yellow oilskin coat, dark hair tied back."
references = ["maren.png"]

[characters.Isak]
description = "A boy of 15 with copper hair and a long red scarf."
references = ["isak.png"]

[locations."Lamp room"]
aliases = ["lamp room"]
description = "The glass lantern room at the top of the tower."
"""


def write_style_inputs(folder: Path, count: int, tag: str) -> tuple[Path, Path]:
    """A Full Script of ``count`` panels (6 a page, 25 pages a chapter) mentioning the bible's
    characters, the bible and its two reference images; returns (script, bible)."""
    from novelgen_desktop.sim.render import render_panel_png

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("maren", "isak"):
        png = render_panel_png(f"{name} reference sheet", width=96, height=128, seed=name)
        (folder / f"{name}.png").write_bytes(png)
    (folder / "bible.toml").write_text(STYLE_BIBLE, encoding="utf-8")
    lines: list[str] = []
    for i in range(count):
        chapter, page, panel = i // 150 + 1, i // 6 + 1, i % 6 + 1
        if i % 150 == 0:
            lines.append(f"CHAPTER {chapter}")
        if panel == 1:
            lines.append(f"PAGE {page}")
        who = "@Maren" if i % 3 else "@Isak hands @Maren the lamp;"
        lines += [f"Panel {panel}", f"{who} climbs to the lamp room ({tag}, panel {i + 1}).", ""]
    (folder / "book.script").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "book.script", folder / "bible.toml"


def inspect_style(data_dir: Path, job_id: str) -> dict[str, Any]:
    """What the style bible changed, from the store: every attempt recorded with the job's
    bible version, and how many pages or chapters were drawn by more than one worker (a
    sequence moves only when its worker could not go on: a hub restart, a lost worker)."""
    with contextlib.closing(sqlite3.connect(data_dir / "novelgen.sqlite")) as conn:
        (settings,) = conn.execute("SELECT settings FROM jobs WHERE id = ?", (job_id,)).fetchone()
        rows = conn.execute(
            "SELECT t.chapter, t.page, a.worker_id, a.outcome, a.style_version, t.metadata "
            "FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ?",
            (job_id,),
        ).fetchall()
    job_settings = json.loads(settings)
    version = job_settings.get("style_bible", {}).get("version")
    strategy = job_settings.get("chat_strategy")
    workers_of: dict[tuple[Any, ...], set[str]] = {}
    with_references = 0
    for chapter, page, worker, outcome, _version, metadata in rows:
        if outcome == "done":
            key = (chapter,) if strategy == "chapter" else (chapter, page)
            workers_of.setdefault(key, set()).add(worker)
            composition = json.loads(metadata).get("composition", {})
            with_references += bool(composition.get("references"))
    return {
        "bible_version": version,
        "chat_strategy": strategy,
        "attempts": len(rows),
        "attempts_without_version": sum(1 for r in rows if r[4] != version),
        "sequences": len(workers_of),
        "sequences_on_several_workers": sum(1 for w in workers_of.values() if len(w) > 1),
        "done_with_references": with_references,
    }


def run_scenario(
    scenario: Scenario,
    *,
    report_dir: Path | None = None,
    keep: bool = False,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Run ``scenario`` and return its report (also written to ``report_dir``, if given)."""
    root = scratch(f"ng-load-{scenario.name}-")
    try:
        report = asyncio.run(_run(scenario, root, log))
        if keep:
            report["kept"] = str(root)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        path = report_dir / f"{scenario.name}.json"
        path.write_text(json.dumps(report, indent=1) + "\n")
        report["report_file"] = str(path)
    return report


async def _run(scenario: Scenario, root: Path, log: Log) -> dict[str, Any]:
    data_dir, logs = root / "data", root / "logs"
    logs.mkdir(parents=True)
    report: dict[str, Any] = {
        "benchmark": "loadtest",
        "scenario": scenario.name,
        "description": scenario.description,
        "machine": machine(),
        "config": {
            "tasks": scenario.tasks,
            "workers": scenario.workers,
            "groups": [
                {"count": g.count, "options": [*FAST_IMAGES, *ZERO_LATENCY, *g.options]}
                for g in scenario.groups
            ],
            "hub_options": list(scenario.hub_options),
            "kill_hub_at": list(scenario.kill_hub_at),
            "must_finish": scenario.must_finish,
        },
    }
    problems: list[str] = []
    hub = HubProcess(data_dir, logs, scenario.hub_options)
    workers = [
        WorkerProcess(i + 1, g.count, g.options, logs) for i, g in enumerate(scenario.groups)
    ]
    sampler = ProcessSampler()
    watch = JobWatch(name=f"load {scenario.name} {uuid.uuid4().hex[:8]}", prompts=scenario.tasks)
    kills: list[dict[str, Any]] = []
    try:
        await hub.start()
        assert hub.pid is not None
        sampler.watch_hub(hub.pid)
        sampler.start()
        log(f"{scenario.name}: hub ready at {hub.url} in {hub.starts[0]['ready_seconds']} s")
        for worker in workers:
            worker.start(hub.url, hub.token_file, scenario.seed * 1000 + worker.index)
            assert worker.proc is not None
            sampler.watch_other(f"workers-{worker.prefix}", worker.proc.pid)
        client = HubClient(hub.url, hub.token)
        prompts = prompts_for(scenario.tasks, watch.name)
        submit_fields: dict[str, Any] | None = None
        if scenario.style:
            script, bible = write_style_inputs(root / "input", scenario.tasks, watch.name)
            submit_fields = {"path": str(script), "style": str(bible)}
            if scenario.chat_strategy:
                submit_fields["chat_strategy"] = scenario.chat_strategy
        run_started = time.time()
        job = asyncio.create_task(
            client.run_job(
                watch.name,
                prompts,
                interval=scenario.interval,
                timeout=scenario.timeout,
                watch=watch,
                submit_fields=submit_fields,
            )
        )
        controller = asyncio.create_task(
            _kill_and_restart(scenario, hub, sampler, watch, kills=kills, log=log)
        )
        try:
            await asyncio.wait({job, controller}, return_when=asyncio.FIRST_COMPLETED)
            if not job.done() and controller.exception() is not None:
                problems.append(f"hub restart failed: {controller.exception()!r}")
                job.cancel()
            await job
        except TimeoutError:
            problems.append(f"the job did not end within {scenario.timeout} s")
        except asyncio.CancelledError:
            if not job.cancelled():
                raise
        finally:
            for task in (job, controller):
                task.cancel()
            await asyncio.gather(job, controller, return_exceptions=True)
        log(f"{scenario.name}: client saw {watch.state} ({watch.done}/{watch.tasks})")
        hub_exit = await hub.stop()
        patience = WORKER_EXIT_TIMEOUT if scenario.workers_hear_bye else AWAY_EXIT_TIMEOUT
        for worker in workers:
            await worker.wait_exit(patience)
        needed_sigterm = [w.prefix for w in workers if w.exit_code is None]
        for worker in workers:
            if worker.exit_code is None:
                await worker.terminate(WORKER_EXIT_TIMEOUT)
        worker_exits = [w.exit_code for w in workers]
        sampler.sample()
    finally:
        sampler.stop()
        hub.ensure_dead()
        for worker in workers:
            worker.ensure_dead()

    report["client"] = {
        **watch.summary(),
        "seconds_submit_to_end": round(watch.ended_at - watch.submitted_at, 3)
        if watch.ended_at and watch.submitted_at
        else None,
        "seconds_start_to_end": round(watch.ended_at - run_started, 3) if watch.ended_at else None,
    }
    report["hub"] = {
        "starts": hub.starts,
        "kills": kills,
        "final_exit_code": hub_exit,
        "peak_rss_mib": round(sampler.peak_rss / 2**20, 1),
        "peak_rss_bytes": sampler.peak_rss,
        "rss_samples": sampler.samples,
        "cpu_seconds": {k: round(v, 2) for k, v in sampler.cpu.items()},
    }
    report["workers"] = {
        "exit_codes": worker_exits,
        "needed_sigterm": needed_sigterm,
        "log_tails": {w.prefix: _tail(w.log_path, 10) for w in workers if w.exit_code not in (0,)},
    }
    if hub_exit != 0:
        report["hub"]["log_tail"] = _tail(logs / f"hub-{len(hub.starts)}.log", 30)

    ids = job_ids(data_dir) if (data_dir / "novelgen.sqlite").exists() else []
    job_id = watch.job_id or (ids[-1] if ids else None)
    store = inspect_job(data_dir, job_id) if job_id else None
    report["store"] = store
    if scenario.style and job_id:
        report["style"] = inspect_style(data_dir, job_id)
        if report["style"]["attempts_without_version"]:
            problems.append(f"attempts without the bible version: {report['style']}")
    result = _headline(scenario, watch, store)
    report["result"] = result

    # What must hold for the run to count as a pass.
    if store is None:
        problems.append("no job in the store")
    else:
        if scenario.must_finish:
            if result["lost"]:
                problems.append(f"lost {result['lost']} tasks: {store['task_states']}")
            if store["job_state"] != "finished":
                problems.append(f"job state in the store is {store['job_state']}")
            if watch.state != "finished":
                problems.append(f"the client saw the job end as {watch.state}")
        if result["duplicated"]:
            problems.append(f"duplicated: {store['duplicated_detail']}")
        for key in (
            "missing_files",
            "hash_mismatches",
            "temp_files",
            "manifest_bad_rows",
            "done_without_done_attempt",
        ):
            if store[key]:
                problems.append(f"{key}: {store[key]}")
        if store["manifest_rows_disagreeing"] or store["manifest_rows"] != store["done"]:
            problems.append(
                f"manifest: {store['manifest_rows']} rows for {store['done']} done tasks, "
                f"{store['manifest_rows_disagreeing']} disagreeing with the database"
            )
    if len(kills) != len(scenario.kill_hub_at):
        problems.append(f"{len(kills)} hub kills of {len(scenario.kill_hub_at)} planned")
    if hub_exit != 0:
        problems.append(f"serve exited with {hub_exit} after SIGTERM")
    if any(code != 0 for code in worker_exits):
        problems.append(f"sim-worker exit codes {worker_exits} after the hub stopped")
    if needed_sigterm and scenario.workers_hear_bye:
        problems.append(f"sim-workers {needed_sigterm} did not exit after the hub's bye")
    if watch.hub_errors:
        problems.append(f"the hub sent the client {len(watch.hub_errors)} error frames")
    report["problems"] = problems
    report["ok"] = not problems
    report["machine_after"] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    return report


def _headline(scenario: Scenario, watch: JobWatch, store: dict[str, Any] | None) -> dict[str, Any]:
    """The figures the issue asks for, in one flat object."""
    if store is None:
        return {"lost": None, "duplicated": None}
    return {
        "tasks": scenario.tasks,
        "workers": scenario.workers,
        "job_state": store["job_state"],
        "throughput_per_s": store["throughput_per_s"],
        "steady_rate_per_s": store["steady_rate_per_s"],
        "seconds_first_assign_to_last_done": store["seconds_first_assign_to_last_done"],
        "latency_p50_s": store["latency_s"]["p50"],
        "latency_p99_s": store["latency_s"]["p99"],
        "errors_by_kind": store["errors_by_kind"],
        "attempts_by_outcome": store["attempts_by_outcome"],
        "lost": store["not_done"] if scenario.must_finish else None,
        "duplicated": store["duplicated"],
        "client_state": watch.state,
    }


async def _kill_and_restart(
    scenario: Scenario,
    hub: HubProcess,
    sampler: ProcessSampler,
    watch: JobWatch,
    *,
    kills: list[dict[str, Any]],
    log: Log,
) -> None:
    for fraction in scenario.kill_hub_at:
        target = fraction * scenario.tasks
        while watch.done < target:
            await asyncio.sleep(0.01)
        seen = watch.done
        hub.kill9()
        killed = time.monotonic()
        log(f"{scenario.name}: SIGKILLed the hub at {seen}/{scenario.tasks} done")
        await asyncio.sleep(scenario.restart_delay)
        await hub.start()
        assert hub.pid is not None
        sampler.watch_hub(hub.pid)
        kills.append(
            {
                "at_done": seen,
                "seconds_down": round(time.monotonic() - killed, 3),
                "ready_seconds": hub.starts[-1]["ready_seconds"],
            }
        )
        log(f"{scenario.name}: hub restarted (pid {hub.pid})")
