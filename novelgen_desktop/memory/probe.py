"""The operating-system side of the memory monitor: every call it makes into psutil and /proc.

Why a module of its own: the governor decides from readings, and its tests build readings by
hand; only this module touches ``/proc``. Each function here answers one question the monitor
asks at its own rate, and what each costs decides where it may run (measured on Linux 6,
Python 3.11, psutil 7.2, 2 cores, ~85 processes, a headless Chromium of 9 processes):

* :func:`read_system` — how full is the machine? ~40 µs: every 100 ms on the loop thread.
* :func:`own_memory` — how much does this app cost? ~0.4 ms: every 2 s.
* :func:`tree_memory` — how much does one browser cost? ~35 ms for that Chromium (4 ms to
  find the tree, then 2–6 ms of ``smaps_rollup`` per process): on a worker thread, and a
  browser with ten tabs costs more.
* :func:`roots_by_profile` — which browsers run? ~15 ms (every process's name and parent).
* :class:`BrowserLocator` — which browser is this worker in? ~25 ms for a new connection
  (every process's sockets), then ~0.4 ms from its checked cache.

Chromium is many processes sharing pages, so a browser's cost is the PSS of its whole tree:
RSS counts each shared page once per process (about three times too much for a browser with a
few tabs). PSS is read from ``smaps_rollup`` on Linux; where it cannot be read (another
platform, another user's process) the process counts with its RSS and ``measure`` says so.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import psutil

# How a memory figure was measured (ProcessTreeMemory.measure, MemorySample.browser_measure).
MEASURE_PSS = "pss"
MEASURE_RSS = "rss"  # PSS unreadable (another platform, or not allowed): RSS overcounts
MEASURE_MIXED = "pss+rss"  # some processes gave PSS, some only RSS
MEASURE_NONE = "none"  # no process could be read

BROWSER_PROCESS_NAMES: tuple[str, ...] = ("chromium", "chrome", "google-chrome", "chrome-browser")
"""Process names of a Chromium-family browser on Linux (compared without case or ``.exe``)."""

LINUX_NAME_LENGTH = 15
"""Linux keeps this many characters of a process name ("chromium-browse")."""

MAX_CACHED_PORTS = 1024
"""Ports a :class:`BrowserLocator` remembers; the oldest is forgotten first. Workers reconnect
for days, and every reconnection comes from a new port."""

MAX_PARENT_STEPS = 64
"""How far :func:`browser_root` climbs at most (a guard; Chromium's trees are 3 deep)."""


@dataclass(frozen=True, slots=True)
class SystemMemory:
    """The machine's memory as the dispatch thresholds see it: used = total − available
    (page cache the kernel can drop is not "used")."""

    total_bytes: int
    used_bytes: int
    percent: float


_MEMINFO = "/proc/meminfo"


def _meminfo_fast() -> tuple[int, int] | None:
    """(total, available) from the first lines of ``/proc/meminfo``: ~40 µs against psutil's
    ~90 µs (it parses every line in Python). None where the file or a field is missing (not
    Linux, a kernel without MemAvailable)."""
    try:
        with open(_MEMINFO, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    total = available = None
    for line in head.split(b"\n")[:8]:
        if line.startswith(b"MemTotal:"):
            total = int(line.split()[1]) * 1024
        elif line.startswith(b"MemAvailable:"):
            available = int(line.split()[1]) * 1024
    if total is None or available is None:
        return None
    return total, available


def read_system() -> SystemMemory:
    """The machine's memory now: on Linux the two fields of ``/proc/meminfo`` it needs
    (~40 µs), elsewhere ``psutil.virtual_memory`` (~90 µs). Cheap enough for the event loop's
    thread every 100 ms (docs/benchmarks.md: the monitor's CPU overhead)."""
    fast = _meminfo_fast()
    if fast is not None:
        total, available = fast
    else:
        virtual = psutil.virtual_memory()
        total, available = int(virtual.total), int(virtual.available)
    used = max(0, total - available)
    percent = used / total * 100.0 if total > 0 else 0.0
    return SystemMemory(total_bytes=total, used_bytes=used, percent=percent)


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """One process's memory. When PSS could not be read (``measure`` is ``"rss"``) both
    ``pss_bytes`` and ``uss_bytes`` hold the best figure there is, so sums stay comparable."""

    pid: int
    pss_bytes: int
    uss_bytes: int
    rss_bytes: int
    measure: str  # MEASURE_PSS or MEASURE_RSS


def read_process(process: psutil.Process) -> ProcessMemory | None:
    """The memory of one process, or None when it is gone, a zombie or unreadable.

    PSS and USS come from ``memory_full_info`` (``smaps_rollup`` on Linux); another user's
    process refuses that, and then its RSS stands in. A zombie reads as zero bytes and counts
    as gone: it has no memory left, and its parent merely has not reaped it yet.
    """
    try:
        try:
            full = process.memory_full_info()
        except psutil.AccessDenied:
            rss = int(process.memory_info().rss)
            reading = ProcessMemory(process.pid, rss, rss, rss, MEASURE_RSS)
        else:
            rss = int(full.rss)
            pss = getattr(full, "pss", None)  # Linux only
            uss = getattr(full, "uss", None)  # Linux, macOS and Windows
            uss_bytes = int(uss) if uss is not None else rss
            if pss is None:
                reading = ProcessMemory(process.pid, rss, uss_bytes, rss, MEASURE_RSS)
            else:
                reading = ProcessMemory(process.pid, int(pss), uss_bytes, rss, MEASURE_PSS)
    except psutil.Error:  # gone (NoSuchProcess, ZombieProcess) or not even RSS is allowed
        return None
    return reading if reading.rss_bytes > 0 else None


class Measured(Protocol):
    """Anything counted one way or another: a process, a tree, a browser's reading."""

    @property
    def measure(self) -> str: ...


def measure_of(readings: Iterable[Measured]) -> str:
    """How a sum over ``readings`` was measured: all the same way (PSS, RSS), mixed, or none
    at all."""
    measures = {reading.measure for reading in readings}
    if not measures:
        return MEASURE_NONE
    return measures.pop() if len(measures) == 1 else MEASURE_MIXED


@dataclass(frozen=True, slots=True)
class ProcessTreeMemory:
    """What one process tree (a browser and all its helpers) costs."""

    root_pid: int
    pss_bytes: int
    uss_bytes: int
    rss_bytes: int
    processes: int  # how many processes were read (vanished ones are not counted)
    measure: str  # MEASURE_PSS, MEASURE_RSS or MEASURE_MIXED (MEASURE_NONE if none was read)

    @classmethod
    def from_readings(cls, root_pid: int, readings: Sequence[ProcessMemory]) -> ProcessTreeMemory:
        return cls(
            root_pid=root_pid,
            pss_bytes=sum(r.pss_bytes for r in readings),
            uss_bytes=sum(r.uss_bytes for r in readings),
            rss_bytes=sum(r.rss_bytes for r in readings),
            processes=len(readings),
            measure=measure_of(readings),
        )


def tree_processes(root_pid: int) -> list[psutil.Process] | None:
    """The root and all its descendants, root first; None when the root is gone.

    Finding the descendants reads every process's parent (one pass over ``/proc``), so a
    caller that reads the same tree often may keep this list and look again only now and then.
    """
    try:
        root = psutil.Process(root_pid)
    except psutil.NoSuchProcess:
        return None
    try:
        descendants = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:  # not on Linux; elsewhere the root alone is still worth reading
        descendants = []
    return [root, *descendants]


def _is_gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def tree_memory(root_pid: int) -> ProcessTreeMemory | None:
    """The memory of ``root_pid`` and all its descendants; None when the root is gone (or a
    zombie). Descendants that vanish while the tree is read are left out of the sum."""
    processes = tree_processes(root_pid)
    if processes is None:
        return None
    root, descendants = processes[0], processes[1:]
    root_reading = read_process(root)
    if root_reading is None and _is_gone(root):
        return None
    readings = [] if root_reading is None else [root_reading]
    readings.extend(r for r in map(read_process, descendants) if r is not None)
    return ProcessTreeMemory.from_readings(root_pid, readings)


def own_memory() -> int:
    """This process's own memory in bytes: its USS (pages no other process shares), or its RSS
    where USS cannot be read. About 0.4 ms on Linux (``smaps_rollup``); 0 if unreadable."""
    reading = read_process(psutil.Process())
    return reading.uss_bytes if reading is not None else 0


# --- which browser is which --------------------------------------------------------------


def _normal_name(name: str) -> str:
    return name.strip().lower().removesuffix(".exe")


def _name_matches(name: str, wanted: Collection[str]) -> bool:
    """``name`` is one of ``wanted`` (already normalised), allowing for Linux cutting process
    names to 15 characters."""
    name = _normal_name(name)
    if name in wanted:
        return True
    return len(name) == LINUX_NAME_LENGTH and any(w.startswith(name) for w in wanted)


def _has_type_switch(cmdline: Sequence[str]) -> bool:
    """Chromium starts every helper (zygote, renderer, GPU, network service) with
    ``--type=...``; only the browser process itself has none."""
    return any(arg.startswith("--type=") for arg in cmdline)


def _same_path(a: str, b: str) -> bool:
    return os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b))


