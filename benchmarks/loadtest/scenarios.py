"""The load-test scenarios: what runs, with which options, and which faults.

A :class:`Scenario` is pure data: the hub's ``serve`` options, one or more groups of simulated
workers (each group is one ``novelgen sim-worker`` process with its own options), the number
of tasks, and the moments (fractions of the job done) at which the hub is SIGKILLed and
restarted. :func:`benchmarks.loadtest.harness.run_scenario` runs one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

FAST_IMAGES = ("--reuse-images", "64", "--image-size", "64")
"""Pre-drawn images, so Pillow's drawing is not what the load test measures."""
ZERO_LATENCY = ("--latency", "0", "--latency-sigma", "0")
FAULT_HUB = ("--backoff-base", "0.05", "--restart-grace", "1", "--max-failures", "20")
"""Fault scenarios: quick retries; a worker that went away without a word is given up on (its
attempts re-queued) after 1 s instead of the default 30 s; and a task dies after 20 counted
failures instead of 5. A lost worker (crash, long disconnect) counts against the task it held,
so with ~10 % of attempts failing, 5 in a row happen to about one task in 10,000 (measured:
``chaos`` at 10,000 tasks ended ``incomplete`` with one dead task); the scenarios test that
nothing is lost or duplicated, not the dead-task policy."""
SMALL_LATENCY = ("--latency", "0.01", "--latency-sigma", "0")


@dataclass(frozen=True)
class WorkerGroup:
    """``count`` simulated tabs in one ``novelgen sim-worker`` process."""

    count: int
    options: tuple[str, ...] = ()
    """sim-worker options after the defaults (``FAST_IMAGES``, ``ZERO_LATENCY``); a later
    option wins, so these override the defaults."""


@dataclass(frozen=True)
class Scenario:
    name: str
    tasks: int
    groups: tuple[WorkerGroup, ...]
    description: str = ""
    hub_options: tuple[str, ...] = ()
    kill_hub_at: tuple[float, ...] = ()
    """Fractions of the tasks done (as the client sees them) at which the hub is SIGKILLed
    and started again with the same data dir and port."""
    restart_delay: float = 0.2
    """Seconds between the SIGKILL and the new ``serve``."""
    must_finish: bool = True
    """Every task must end ``done`` and the job ``finished`` (``lost`` is counted)."""
    timeout: float = 600.0
    """Seconds from submit to the job's end before the run is declared a failure."""
    interval: float = 0.25
    """The client's subscribe interval."""
    seed: int = 1
    workers_hear_bye: bool = True
    """Every worker is connected when the hub stops, so each must exit on the hub's ``bye``.
    False where a worker may be away at that moment (dropped, crashed, or still in its
    reconnect backoff after a hub restart): it is stopped with SIGTERM instead."""
    tags: tuple[str, ...] = field(default_factory=tuple)
    style: bool = False
    """Submit a generated Full Script with a style bible (reference images, ``@`` mentions)
    instead of inline prompts; ``chat_strategy`` then groups its pages or chapters."""
    chat_strategy: str | None = None

    @property
    def workers(self) -> int:
        return sum(group.count for group in self.groups)


