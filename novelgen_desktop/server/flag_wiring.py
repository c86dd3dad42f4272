"""What each feature flag switches, connected to the live flag set of a hub process.

The engine reads the set itself at every dispatch (multi_tab, chat_strategies,
reference_images, fresh_chat), and asks here to switch multi_tab off when a job's tabs keep
failing together (auto_single_tab); this module does the rest when the set changes: the running
job looks at dispatch again at once, the memory monitor is switched on or off, and the
extensions hear the browser-side flags in a ``configure``. Used by ``novelgen serve`` and
the desktop window alike.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from novelgen_desktop.flags.flagset import FlagSet
from novelgen_desktop.flags.service import FlagService, stop_watching

if TYPE_CHECKING:
    from novelgen_desktop.engine.orchestration import OrchestrationTrip
    from novelgen_desktop.engine.service import JobService
    from novelgen_desktop.memory.monitor import MemoryMonitor
    from novelgen_desktop.server.hub import Hub

log = logging.getLogger(__name__)


class FlagWiring:
    def __init__(
        self,
        flags: FlagService,
        service: JobService,
        *,
        hub: Hub | None = None,
        monitor: MemoryMonitor | None = None,
    ) -> None:
        self.flags = flags
        self.service = service
        self.hub = hub
        self.monitor = monitor
        self._watch: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._unsubscribe = flags.subscribe(self._changed)

    def start(self, *, poll: float = 0.2, remote_every: float = 300.0) -> None:
        """Apply the set in force now and follow its changes (call on the running loop)."""
        current = self.flags.current
        if self.hub is not None:
            self.hub.browser_flags = dict(current.browser_flags())
        if self.monitor is not None:
            self.monitor.set_flag_allows(current.enabled("memory_governor"))
        for problem in self.flags.problems:
            self.service.log_event("warning", "flags_problem", problem)
        self.service.on_orchestration_failing = self._fall_back
        self._watch = self.flags.start_watching(poll=poll, remote_every=remote_every)

    def _fall_back(self, trip: OrchestrationTrip) -> str:
        return self.flags.fall_back_to_single_tab(trip.describe())

    async def stop(self) -> None:
        if self.service.on_orchestration_failing == self._fall_back:
            self.service.on_orchestration_failing = None
        self._unsubscribe()
        await stop_watching(self._watch)
        self._watch = None
        for task in list(self._sends):
            await asyncio.gather(task, return_exceptions=True)

    def _changed(self, flags: FlagSet, reason: str) -> None:
        self.service.flags_changed()
        if self.monitor is not None:
            self.monitor.set_flag_allows(flags.enabled("memory_governor"))
        if self.hub is not None:
            task = asyncio.get_running_loop().create_task(
                self.hub.set_browser_flags(flags.browser_flags())
            )
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
        off = [name for name, value in flags.browser_flags().items() if value is False]
        off += [name for name in ("memory_governor", "chat_strategies") if not flags.enabled(name)]
        self.service.log_event(
            "warning" if off else "info",
            "flags_changed",
            f"feature flags v{flags.version}: {reason}"
            + (f" — off: {', '.join(sorted(set(off)))}" if off else ""),
            data={"version": flags.version, "pinned_to": flags.pinned_to},
        )


__all__ = ["FlagWiring"]
