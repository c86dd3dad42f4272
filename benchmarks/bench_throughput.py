"""Durable completions per second through store + output, zero-latency simulated workers.

Every completion is the full durable path: image validated, temp file written and fsynced,
renamed, folder fsynced, manifest row appended and fsynced (per group commit), database
committed, snapshots every 50 completions. Workers return pre-drawn PNGs (``reuse_images``)
so the figure measures the engine, store and output rather than Pillow's drawing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from benchmarks.common import machine, new_job, scratch
from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.engine.runner import JobRunner, RunSettings
from novelgen_desktop.sim.worker import SimBehaviour, make_simulated_workers


def run_once(count: int, workers: int, threads: int, *, fsync: bool) -> dict[str, float]:
    root = scratch("ng-throughput-")
    paths, store, job, tasks = new_job(root, count)
    store.close()
    behaviour = SimBehaviour(latency_median=0.0, image_size=256, reuse_images=64)
    runner = JobRunner(
        paths,
        job,
        tasks,
        make_simulated_workers(workers, behaviour),
        RunSettings(file_threads=threads, fsync_files=fsync),
    )
    started = time.perf_counter()
    summary = asyncio.run(runner.run())
    elapsed = time.perf_counter() - started
    assert summary.counts[TaskState.DONE] == count, summary
    return {
        "tasks": count,
        "workers": workers,
        "file_threads": threads,
        "fsync": fsync,
        "seconds": round(elapsed, 3),
        "completions_per_second": round(count / elapsed, 1),
        "group_commits": runner.writer.commits,
        "snapshots": runner.writer.snapshots_written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = []
    for workers, threads in ((10, 4), (16, 8), (32, 16)):
        for _ in range(args.repeat):
            results.append(run_once(args.tasks, workers, threads, fsync=True))
    results.append(run_once(args.tasks, 16, 8, fsync=False))  # the ceiling without fsync
    print(json.dumps({"benchmark": "throughput", "machine": machine(), "runs": results}, indent=1))


if __name__ == "__main__":
    main()