def _uses_profile(cmdline: Sequence[str], user_data_dir: str) -> bool:
    prefix = "--user-data-dir="
    return any(
        arg.startswith(prefix) and _same_path(arg[len(prefix) :], user_data_dir) for arg in cmdline
    )


def roots_by_profile(
    user_data_dir: str | None = None,
    names: Iterable[str] = BROWSER_PROCESS_NAMES,
) -> list[int]:
    """Root browser processes found by process name, in pid order: the fallback when a
    worker's connection cannot be traced to its browser.

    A root is a process named one of ``names`` without a ``--type=`` argument (Chromium's
    helpers all have one), and — given ``user_data_dir`` — with ``--user-data-dir=`` naming
    that directory. A root whose parent is itself a root is left out: it belongs to that
    tree (a launcher script named like the browser, or a browser started by one). Helpers
    orphaned by a crashed browser have ``--type=`` and are not roots.
    """
    wanted = frozenset(_normal_name(n) for n in names)
    parents: dict[int, int] = {}
    for process in psutil.process_iter(["name", "ppid"]):
        info = process.info
        if not _name_matches(info.get("name") or "", wanted):
            continue
        try:
            cmdline = process.cmdline()
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            cmdline = []
        if _has_type_switch(cmdline):
            continue
        if user_data_dir is not None and not _uses_profile(cmdline, user_data_dir):
            continue
        parents[process.pid] = info.get("ppid") or 0
    return sorted(pid for pid, ppid in parents.items() if ppid not in parents)


