"""The memory probe against real processes and real sockets: no psutil is faked here.

Process trees are spawned Python and shell processes; connections go to a TCP server the test
opens on loopback; the last test drives a real headless Chromium when one is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from novelgen_desktop.memory import probe
from novelgen_desktop.memory.probe import (
    MEASURE_PSS,
    BrowserLocator,
    ProcessMemory,
    read_process,
    read_system,
    roots_by_profile,
    tree_memory,
)

linux_only = pytest.mark.skipif(not psutil.LINUX, reason="PSS and socket owners via /proc")
CHROMIUM = Path("/usr/bin/chromium")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Everything the test started in ``proc``'s session, children included."""
    with contextlib.suppress(ProcessLookupError):  # already gone, with all it started
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawned() -> Iterator[Spawn]:
    """Start processes in sessions of their own; kill every one at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        args: list[str],
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            args, stdin=stdin, stdout=stdout, stderr=stderr, env=env, start_new_session=True
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        kill_group(proc)


# --- the machine and this process --------------------------------------------------------


def test_read_system_is_total_minus_available() -> None:
    system = read_system()
    virtual = psutil.virtual_memory()
    assert system.total_bytes == virtual.total
    assert 0 < system.used_bytes <= system.total_bytes
    assert 0.0 < system.percent <= 100.0
    assert system.percent == pytest.approx(system.used_bytes / system.total_bytes * 100)
    # Another process may allocate in between; a few percent is plenty of room.
    assert system.percent == pytest.approx(virtual.percent, abs=5.0)


def test_own_memory_is_this_process_uss() -> None:
    own = probe.own_memory()
    rss = psutil.Process().memory_info().rss
    assert 10 * 2**20 < own <= rss


# --- process trees ------------------------------------------------------------------------

SLEEPER = "import time; time.sleep(120)"
PARENT_OF_TWO = (
    "import subprocess, sys, time\n"
    f"kids = [subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]) for _ in range(2)]\n"
    "time.sleep(120)\n"
)


@linux_only
def test_tree_memory_sums_pss_over_a_parent_and_its_children(spawned: Spawn) -> None:
    parent = spawned([sys.executable, "-c", PARENT_OF_TWO])
    wait_for(lambda: len(psutil.Process(parent.pid).children()) == 2, "two children")

    tree = tree_memory(parent.pid)
    assert tree is not None
    assert tree.root_pid == parent.pid
    assert tree.processes == 3
    assert tree.measure == MEASURE_PSS
    assert 0 < tree.uss_bytes <= tree.pss_bytes <= tree.rss_bytes
    # Three Pythons share their interpreter's pages: PSS splits them, RSS counts them thrice.
    assert tree.pss_bytes < tree.rss_bytes


def test_tree_memory_of_a_vanished_root_is_none(spawned: Spawn) -> None:
    proc = spawned([sys.executable, "-c", SLEEPER])
    wait_for(lambda: tree_memory(proc.pid) is not None, "the process")
    proc.kill()
    # Not reaped yet: a zombie has no memory left, so the tree is gone already.
    wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, "a zombie")
    assert tree_memory(proc.pid) is None
    proc.wait()
    assert tree_memory(proc.pid) is None


def test_a_process_vanishing_mid_read_is_skipped(spawned: Spawn) -> None:
    proc = spawned([sys.executable, "-c", SLEEPER])
    handle = psutil.Process(proc.pid)  # taken while it lived, as a tree walk would
    assert isinstance(read_process(handle), ProcessMemory)
    proc.kill()
    proc.wait()
    assert read_process(handle) is None


# --- finding browsers by name ---------------------------------------------------------------

# Longer than Linux's 15-character process names on purpose (the match must allow for the
# cut), and unique per test process in its first 15 characters (another run on this machine
# must not be found).
FAKE_BROWSER = f"nb{os.getpid() % 10**9}-browser-stand-in"


@pytest.fixture
def fake_browsers(tmp_path: Path, spawned: Spawn) -> tuple[int, int]:
    """Two fake browsers, copies of ``sh`` named ``FAKE_BROWSER``: one with profile ``a``
    and one with profile ``b``. Profile ``a`` has a helper with ``--type=renderer`` and a
    same-named child without it (a browser started by a browser: part of the outer tree)."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    browser = tmp_path / FAKE_BROWSER
    shutil.copy(sh, browser)
    idle = tmp_path / "idle.sh"
    idle.write_text("sleep 120 &\nwait\n")
    with_helpers = tmp_path / "with_helpers.sh"
    with_helpers.write_text(
        f'"{browser}" "{idle}" --type=renderer &\n"{browser}" "{idle}" &\nsleep 120 &\nwait\n'
    )
    a = spawned([str(browser), str(with_helpers), f"--user-data-dir={tmp_path / 'a'}"])
    b = spawned([str(browser), str(idle), f"--user-data-dir={tmp_path / 'b'}"])
    wait_for(lambda: len(psutil.Process(a.pid).children()) == 3, "the fake helpers")
    return a.pid, b.pid


