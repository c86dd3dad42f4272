"""What the memory governor looks at: one reading of the system, the browsers and their tabs.

Plain data, no I/O: the monitor (``memory.monitor``) builds readings from psutil
(``memory.probe``) and from the workers' ``status`` reports, and tests build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TabMemory:
    """One worker (a ChatGPT tab, or a simulated one) as the governor sees it."""

    worker_id: str
    browser: str | None = None  # key of the BrowserMemory it runs in, when known
    heap_bytes: int | None = None  # the tab's JS heap (performance.memory), from its status
    busy: bool = False  # an attempt in hand: never reloaded or sent to a new chat
    conversation_turns: int | None = None
    cleanable: bool = False  # it answers ``cleanup`` (hello capability)


@dataclass(frozen=True, slots=True)
class BrowserMemory:
    """One browser process tree (all the tabs of one Chrome profile).

    ``key`` is stable while the browser lives ("pid:1234"); ``measure`` says how the bytes were
    counted: "pss" (proportional set size, shared pages split between processes: sums to what
    the tree really costs), "rss" (over-counts shared pages), "pss+rss", or "heap" when only
    the tabs' JS heaps are known (simulated tabs, a browser the desktop cannot see)."""

    key: str
    bytes: int
    measure: str = "pss"
    processes: int = 0
    worker_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """Everything the governor decides on, taken at ``ts`` (epoch seconds).

    ``taken_at`` is the monotonic clock when the system figure was read: the monitor measures
    its detection latency from it."""

    ts: float
    system_percent: float
    system_total_bytes: int = 0
    system_used_bytes: int = 0
    desktop_bytes: int | None = None
    browsers: tuple[BrowserMemory, ...] = ()
    tabs: tuple[TabMemory, ...] = ()
    taken_at: float = 0.0
    synthetic: bool = False
    notes: tuple[str, ...] = field(default=())

    def browser(self, key: str) -> BrowserMemory | None:
        return next((b for b in self.browsers if b.key == key), None)

    def tabs_of(self, key: str) -> list[TabMemory]:
        return [t for t in self.tabs if t.browser == key]