def _runs_same_executable(a: psutil.Process, b: psutil.Process) -> bool:
    """Same program: the same executable file where both can be read, else the same name."""
    try:
        exe_a, exe_b = a.exe(), b.exe()
    except psutil.AccessDenied:
        exe_a = exe_b = ""
    if exe_a and exe_b:
        return exe_a == exe_b
    return _normal_name(a.name()) == _normal_name(b.name())


def browser_root(process: psutil.Process) -> psutil.Process:
    """The browser process that ``process`` is a helper of.

    The rule: climb from ``process`` to its parent while the process has a ``--type=``
    argument (a Chromium helper) and its parent runs the same executable; the process where
    the climb stops is the root. So a process without ``--type=`` is its own root, and a
    helper whose parent is another program (a helper whose browser died and left it to init)
    is the top of what can be attributed. Raises ``psutil.Error`` if ``process`` vanishes.
    """
    current = process
    for _ in range(MAX_PARENT_STEPS):
        try:
            cmdline = current.cmdline()
        except psutil.AccessDenied:
            return current
        if not _has_type_switch(cmdline):
            return current
        try:
            parent = current.parent()
            if parent is None or not _runs_same_executable(current, parent):
                return current
        except psutil.Error:  # the parent went away, or is not ours to look at
            return current
        current = parent
    return current


def socket_owner(local_port: int, remote_port: int | None = None) -> int | None:
    """The pid owning the connected TCP socket whose local port is ``local_port`` (and whose
    remote port is ``remote_port``, when given); None when nobody visible owns one, or when
    two processes do and the answer would be a guess.

    This reads every process's sockets (~20 ms for ~85 processes): once per new connection,
    not per reading. Another user's sockets have no visible owner.
    """
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS without root
        return None
    owners = {
        conn.pid
        for conn in connections
        if conn.pid is not None
        and conn.laddr
        and conn.laddr.port == local_port
        and conn.raddr
        and (remote_port is None or conn.raddr.port == remote_port)
    }
    return owners.pop() if len(owners) == 1 else None


@dataclass(frozen=True, slots=True)
class _ProcessIdentity:
    """A pid and its start time: a pid reused by a new process has another start time."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, process: psutil.Process) -> _ProcessIdentity:
        return cls(process.pid, process.create_time())

    def process(self) -> psutil.Process | None:
        """The process, if it is still the one this identity was taken from."""
        try:
            process = psutil.Process(self.pid)
            if process.create_time() != self.create_time or _is_gone(process):
                return None
        except psutil.Error:
            return None
        return process


def _connected_socket_inodes(local_port: int, remote_port: int | None) -> frozenset[int] | None:
    """Linux: the inodes of the connected TCP sockets with that local (and remote) port, from
    ``/proc/net/tcp`` and ``tcp6``; None on other platforms. An inode names one socket for as
    long as it is open, so it tells a connection apart from a later one on the same port."""
    if not psutil.LINUX:
        return None
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)  # the header
                for line in lines:
                    fields = line.split()
                    if len(fields) < 10:
                        continue
                    local = int(fields[1].rsplit(":", 1)[1], 16)
                    remote = int(fields[2].rsplit(":", 1)[1], 16)
                    inode = int(fields[9])  # 0 for TIME_WAIT: no socket left
                    if (
                        local == local_port
                        and remote != 0  # not a listening socket
                        and (remote_port is None or remote == remote_port)
                        and inode != 0
                    ):
                        inodes.add(inode)
        except (OSError, ValueError, IndexError):  # no IPv6, or a line we cannot read
            continue
    return frozenset(inodes)


def _holds_socket(pid: int, inodes: frozenset[int]) -> bool:
    """Linux: whether process ``pid`` has one of these socket inodes open. Reads only its
    file descriptors (``/proc/<pid>/fd``): well under a millisecond for a Chromium helper."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}") in wanted:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


