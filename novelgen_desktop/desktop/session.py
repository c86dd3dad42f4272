"""The desktop app's engine room, without Qt: the job service, the hub the extension's tabs
connect to, and (in demo mode) simulated tabs, all on the one asyncio loop.

The GUI is a view over this object: it reads its views (jobs, tasks, workers, events) and
calls its actions; it owns no state. Everything here runs and is tested without a display,
and ``novelgen serve`` remains the headless twin of the same parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from novelgen_desktop.cli import options
from novelgen_desktop.desktop.settings import DesktopSettings, save_settings
from novelgen_desktop.engine.composition import COMPOSITION_KEY
from novelgen_desktop.engine.model import DEFAULT_MAX_CHAT_TURNS, ChatStrategy, TaskState
from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.service import JobService, ServiceSettings
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.service import FlagService, open_flags
from novelgen_desktop.memory.cleanup import CleanupResult
from novelgen_desktop.memory.monitor import MemoryMonitor
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.prompts.issues import ImportResult
from novelgen_desktop.prompts.loader import load_prompt_files
from novelgen_desktop.protocol.messages import Configure
from novelgen_desktop.server.flag_wiring import FlagWiring
from novelgen_desktop.server.hub import Hub
from novelgen_desktop.server.pairing import (
    SHIPPED_EXTENSION_ID,
    load_or_create_token,
    paired_extensions,
    regenerate_token,
)
from novelgen_desktop.server.remote_worker import RemoteWorker
from novelgen_desktop.sim.remote import RemoteSimWorker
from novelgen_desktop.sim.worker import SimBehaviour
from novelgen_desktop.style.bible import StyleBible

log = logging.getLogger(__name__)

SIM_PREFIX = "sim"


class WorkerState:
    """What the workers table says a worker is doing (plain strings: they are shown)."""

    IDLE = "idle"
    BUSY = "busy"
    COOLING = "cooling down"
    LOGIN = "login required"
    UNHEALTHY = "unhealthy"
    PAUSED = "paused"
    MEMORY = "held for memory"  # the memory governor gives it no new work for now
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One connected (or recently seen) worker as the workers table shows it."""

    worker_id: str
    account_id: str
    kind: str  # "extension", "sim", ...
    tab: str | None  # the browser's tab id, when it drives one
    state: str  # a WorkerState value
    detail: str | None  # why (the tab's health detail, the cooldown end, ...)
    cooling_until: float | None
    current_task: int | None
    done: int
    failed: int
    success_rate: float | None
    mean_latency: float | None
    p95_latency: float | None
    last_heartbeat: float | None  # wall-clock time of the last frame from it
    memory_bytes: int | None  # the tab's JS heap, when the worker reports it
    held: bool
    connected: bool


@dataclass(frozen=True, slots=True)
class ImagePreview:
    """A finished image of a job, for the gallery."""

    task_id: int
    seq: int
    chapter: str | None
    page: int | None
    panel: int | None
    path: Path
    prompt: str
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class TaskComposition:
    """How a task's prompt was made, as the task table shows it: the cast (canonical names
    with a style bible, the script's speakers without one) and, for a prompt composed with a
    style bible, the panel's own description, the bible and its version, what the prompt
    brought in and what was cut to fit. Fixed when the job was created."""

    characters: tuple[str, ...] = ()
    description: str | None = None  # the panel's own text, when the prompt adds to it
    bible: str | None = None
    version: str | None = None
    locations: tuple[str, ...] = ()
    props: tuple[str, ...] = ()
    references: tuple[str, ...] = ()  # file names of the reference images attached
    trimmed: tuple[str, ...] = ()


