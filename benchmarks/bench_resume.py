"""Resume time of a 10,000-task job after a crash: process start → first dispatch.

A real ``novelgen run`` is SIGKILLed halfway through a 10,000-panel job, so the resume has a
crash to clean up (temp files, a torn manifest line, images on disk the database has not
counted). Measured twice: in-process (open + quick_check + reconcile + load + first lease)
and end to end as the ``novelgen resume`` command, whose ``NOVELGEN_TIMINGS=1`` output reports
the first dispatch relative to the process's own start time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import machine, scratch
from novelgen_desktop.engine.recovery import open_store, reconcile_job
from novelgen_desktop.engine.runner import JobRunner
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.sim.worker import SimBehaviour, make_simulated_workers

SIM = [
    "--simulate",
    "--workers",
    "10",
    "--sim-latency",
    "0",
    "--sim-reuse-images",
    "64",
    "--sim-image-size",
    "128",
    "--no-progress",
]


def crashed_job(root: Path, count: int) -> Path:
    prompts = root / "prompts.txt"
    prompts.write_text(
        "".join(f"the keeper at the lamp, variation {i}\n" for i in range(count)), "utf-8"
    )
    data = root / "data"
    cmd = [
        sys.executable,
        "-m",
        "novelgen_desktop",
        "--data-dir",
        str(data),
        "run",
        str(prompts),
        "--out",
        str(root / "out"),
        *SIM,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            manifests = list((root / "out").glob("*/manifest.jsonl"))
            if manifests and manifests[0].stat().st_size > 0:
                with manifests[0].open("rb") as handle:
                    if sum(1 for _ in handle) >= count // 2:
                        break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return data


async def _until_first_dispatch(runner: JobRunner) -> float:
    task = asyncio.create_task(runner.run())
    while runner.first_dispatch_at is None and not task.done():
        await asyncio.sleep(0.001)
    runner.request_stop()
    await task
    assert runner.first_dispatch_at is not None
    return runner.first_dispatch_at


def in_process(data: Path) -> dict[str, float]:
    started = time.monotonic()
    store, _ = open_store(DataPaths(data))
    opened = time.monotonic()
    job = store.latest_job(unfinished=True)
    assert job is not None
    report = reconcile_job(store, job)
    reconciled = time.monotonic()
    workers = make_simulated_workers(10, SimBehaviour(latency_median=0.5, reuse_images=4))
    runner = JobRunner(DataPaths(data), store.find_job(job.id), report.tasks, workers)
    first = asyncio.run(_until_first_dispatch(runner))
    store.close()
    return {
        "open_and_quick_check_s": round(opened - started, 3),
        "reconcile_s": round(reconciled - opened, 3),
        "to_first_dispatch_s": round(first - started, 3),
        "adopted_from_disk": report.from_disk,
        "recovered_from_manifest": report.from_manifest,
        "temp_files_removed": report.temp_files_removed,
    }


def end_to_end(data: Path) -> float:
    env = dict(os.environ, NOVELGEN_TIMINGS="1")
    cmd = [sys.executable, "-m", "novelgen_desktop", "--data-dir", str(data), "resume", *SIM]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    seconds = None
    for line in proc.stderr:
        match = re.search(r"first dispatch ([0-9.]+) s after process start", line)
        if match:
            seconds = float(match.group(1))
            proc.send_signal(signal.SIGINT)  # clean stop: we only wanted the start-up time
    proc.wait()
    assert seconds is not None, "no timing line from novelgen resume"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    root = scratch("ng-resume-")
    data = crashed_job(root, args.tasks)
    result = {"tasks": args.tasks, "in_process": in_process(data)}
    data2 = crashed_job(scratch("ng-resume-"), args.tasks)
    result["cli_first_dispatch_s"] = end_to_end(data2)
    print(json.dumps({"benchmark": "resume", "machine": machine(), "result": result}, indent=1))


if __name__ == "__main__":
    main()
