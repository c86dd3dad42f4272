"""Peak RSS over a 10,000-task run: memory must stay flat, not grow per task.

RSS is sampled 20 times a second together with the number of completions; the slope of a
least-squares line through the samples after warm-up (20 % done) is the growth per task. A
leak of even 1 KB per task would show as 10 MB over the run. Each size runs in a fresh
process, so the peaks of a 2,500- and a 10,000-task run can be compared: flat memory means
the bigger job's peak is not four times the smaller one's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys

import psutil

from benchmarks.common import machine, new_job, scratch
from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.engine.runner import JobRunner, RunSettings, RunStatus
from novelgen_desktop.sim.worker import SimBehaviour, make_simulated_workers


def slope(points: list[tuple[int, int]]) -> float:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2_500, 10_000])
    args = parser.parse_args()
    if len(args.tasks) > 1:  # one fresh process per size
        runs = []
        for count in args.tasks:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_memory", "--tasks", str(count)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs.append(json.loads(out)["result"])
        print(json.dumps({"benchmark": "memory", "machine": machine(), "runs": runs}, indent=1))
        return
    args.tasks = args.tasks[0]
    process = psutil.Process()
    baseline = process.memory_info().rss
    root = scratch("ng-memory-")
    paths, store, job, tasks = new_job(root, args.tasks)
    store.close()
    samples: list[tuple[int, int]] = []

    def sample(status: RunStatus) -> None:
        samples.append((status.progress.done, process.memory_info().rss))

    behaviour = SimBehaviour(latency_median=0.0, image_size=256, reuse_images=64)
    runner = JobRunner(
        paths,
        job,
        tasks,
        make_simulated_workers(16, behaviour),
        RunSettings(file_threads=8),
        on_progress=sample,
    )
    summary = asyncio.run(runner.run())
    assert summary.counts[TaskState.DONE] == args.tasks
    after_warmup = [(d, r) for d, r in samples if d >= args.tasks * 0.2]
    peak = max(r for _, r in samples)

    def rss_at(fraction: float) -> float:
        target = args.tasks * fraction
        return round(min(samples, key=lambda s: abs(s[0] - target))[1] / 2**20, 1)

    result = {
        "tasks": args.tasks,
        "rss_before_job_mib": round(baseline / 2**20, 1),
        "rss_mib_at": {f"{int(f * 100)}%": rss_at(f) for f in (0.1, 0.25, 0.5, 0.75, 1.0)},
        "peak_rss_mib": round(peak / 2**20, 1),
        "growth_bytes_per_task_after_warmup": round(slope(after_warmup), 1),
        "samples": len(samples),
    }
    print(json.dumps({"benchmark": "memory", "machine": machine(), "result": result}, indent=1))


if __name__ == "__main__":
    main()