def _split(workers: int, processes: int, options: tuple[str, ...]) -> tuple[WorkerGroup, ...]:
    processes = max(1, min(processes, workers))
    sizes = [workers // processes + (1 if i < workers % processes else 0) for i in range(processes)]
    return tuple(WorkerGroup(size, options) for size in sizes)


def throughput(
    tasks: int, workers: int, *, image_size: int = 64, processes: int = 1, name: str = ""
) -> Scenario:
    """Zero-latency workers: how many durable completions per second the hub sustains."""
    options = ("--image-size", str(image_size))
    return Scenario(
        name=name or f"throughput-{tasks}x{workers}",
        tasks=tasks,
        groups=_split(workers, processes, options),
        description=f"{tasks} tasks, {workers} zero-latency workers in {processes} process(es), "
        f"{image_size} px images from a bank of 64",
        timeout=max(120.0, tasks * 0.1),
        tags=("throughput",),
    )


def styled(
    tasks: int, workers: int, *, chat_strategy: str = "page", kill_hub_at: tuple[float, ...] = ()
) -> Scenario:
    """A script composed with a style bible: every prompt is composed, each connection gets
    the reference images once, pages (or chapters) stay in one conversation on one worker;
    optionally the hub is SIGKILLed mid-job."""
    kills = (
        f", hub SIGKILLed at {', '.join(f'{k:.0%}' for k in kill_hub_at)}" if kill_hub_at else ""
    )
    return Scenario(
        name=f"styled-{chat_strategy}-{tasks}x{workers}" + ("-kill" if kill_hub_at else ""),
        tasks=tasks,
        groups=(WorkerGroup(workers, SMALL_LATENCY),),
        description=f"{tasks} panels of a generated script composed with a style bible (2 "
        f"reference images), chat strategy {chat_strategy}, {workers} workers{kills}",
        hub_options=FAULT_HUB if kill_hub_at else (),
        kill_hub_at=kill_hub_at,
        workers_hear_bye=not kill_hub_at,
        timeout=180.0 + tasks * 0.2,
        style=True,
        chat_strategy=chat_strategy,
        tags=("style",),
    )


def efficiency(workers: int, *, latency: float = 0.2, seconds: float = 12.0) -> Scenario:
    """Fixed-latency workers: N workers should reach N times one worker's rate."""
    tasks = math.ceil(workers * seconds / latency)
    options = ("--latency", str(latency), "--latency-sigma", "0")
    return Scenario(
        name=f"efficiency-{workers}w-{int(latency * 1000)}ms",
        tasks=tasks,
        groups=(WorkerGroup(workers, options),),
        description=f"{tasks} tasks, {workers} workers with a fixed {latency} s latency",
        timeout=seconds * 4 + 60,
        tags=("efficiency",),
    )


def _fault(
    name: str,
    description: str,
    tasks: int,
    workers: int,
    options: tuple[str, ...],
    **kwargs: object,
) -> Scenario:
    base: dict[str, object] = {
        "name": f"{name}-{tasks}x{workers}",
        "tasks": tasks,
        "groups": (WorkerGroup(workers, SMALL_LATENCY + options),),
        "description": description,
        "hub_options": FAULT_HUB,
        "timeout": 180.0 + tasks * 0.2,
        "tags": ("fault",),
    }
    base.update(kwargs)
    return Scenario(**base)  # type: ignore[arg-type]


def fault(kind: str, tasks: int = 100, workers: int = 5) -> Scenario:
    """One fault kind (see :data:`FAULT_KINDS`) over ``tasks`` × ``workers``."""
    if kind == "disconnect":
        return _fault(
            kind,
            "every 7th attempt the worker's connection drops mid-task (no close frame); it is "
            "back 0.2 s later, within the hub's restart grace, and delivers",
            tasks,
            workers,
            ("--disconnect-every", "7", "--away", "0.2"),
            workers_hear_bye=False,
        )
    if kind == "crash":
        return _fault(
            kind,
            "every 9th attempt the worker process crashes (forgets everything) and reconnects "
            "with a new instance id",
            tasks,
            workers,
            ("--crash-every", "9"),
            workers_hear_bye=False,
        )
    if kind == "duplicate":
        return _fault(
            kind,
            "every 3rd result is sent twice",
            tasks,
            workers,
            ("--duplicate-every", "3"),
        )
    if kind == "late":
        return _fault(
            kind,
            "every 6th attempt the connection drops and the worker stays away 1.5 s, longer "
            "than the hub's 0.5 s restart grace: the task is re-queued and the result arrives "
            "late (accepted once, the other attempt cancelled)",
            tasks,
            workers,
            ("--disconnect-every", "6", "--away", "1.5"),
            hub_options=(*FAULT_HUB, "--restart-grace", "0.5"),
            workers_hear_bye=False,
        )
    if kind == "slow":
        fast = max(1, workers - 1)
        return _fault(
            kind,
            f"{fast} workers at 10 ms and one slow worker at 1 s per image",
            tasks,
            workers,
            (),
            groups=(
                WorkerGroup(fast, SMALL_LATENCY),
                WorkerGroup(1, ("--latency", "1.0", "--latency-sigma", "0")),
            ),
        )
    if kind == "ratelimit":
        return _fault(
            kind,
            "a rate-limit storm: all workers share one account and every 12th attempt of each "
            "answers rate_limited (reset 0.5 s, the scheduler rests the account ≥5 s)",
            tasks,
            workers,
            ("--accounts", "1", "--rate-limit-every", "12", "--rate-limit-reset", "0.5"),
        )
    if kind == "memory":
        return _fault(
            kind,
            "after every 8th attempt the worker reports an unresponsive tab with a large "
            "memory figure for 0.5 s (the hub must not give it work meanwhile), then ok",
            tasks,
            workers,
            ("--memory-pressure-every", "8", "--pressure-seconds", "0.5"),
        )
    if kind == "failures":
        return _fault(
            kind,
            "10 % of attempts fail transiently and are retried",
            tasks,
            workers,
            ("--fail-rate", "0.1"),
        )
    if kind == "hub-kill":
        return _fault(
            kind,
            "the hub is SIGKILLed at 40 % done and started again on the same data dir and port; "
            "workers and client reconnect by themselves",
            tasks,
            workers,
            ("--latency", "0.05", "--latency-sigma", "0"),
            kill_hub_at=(0.4,),
            workers_hear_bye=False,
        )
    if kind == "hub-kill-fast":
        return _fault(
            kind,
            "zero-latency workers and the hub SIGKILLed at 30 % and 60 %: images written but "
            "not yet committed are caught in flight and must be adopted once, never twice",
            tasks,
            workers,
            ("--latency", "0", "--latency-sigma", "0"),
            kill_hub_at=(0.3, 0.6),
            workers_hear_bye=False,
        )
    if kind == "chaos":
        return _fault(
            kind,
            "everything at once: disconnects, crashes, duplicate results, transient failures, "
            "memory pressure, and two hub SIGKILLs (at 25 % and 60 %)",
            tasks,
            workers,
            (
                "--latency",
                "0.03",
                "--latency-sigma",
                "0.3",
                "--disconnect-every",
                "11",
                "--crash-every",
                "17",
                "--duplicate-every",
                "5",
                "--fail-rate",
                "0.05",
                "--memory-pressure-every",
                "13",
                "--pressure-seconds",
                "0.3",
            ),
            kill_hub_at=(0.25, 0.6),
            workers_hear_bye=False,
        )
    raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")


FAULT_KINDS = (
    "disconnect",
    "crash",
    "duplicate",
    "late",
    "slow",
    "ratelimit",
    "memory",
    "failures",
    "hub-kill",
    "hub-kill-fast",
    "chaos",
)


def memory_storm(tasks: int = 1000, workers: int = 10, *, growth_mib: int = 20) -> Scenario:
    """Tabs whose reported heaps grow ``growth_mib`` an attempt on a synthetic 8 GiB machine
    with 3,000 MiB in use besides them: memory crosses 80 % again and again; each time the
    governor stops dispatch, reloads the idle heavy tabs (heaps back to 100 MiB), lets the
    tabs back once under 60 %. Nothing may be lost or repeated; the time held is reported."""
    options = (*SMALL_LATENCY, "--heap-base", "100", "--heap-growth", str(growth_mib))
    return Scenario(
        name=f"memory-storm-{tasks}x{workers}",
        tasks=tasks,
        groups=_split(workers, 2, options),
        description=f"{tasks} tasks, {workers} tabs (2 processes) whose heaps grow "
        f"{growth_mib} MiB an attempt, synthetic 8 GiB machine (3,000 MiB used besides the "
        "tabs): repeated memory pressure, cleanup by reloading idle tabs",
        hub_options=(*FAULT_HUB, "--synthetic-memory", "8192,3000"),
        timeout=300.0 + tasks * 0.3,
        tags=("memory",),
    )


MATRIX_TASKS = (100, 1000, 3000, 10000)
MATRIX_WORKERS = (1, 5, 10)


def matrix(
    tasks: tuple[int, ...] = MATRIX_TASKS, workers: tuple[int, ...] = MATRIX_WORKERS
) -> list[Scenario]:
    return [throughput(t, w) for t in tasks for w in workers]


def named(name: str, tasks: int | None = None, workers: int | None = None) -> Scenario:
    """A scenario by name: ``throughput``, ``efficiency`` or a fault kind, sized by
    ``tasks``/``workers`` (defaults: 3,000 × 10 for throughput, 100 × 5 for faults)."""
    if name == "throughput":
        return throughput(tasks or 3000, workers or 10)
    if name == "memory-storm":
        return memory_storm(tasks or 1000, workers or 10)
    if name == "efficiency":
        scenario = efficiency(workers or 5)
        return scenario if tasks is None else replace(scenario, tasks=tasks)
    return fault(name, tasks or 100, workers or 5)
