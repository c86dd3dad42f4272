"""Feature flags' costs and speed: reading the set at dispatch, assigning variants, rollback.

- Every dispatch reads the set (two kill switches) and every attempt computes its variants:
  measured per call, against a scheduler decision measured in the same run; so is the
  single-tab breaker's look at an attempt's ending, with a full window.
- Variant assignment: calls per second and the largest deviation from the weights over
  N ids (the stable-hash property the A/B report depends on).
- Rollback: a process follows another's rollback by polling; the time from the rollback's
  commit to the watching process's listener, over many trials. The end-to-end figure in a
  running job (to the first attempt under the restored set) comes from
  tests/integration/test_flags_live.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import machine, new_job, scratch
from novelgen_desktop.engine.model import ErrorKind
from novelgen_desktop.engine.orchestration import OrchestrationBreaker
from novelgen_desktop.engine.runner import JobRunner, RunSettings
from novelgen_desktop.engine.scheduler import Scheduler, SchedulerPolicy, TaskSlot
from novelgen_desktop.flags.document import FlagSetting, Variant
from novelgen_desktop.flags.flagset import FlagSet, choose_variant
from novelgen_desktop.flags.service import FlagService, flag_files
from novelgen_desktop.sim.worker import SimBehaviour, make_simulated_workers

EXPERIMENT = FlagSetting(
    variants=(Variant("a", 10, False), Variant("b", 30, True), Variant("c", 60, True)), salt="x"
)


def per_call(function: Any, repeat: int) -> float:
    started = time.perf_counter()
    for index in range(repeat):
        function(index)
    return (time.perf_counter() - started) / repeat


def dispatch_costs(repeat: int) -> dict[str, float | int]:
    flags = FlagSet(overrides={"fresh_chat": EXPERIMENT})
    scheduler = Scheduler(SchedulerPolicy(), rng=random.Random(1))
    scheduler.load(TaskSlot(id=i, seq=i) for i in range(1, repeat + 1))
    scheduler.add_worker("w1", "a1")

    def decide(index: int) -> None:
        lease = scheduler.next_assignment("w1", float(index))
        assert lease is not None
        scheduler.offer_result(lease.task_id, lease.attempt)
        scheduler.confirm_done(lease.task_id, lease.attempt)

    def read_switches(_index: int) -> None:
        scheduler.single_worker = not flags.enabled("multi_tab")
        scheduler.sequences_enabled = flags.enabled("chat_strategies")

    def attempt_flags(index: int) -> None:
        unit = f"job/{index}"
        flags.variants_for(unit, "w1")
        flags.enabled("reference_images", unit)
        flags.enabled("fresh_chat", unit)

    # The single-tab breaker sees every attempt's ending; its window at 500 endings a second
    # (a load test) holds 300,000 of them. One in five fails, on three tabs.
    breaker = OrchestrationBreaker()
    kinds = [None, None, None, None, ErrorKind.PAGE_ERROR]
    for index in range(300_000):
        breaker.record(index * 0.002, f"w{index % 3}", kinds[index % 5])
    start = 300_000 * 0.002

    def watch_ending(index: int) -> None:
        breaker.record(start + index * 0.002, f"w{index % 3}", kinds[index % 5])

    return {
        "breaker_ending_us": per_call(watch_ending, repeat) * 1e6,
        "breaker_window_endings": len(breaker),
        "scheduler_decision_us": per_call(decide, repeat) * 1e6,
        "read_switches_us": per_call(read_switches, repeat) * 1e6,
        "attempt_flags_us": per_call(attempt_flags, repeat) * 1e6,
    }


def assignment(ids: int) -> dict[str, Any]:
    started = time.perf_counter()
    counts = Counter(choose_variant("fresh_chat", EXPERIMENT, f"job/{n}").name for n in range(ids))
    elapsed = time.perf_counter() - started
    total = sum(v.weight for v in EXPERIMENT.variants)
    deviation = max(abs(counts[v.name] / ids - v.weight / total) * 100 for v in EXPERIMENT.variants)
    return {
        "ids": ids,
        "per_second": ids / elapsed,
        "shares_percent": {k: round(100 * c / ids, 2) for k, c in sorted(counts.items())},
        "max_deviation_points": round(deviation, 3),
    }


async def rollback_latency(trials: int, poll: float) -> dict[str, Any]:
    folder = scratch("ng-bench-flags-")
    files = flag_files(Path(folder))
    watched = FlagService(files)
    other = FlagService(files)
    heard = asyncio.Event()
    watched.subscribe(lambda _flags, _reason: heard.set())
    watch = watched.start_watching(poll=poll)
    latencies: list[float] = []
    try:
        for trial in range(trials):
            await asyncio.sleep(random.uniform(0, poll))  # not in step with the poll
            heard.clear()
            started = time.perf_counter()
            if trial % 2 == 0:
                other.set_local("multi_tab", FlagSetting(value=False))
            else:
                other.rollback()
            command = time.perf_counter() - started
            await asyncio.wait_for(heard.wait(), 5)
            latencies.append(time.perf_counter() - started)
            assert command < 1.0
    finally:
        watch.cancel()
        watched.close()
        other.close()
    latencies.sort()
    return {
        "trials": trials,
        "poll_s": poll,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


async def rollback_in_job(tasks: int, workers: int, every: float) -> dict[str, Any]:
    """A job runs with simulated tabs while another process's flag service switches the
    single-tab fallback on and rolls it back every ``every`` seconds. Afterwards, from the
    store: per version, the time from its commit to the first attempt under it, the tabs
    that started attempts under it, and whether every task was done exactly once."""
    root = scratch("ng-bench-flags-job-")
    paths, store, job, task_rows = new_job(root, tasks)
    store.close()
    watched = FlagService(flag_files(paths.root))
    other = FlagService(flag_files(paths.root))
    behaviour = SimBehaviour(latency_median=0.02, latency_sigma=0.2, image_size=32)
    runner = JobRunner(
        paths,
        job,
        task_rows,
        make_simulated_workers(workers, behaviour),
        RunSettings(fsync_files=False),
        flags=watched,
    )
    watched.subscribe(lambda _flags, _reason: runner.poke())
    watch = watched.start_watching(poll=0.2)

    async def switch() -> None:
        flip = 0
        while True:
            await asyncio.sleep(every)
            if flip % 2 == 0:
                other.set_local("multi_tab", FlagSetting(value=False))
            else:
                other.rollback()
            flip += 1

    switching = asyncio.create_task(switch())
    started = time.perf_counter()
    try:
        summary = await runner.run()
    finally:
        switching.cancel()
        watch.cancel()
    elapsed = time.perf_counter() - started
    versions = {v.version: v for v in other.versions(1000)}
    watched.close()
    other.close()
    conn = sqlite3.connect(paths.database)
    rows = conn.execute(
        "SELECT flags_version, MIN(started_at), COUNT(*), COUNT(DISTINCT worker_id) "
        "FROM attempts GROUP BY flags_version"
    ).fetchall()
    done = conn.execute("SELECT COUNT(*) FROM tasks WHERE state = 'done'").fetchone()[0]
    done_attempts = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT task_id) FROM attempts WHERE outcome = 'done'"
    ).fetchone()
    conn.close()
    latencies, single_tab_workers = [], []
    for version, first_start, _count, distinct_workers in rows:
        record = versions.get(version)
        if record is None or record.parent is None:
            continue  # the set the job started with
        latencies.append(first_start - record.created_at)
        if record.settings["multi_tab"].value is False:
            single_tab_workers.append(distinct_workers)
    latencies.sort()
    return {
        "tasks": tasks,
        "workers": workers,
        "seconds": round(elapsed, 2),
        "state": summary.state.value,
        "flag_versions_applied": len(latencies),
        "version_to_first_attempt_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "max": round(latencies[-1] * 1000, 1),
        },
        "tabs_under_single_tab_versions": sorted(set(single_tab_workers)),
        "done": done,
        "done_attempts": done_attempts[0],
        "tasks_with_a_done_attempt": done_attempts[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20_000)
    parser.add_argument("--ids", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--job-tasks", type=int, default=2000)
    parser.add_argument("--every", type=float, default=0.7, help="seconds between switches")
    args = parser.parse_args()
    result = {
        "machine": machine(),
        "dispatch": dispatch_costs(args.repeat),
        "assignment": assignment(args.ids),
        "rollback": asyncio.run(rollback_latency(args.trials, args.poll)),
        "rollback_in_job": asyncio.run(rollback_in_job(args.job_tasks, 4, args.every)),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