@linux_only
def test_roots_by_profile_finds_browser_roots_not_their_helpers(
    tmp_path: Path, fake_browsers: tuple[int, int]
) -> None:
    a, b = fake_browsers
    assert roots_by_profile(names=(FAKE_BROWSER,)) == sorted([a, b])
    assert roots_by_profile(str(tmp_path / "a"), names=(FAKE_BROWSER,)) == [a]
    # The same directory spelled another way is the same profile.
    assert roots_by_profile(f"{tmp_path}/b/../b/", names=(FAKE_BROWSER,)) == [b]
    assert roots_by_profile(str(tmp_path / "c"), names=(FAKE_BROWSER,)) == []
    assert roots_by_profile(str(tmp_path / "a")) == []  # not a Chromium name
    assert BrowserLocator.roots_by_profile(str(tmp_path / "a"), names=(FAKE_BROWSER,)) == [a]


# --- tracing a connection to its browser --------------------------------------------------

# Connects to 127.0.0.1:argv[1] (from local port argv[2] when not 0), prints its local port,
# and stays connected; "close" on stdin closes the socket, end of stdin ends the process.
CLIENT = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "if int(sys.argv[2]):\n"
    "    s.bind(('127.0.0.1', int(sys.argv[2])))\n"
    "s.connect(('127.0.0.1', int(sys.argv[1])))\n"
    "print(s.getsockname()[1], flush=True)\n"
    "for line in sys.stdin:\n"
    "    s.close()\n"
    "    print('closed', flush=True)\n"
)
# Runs CLIENT as a helper (--type=network) of itself, the way Chromium's network service is
# a child of the browser process with the same executable.
CLIENT_UNDER_PARENT = (
    "import subprocess, sys\n"
    f"sys.exit(subprocess.call([sys.executable, '-c', {CLIENT!r}, *sys.argv[1:], "
    "'--type=network']))\n"
)