@dataclass(frozen=True, slots=True)
class _TracedPort:
    """What a port was traced to, and how to tell it still holds: on Linux the connection's
    socket inodes (still open in the owner: the same connection), elsewhere the owner still
    having a connection from the port (:meth:`psutil.Process.net_connections`)."""

    owner: _ProcessIdentity
    root: _ProcessIdentity | None  # None: the connection is this process's own
    socket_inodes: frozenset[int] | None

    def still_holds(self, peer_port: int, server_port: int | None) -> bool:
        owner = self.owner.process()
        if owner is None or (self.root is not None and self.root.process() is None):
            return False
        if self.socket_inodes is not None:
            return _holds_socket(owner.pid, self.socket_inodes)
        try:
            connections = owner.net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(
            conn.laddr
            and conn.laddr.port == peer_port
            and conn.raddr
            and (server_port is None or conn.raddr.port == server_port)
            for conn in connections
        )


class BrowserLocator:
    """Maps a worker's WebSocket connection to the browser process that made it, so the
    governor can charge a browser's memory to the tabs that live in it.

    The extension's service worker connects from Chromium's network-service process (a
    helper); its socket's local port is the peer port the hub sees. :meth:`root_for_peer`
    finds that socket's owner (:func:`socket_owner`, ~20 ms) and climbs to its browser
    (:func:`browser_root`). Answers are cached by port and checked before use, because ports
    are reused: the cached owner and root must be the same processes (pid and start time)
    and the owner must still hold the very socket it was found with. A checked answer from
    the cache costs about 0.4 ms on Linux, so a monitor may ask for every worker each time;
    that is why a connection of this process's own is remembered too (as None).
    """

    def __init__(self) -> None:
        self._own_pid = os.getpid()
        self._by_port: dict[tuple[int, int | None], _TracedPort] = {}

    def root_for_peer(self, peer_port: int, server_port: int | None = None) -> int | None:
        """The pid of the browser whose process connected from ``peer_port``; None when the
        connection is this process's own (simulated workers connect over loopback too) or
        its owner cannot be seen. ``server_port`` (the hub's port) rules out an unrelated
        socket that happens to use the same local port towards another server."""
        key = (peer_port, server_port)
        cached = self._by_port.get(key)
        if cached is not None:
            if cached.still_holds(peer_port, server_port):
                return cached.root.pid if cached.root is not None else None
            del self._by_port[key]
        owner_pid = socket_owner(peer_port, server_port)
        if owner_pid is None:
            return None
        try:
            owner = psutil.Process(owner_pid)
            root = browser_root(owner) if owner_pid != self._own_pid else None
            owner_identity = _ProcessIdentity.of(owner)
            root_identity = _ProcessIdentity.of(root) if root is not None else None
        except psutil.Error:  # gone while we looked
            return None
        if root is not None and root.pid == self._own_pid:
            root_identity = None
        inodes = _connected_socket_inodes(peer_port, server_port)
        if inodes is None or _holds_socket(owner_pid, inodes):  # else it changed meanwhile
            if len(self._by_port) >= MAX_CACHED_PORTS:
                del self._by_port[next(iter(self._by_port))]
            self._by_port[key] = _TracedPort(owner_identity, root_identity, inodes)
        return root_identity.pid if root_identity is not None else None

    def forget(self, peer_port: int) -> None:
        """Drop what is known about ``peer_port`` (its connection closed)."""
        for key in [k for k in self._by_port if k[0] == peer_port]:
            del self._by_port[key]

    @staticmethod
    def roots_by_profile(
        user_data_dir: str | None = None,
        names: Iterable[str] = BROWSER_PROCESS_NAMES,
    ) -> list[int]:
        """See :func:`roots_by_profile` (here too, so a locator answers both questions)."""
        return roots_by_profile(user_data_dir, names)


__all__ = [
    "BROWSER_PROCESS_NAMES",
    "MEASURE_MIXED",
    "MEASURE_NONE",
    "MEASURE_PSS",
    "MEASURE_RSS",
    "BrowserLocator",
    "ProcessMemory",
    "ProcessTreeMemory",
    "SystemMemory",
    "browser_root",
    "measure_of",
    "own_memory",
    "read_process",
    "read_system",
    "roots_by_profile",
    "socket_owner",
    "tree_memory",
    "tree_processes",
]