def composition_of(characters: Sequence[str], metadata: dict[str, Any]) -> TaskComposition | None:
    """A task's :class:`TaskComposition` from its stored cast and metadata (None: the
    prompt is the script's text as written and nobody is cast)."""
    found = metadata.get(COMPOSITION_KEY)
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    if not data and not characters:
        return None

    def names(key: str) -> tuple[str, ...]:
        value = data.get(key)
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    references = data.get("references")
    return TaskComposition(
        characters=tuple(characters),
        description=text("description"),
        bible=text("bible"),
        version=text("version"),
        locations=names("locations"),
        props=names("props"),
        references=tuple(
            str(ref.get("name") or ref.get("sha256", "")[:12])
            for ref in (references if isinstance(references, list) else [])
            if isinstance(ref, dict)
        ),
        trimmed=names("trimmed"),
    )


class DesktopSession:
    """Start, watch and stop everything the desktop window shows."""

    def __init__(
        self,
        paths: DataPaths,
        settings: DesktopSettings | None = None,
        *,
        run_settings: RunSettings | None = None,
        clock: Callable[[], float] = time.time,
        flags: FlagService | None = None,
    ) -> None:
        self.paths = paths.ensure()
        self.settings = settings or DesktopSettings()
        self.clock = clock
        # The live feature flags (a bad flags.json is ignored with its reason in
        # flags.problems, shown in the log and the flags window, rather than no window).
        self._own_flags = flags is None
        self.flags = flags or open_flags(paths.root, strict=False)
        base = run_settings or options.run_settings({}, wait_for_workers=True)
        writer = replace(base.writer, snapshot_every=self.settings.checkpoint_interval)
        self.service = JobService(
            paths,
            ServiceSettings(
                run=replace(base, writer=writer, wait_for_workers=True),
                out_root=self.settings.output_root(paths),
                naming_template=self.settings.naming_template,
            ),
            clock=clock,
            flags=self.flags,
        )
        self.token = load_or_create_token(paths)
        self.hub: Hub | None = None
        self.port: int | None = None
        self.monitor: MemoryMonitor | None = None
        self.flag_wiring: FlagWiring | None = None
        # Simulated tabs by worker id: (the worker, its own stop, its task).
        self._sims: dict[str, tuple[RemoteSimWorker, asyncio.Event, asyncio.Task[None]]] = {}
        self._sim_mode = False  # demo mode: tab counts apply to the simulated tabs
        self._sim_behaviour: SimBehaviour | None = None
        self.started = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, *, port: int | None = None, simulate: bool | None = None) -> None:
        """Open the store, listen for tabs (``port`` 0: any free port) and, in demo mode,
        connect the simulated tabs. ConfigError when the port is taken."""
        await self.service.start()
        self.hub = Hub(
            self.token,
            extension_ids=paired_extensions(self.paths),  # the shipped extension first
            service=self.service,
            browser_config=Configure(tabs=self.settings.default_workers),
        )
        wanted = self.settings.hub_port if port is None else port
        try:
            self.port = await self.hub.start("127.0.0.1", wanted)
        except OSError as exc:
            await self.service.stop()
            raise ConfigError(
                f"cannot listen on 127.0.0.1:{wanted}: {exc.strerror or exc} (another NovelGen "
                "running? change the hub port in Settings)"
            ) from exc
        self.started = True
        log.info("desktop hub listening on %s", self.hub_url)
        self.monitor = MemoryMonitor(
            self.service,
            self.hub.connected_workers,
            self.settings.memory_monitor(),
            server_port=self.port,
            clock=self.clock,
        )
        self.monitor.start()
        self.flag_wiring = FlagWiring(self.flags, self.service, hub=self.hub, monitor=self.monitor)
        self.flag_wiring.start()
        if self.settings.simulate if simulate is None else simulate:
            self.start_simulated_workers(self.settings.default_workers)

    async def stop(self) -> None:
        """Quit cleanly: stop dispatch, let images in flight land (within the run's stop
        grace), write the job's snapshot, say bye to every tab, close the store."""
        if not self.started:
            return
        self.started = False
        if self.flag_wiring is not None:
            await self.flag_wiring.stop()
        if self.monitor is not None:
            await self.monitor.stop()
        if self.hub is not None:
            await self.hub.stop()  # stops the running job first: its workers may still deliver
        await self._stop_simulated_workers()
        await self.service.close()
        if self._own_flags:
            self.flags.close()

    @property
    def hub_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    # --- memory -----------------------------------------------------------------------------

    def apply_memory_settings(self, settings: DesktopSettings) -> None:
        """New thresholds (the Settings dialog) take effect at the next reading."""
        self.settings = replace(
            self.settings,
            memory_pause_percent=settings.memory_pause_percent,
            memory_resume_percent=settings.memory_resume_percent,
            memory_critical_percent=settings.memory_critical_percent,
            memory_governor=settings.memory_governor,
        )
        if self.monitor is not None:
            self.monitor.update_settings(self.settings.memory_monitor())

    async def free_memory(self) -> list[CleanupResult]:
        """Every cleanup strategy now ("Free memory" in the window), measured."""
        if self.monitor is None:
            raise ConfigError("the session is not started")
        return await self.monitor.free_memory_now("asked from the window")

    # --- demo workers ---------------------------------------------------------------------

    def start_simulated_workers(self, count: int, behaviour: SimBehaviour | None = None) -> None:
        """Connect ``count`` more simulated tabs over the real protocol (the demo without
        ChatGPT, and what the GUI's benchmark drives): ``sim-N`` on account
        ``sim-account-N``, each with a stop of its own so one can be closed alone."""
        if self.hub is None:
            raise RuntimeError("the session is not started")
        if behaviour is not None or self._sim_behaviour is None:
            self._sim_behaviour = behaviour or SimBehaviour(
                latency_median=self.settings.sim_latency,
                latency_sigma=0.3,
                seed=int(self.clock()),
            )
        self._sim_mode = True
        number = 0
        for _ in range(count):
            number += 1
            while f"{SIM_PREFIX}-{number}" in self._sims:
                number += 1
            worker_id = f"{SIM_PREFIX}-{number}"
            remote, stop = RemoteSimWorker(), asyncio.Event()
            task = asyncio.create_task(
                remote.run(
                    self.hub_url,
                    self.token,
                    worker_id=worker_id,
                    account_id=f"{SIM_PREFIX}-account-{number}",
                    behaviour=self._sim_behaviour,
                    stop=stop,
                ),
                name=f"sim-worker-{worker_id}",
            )
            self._sims[worker_id] = (remote, stop, task)

    @property
    def sim_workers(self) -> list[RemoteSimWorker]:
        return [remote for remote, _stop, _task in self._sims.values()]

    async def _stop_simulated(self, worker_ids: list[str]) -> None:
        stopping = [self._sims.pop(w) for w in worker_ids if w in self._sims]
        for _remote, stop, _task in stopping:
            stop.set()
        for _remote, _stop, task in stopping:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10.0)

    async def _stop_simulated_workers(self) -> None:
        await self._stop_simulated(list(self._sims))
        self._sim_mode = False

    async def set_simulated_workers(self, count: int) -> None:
        """Run exactly ``count`` simulated tabs (0: none): the highest-numbered go first."""
        current = sorted(self._sims, key=lambda w: int(w.rsplit("-", 1)[1]))
        if count < len(current):
            await self._stop_simulated(current[count:])
        elif count > len(current):
            self.start_simulated_workers(count - len(current))
        self._sim_mode = count > 0

    # --- jobs -----------------------------------------------------------------------------

    def preview_files(self, files: Sequence[str | Path]) -> ImportResult:
        """Parse dropped files without creating anything (the preview dialog)."""
        return load_prompt_files([str(f) for f in files])

    async def create_job(
        self,
        name: str,
        result: ImportResult,
        *,
        out_root: Path | None = None,
        naming: str | None = None,
        priority: int = 0,
        style: StyleBible | None = None,
        chat_strategy: ChatStrategy | str = ChatStrategy.PANEL,
        max_chat_turns: int = DEFAULT_MAX_CHAT_TURNS,
    ) -> str:
        """Create and queue a job from a preview without errors; returns its id. With a
        ``style`` bible the engine composes every prompt (a panel that cannot be composed
        refuses the job, with its file:line); ``chat_strategy`` is how panels share chats,
        ``max_chat_turns`` how long one conversation may grow."""
        if result.errors:
            first = result.errors[0]
            where = f"{first.file}:{first.line}" if first.line else first.file
            raise ConfigError(
                f"{len(result.errors)} error(s) in the prompt files, first at {where}: "
                f"{first.message}"
            )
        job, _count = await self.service.submit(
            name.strip() or "job",
            result.specs,
            out_root=out_root,
            naming=naming,
            priority=priority,
            sources=list(result.format_by_file),
            style=style,
            chat_strategy=chat_strategy,
            max_chat_turns=max_chat_turns,
        )
        bible_path = str(Path(style.source).resolve()) if style and style.source else ""
        self.remember_style_choices(bible_path, ChatStrategy(chat_strategy), max_chat_turns)
        return job.id

    def remember_style_choices(
        self, style_bible: str | None, chat_strategy: ChatStrategy, max_chat_turns: int
    ) -> None:
        """Keep the job's bible and chat choices for the next import (the next job of the
        same book). Saving is best effort: a read-only settings file never fails a job."""
        remembered = replace(
            self.settings,
            style_bible=style_bible or "",
            chat_strategy=chat_strategy.value,
            max_chat_turns=max_chat_turns,
        )
        if remembered == self.settings:
            return
        self.settings = remembered
        try:
            save_settings(self.paths, remembered)
        except (OSError, ConfigError) as exc:
            log.warning("could not save the import choices: %s", exc)

    async def task_compositions(self, job_id: str) -> dict[int, TaskComposition]:
        """How each task of a job was composed, by task id (tasks with neither a cast nor a
        composition are left out). Read once per job: it never changes."""
        stored = await self.service.task_compositions(job_id)
        found: dict[int, TaskComposition] = {}
        for task_id, (characters, data) in stored.items():
            composition = composition_of(characters, {COMPOSITION_KEY: data})
            if composition is not None:
                found[task_id] = composition
        return found

    async def finished_images(self, job_id: str) -> list[ImagePreview]:
        """The job's images on disk, in script order (the gallery)."""
        job = await self.service.find_job(job_id)
        rows = (await self.service.task_table(job_id)).rows  # no queue positions needed
        out_dir = Path(job.out_dir)
        return [
            ImagePreview(
                task_id=r.task_id,
                seq=r.seq,
                chapter=r.chapter,
                page=r.page,
                panel=r.panel,
                path=out_dir / r.output_path,
                prompt=r.prompt,
                finished_at=r.finished_at,
            )
            for r in sorted(rows, key=lambda r: r.seq)
            if r.state is TaskState.DONE and r.output_path
        ]

    async def regenerate(self, job_id: str, task_id: int) -> None:
        """Draw a finished panel again: its image is set aside under ``.replaced/`` in the
        job's output folder (never deleted: it was paid for) and the task goes back to the
        queue; a finished job runs again for it. ConfigError if it has no finished image."""
        await self.service.regenerate_task(job_id, task_id)

    # --- workers --------------------------------------------------------------------------

    def _remote_workers(self) -> list[RemoteWorker]:
        return list(self.hub.workers.values()) if self.hub is not None else []

    def worker_rows(self) -> list[WorkerRow]:
        """Every worker the hub knows (connected ones first), with this run's figures."""
        now = self.clock()
        runner = self.service.runner
        stats = {v.worker_id: v for v in self.service.last_worker_views()}
        cooldowns = runner.scheduler.cooldowns if runner is not None else {}
        leases = runner.scheduler.leases if runner is not None else {}
        held = self.service.held_workers
        memory_reason, memory_held = self.service.memory_hold
        current: dict[str, int] = {lease.worker_id: tid for tid, lease in leases.items()}
        rows = []
        for worker in self._remote_workers():
            status = worker.last_status
            stat = stats.get(worker.worker_id)
            until = cooldowns.get(worker.account_id)
            cooling = until if until is not None and until > now else None
            health = status.tab_health.value if status is not None else None
            detail = status.detail if status is not None else None
            if not worker.connected:
                state = WorkerState.DISCONNECTED
            elif health == "logged_out":
                state = WorkerState.LOGIN
            elif health not in (None, "ok", "loading"):
                state = WorkerState.UNHEALTHY
                detail = detail or health
            elif worker.worker_id in held:
                state = WorkerState.PAUSED
            elif cooling is not None:
                state = WorkerState.COOLING
            elif worker.worker_id in current or worker.busy:
                state = WorkerState.BUSY  # an attempt in hand finishes whatever holds it
            elif memory_reason is not None or worker.worker_id in memory_held:
                state = WorkerState.MEMORY
                detail = memory_reason or "its browser uses too much memory, or it is being cleaned"
            else:
                state = WorkerState.IDLE
            rows.append(
                WorkerRow(
                    worker_id=worker.worker_id,
                    account_id=worker.account_id,
                    kind=worker.kind,
                    tab=worker.tab_id,
                    state=state,
                    detail=detail,
                    cooling_until=cooling,
                    current_task=current.get(worker.worker_id),
                    done=stat.done if stat else 0,
                    failed=stat.failed if stat else 0,
                    success_rate=stat.success_rate if stat else None,
                    mean_latency=stat.mean_latency if stat else None,
                    p95_latency=stat.p95_latency if stat else None,
                    last_heartbeat=worker.last_heard,
                    memory_bytes=status.memory_bytes if status is not None else None,
                    held=worker.worker_id in held,
                    connected=worker.connected,
                )
            )
        rows.sort(key=lambda r: (not r.connected, r.worker_id))
        return rows

    def pause_worker(self, worker_id: str) -> None:
        self.service.hold_worker(worker_id, True)

    def resume_worker(self, worker_id: str) -> None:
        self.service.hold_worker(worker_id, False)

    async def set_browser_tabs(self, tabs: int) -> None:
        """Ask every connected browser to run ``tabs`` ChatGPT tabs (1–10); simulated tabs
        in demo mode follow the same number."""
        if not 1 <= tabs <= 10:
            raise ConfigError(f"tabs: expected 1 to 10, got {tabs}")
        self.settings = replace(self.settings, default_workers=tabs)
        if self.hub is not None:
            await self.hub.configure_browsers(Configure(tabs=tabs))
        if self._sim_mode:
            await self.set_simulated_workers(tabs)

    def browser_tab_count(self) -> int:
        """Tabs asked of each browser; in demo mode, the simulated tabs running."""
        return len(self._sims) if self._sim_mode else self.settings.default_workers

    async def close_tab(self, worker_id: str) -> None:
        """Close one tab: a browser tab is released by asking its browser for one tab fewer
        (its last slot closes; an attempt in it is given back to the queue at once); a
        simulated tab disconnects."""
        row = next((w for w in self._remote_workers() if w.worker_id == worker_id), None)
        if row is None:
            raise ConfigError(f"no worker {worker_id!r} is connected")
        if worker_id in self._sims:  # exactly this simulated tab goes
            await self._stop_simulated([worker_id])
            return
        await self.set_browser_tabs(max(1, self.settings.default_workers - 1))

    # --- pairing --------------------------------------------------------------------------

    def pairing_link(self) -> str:
        """Open in the Chrome profile with the extension: it fills in hub and token."""
        return (
            f"chrome-extension://{SHIPPED_EXTENSION_ID}/options/options.html"
            f"#hub={self.hub_url}&token={self.token}"
        )

    async def regenerate_token(self) -> str:
        """A new pairing token: every connected tab is disconnected and must be paired again
        (the old token may have leaked)."""
        self.token = regenerate_token(self.paths)
        if self.hub is not None:
            self.hub.token = self.token
            for session in list(self.hub.sessions):
                await session.close(1008, "the pairing token changed")
        return self.token


__all__ = [
    "DesktopSession",
    "ImagePreview",
    "TaskComposition",
    "WorkerRow",
    "WorkerState",
    "composition_of",
]