@pytest.fixture
def server() -> Iterator[socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    yield listener
    listener.close()


def accept_peer_port(listener: socket.socket, accepted: list[socket.socket]) -> int:
    """Accept one connection (kept open in ``accepted``); the port it came from."""
    conn, (_host, port) = listener.accept()
    accepted.append(conn)
    return int(port)


@pytest.fixture
def accepted() -> Iterator[list[socket.socket]]:
    conns: list[socket.socket] = []
    yield conns
    for conn in conns:
        conn.close()


@linux_only
def test_root_for_peer_is_the_connecting_process(
    server: socket.socket,
    accepted: list[socket.socket],
    spawned: Spawn,
) -> None:
    """A process without ``--type=`` is its own root (its parent, the test's Python, runs
    the same executable, but the climb only starts from a helper)."""
    server_port = server.getsockname()[1]
    client = spawned([sys.executable, "-c", CLIENT, str(server_port), "0"], stdin=subprocess.PIPE)
    peer = accept_peer_port(server, accepted)
    locator = BrowserLocator()
    assert locator.root_for_peer(peer) == client.pid
    assert locator.root_for_peer(peer, server_port=server_port) == client.pid
    # From that port to another server there is no connection, cached or not.
    assert locator.root_for_peer(peer, server_port=server_port + 1) is None
    locator.forget(peer)
    assert locator.root_for_peer(peer) == client.pid


@linux_only
def test_root_for_peer_climbs_from_a_helper_to_its_browser(
    server: socket.socket,
    accepted: list[socket.socket],
    spawned: Spawn,
) -> None:
    port = str(server.getsockname()[1])
    parent = spawned([sys.executable, "-c", CLIENT_UNDER_PARENT, port, "0"], stdin=subprocess.PIPE)
    peer = accept_peer_port(server, accepted)
    (helper,) = psutil.Process(parent.pid).children()
    assert "--type=network" in helper.cmdline()
    assert BrowserLocator().root_for_peer(peer) == parent.pid


@linux_only
def test_root_for_peer_stops_below_a_parent_running_another_program(
    server: socket.socket,
    accepted: list[socket.socket],
    spawned: Spawn,
) -> None:
    """A helper whose parent is another executable (here ``sh``) is as high as it goes."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    port = server.getsockname()[1]
    command = f"'{sys.executable}' -c \"$CLIENT\" {port} 0 --type=network; true"
    shell = spawned(
        [sh, "-c", command], env={**os.environ, "CLIENT": CLIENT}, stdin=subprocess.PIPE
    )
    peer = accept_peer_port(server, accepted)
    (helper,) = psutil.Process(shell.pid).children()
    assert BrowserLocator().root_for_peer(peer) == helper.pid


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ports :func:`probe.socket_owner` was asked about: the full scans of every
    process's sockets that the locator's cache is there to save."""
    asked: list[int] = []
    real_socket_owner = probe.socket_owner

    def counted(local_port: int, remote_port: int | None = None) -> int | None:
        asked.append(local_port)
        return real_socket_owner(local_port, remote_port)

    monkeypatch.setattr(probe, "socket_owner", counted)
    return asked


def test_root_for_peer_of_this_process_or_of_nobody_is_none(
    server: socket.socket, accepted: list[socket.socket], lookups: list[int]
) -> None:
    own = socket.create_connection(server.getsockname())
    try:
        peer = accept_peer_port(server, accepted)
        assert peer == own.getsockname()[1]
        locator = BrowserLocator()
        assert locator.root_for_peer(peer) is None  # a simulated worker in this process
        assert locator.root_for_peer(peer) is None
        if psutil.LINUX:  # remembered: simulated workers are asked about every reading too
            assert lookups == [peer]
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            free_port = unused.getsockname()[1]
        assert locator.root_for_peer(free_port) is None
    finally:
        own.close()


@linux_only
def test_a_cached_port_taken_by_another_process_gives_the_new_owner(
    server: socket.socket,
    accepted: list[socket.socket],
    spawned: Spawn,
    lookups: list[int],
) -> None:
    first = spawned(
        [sys.executable, "-c", CLIENT, str(server.getsockname()[1]), "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert first.stdout is not None and first.stdin is not None
    port = int(first.stdout.readline())
    assert accept_peer_port(server, accepted) == port
    locator = BrowserLocator()
    assert locator.root_for_peer(port) == first.pid
    assert locator.root_for_peer(port) == first.pid
    assert lookups == [port]  # the second answer came from the cache, checked

    # The first process lets go of the port but lives on; another connects from it.
    first.stdin.write(b"close\n")
    first.stdin.flush()
    assert first.stdout.readline() == b"closed\n"
    with socket.create_server(("127.0.0.1", 0)) as other_server:
        other_server.settimeout(30)
        second = spawned(
            [sys.executable, "-c", CLIENT, str(other_server.getsockname()[1]), str(port)],
            stdin=subprocess.PIPE,
        )
        assert accept_peer_port(other_server, accepted) == port
        assert locator.root_for_peer(port) == second.pid
        assert lookups == [port, port]


# --- a real browser -----------------------------------------------------------------------


@linux_only
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")
def test_headless_chromium_is_found_by_profile_and_by_its_connection(
    tmp_path: Path,
    server: socket.socket,
    accepted: list[socket.socket],
    spawned: Spawn,
) -> None:
    profile = tmp_path / "profile"
    host, port = server.getsockname()
    browser = spawned(
        [
            str(CHROMIUM),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"http://{host}:{port}/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    accept_peer_port(server, accepted)  # the browser is up and loading the page
    peers = open_peer_ports(server, accepted)
    assert peers, "Chromium kept none of its connections open"

    # The launcher script execs the browser, so the browser keeps the launcher's pid.
    assert roots_by_profile(str(profile)) == [browser.pid]
    tree = tree_memory(browser.pid)
    assert tree is not None
    assert tree.processes >= 2
    assert tree.measure == MEASURE_PSS
    assert 0 < tree.pss_bytes <= tree.rss_bytes

    locator = BrowserLocator()
    for peer in peers:
        owner = probe.socket_owner(peer, port)
        assert owner is not None and owner != browser.pid  # a helper: the network service
        assert any(arg.startswith("--type=") for arg in psutil.Process(owner).cmdline())
        assert locator.root_for_peer(peer, server_port=port) == browser.pid
        assert locator.root_for_peer(peer, server_port=port) == browser.pid  # from the cache


def open_peer_ports(listener: socket.socket, accepted: list[socket.socket]) -> list[int]:
    """Accept until a second passes without a new connection; the ports of those the peer
    still holds open. Chromium closes a speculative connection or two right away: only one
    it keeps has an owner to find."""
    listener.settimeout(1.0)
    with contextlib.suppress(TimeoutError):
        while True:
            accept_peer_port(listener, accepted)
    ports = []
    for conn in accepted:
        conn.setblocking(False)
        try:
            at_end = conn.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:  # nothing sent yet, and not closed
            at_end = False
        if not at_end:
            ports.append(conn.getpeername()[1])
    return ports
