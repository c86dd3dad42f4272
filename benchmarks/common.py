"""Shared set-up for the benchmarks: isolated data dirs, synthetic jobs, machine facts."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from novelgen_desktop import __version__
from novelgen_desktop.engine.jobs import JobOptions, create_job
from novelgen_desktop.engine.recovery import open_store
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import JobRecord, TaskRecord


def machine() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "novelgen": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def scratch(prefix: str) -> Path:
    base = os.environ.get("NOVELGEN_BENCH_DIR")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def synthetic_specs(count: int) -> list[PromptSpec]:
    """A script-shaped job: chapters of pages of six panels, so files spread over folders
    the way a real comic's do."""
    specs = []
    for i in range(count):
        page, panel = divmod(i, 6)
        specs.append(
            PromptSpec(
                text=f"Panel {panel + 1} of page {page + 1}: the keeper climbs the spiral stair, "
                "storm light through the window, ink and watercolour",
                source=SourceLocation("bench.script", i + 1),
                chapter=str(page // 40 + 1),
                page=page % 40 + 1,
                panel=panel + 1,
            )
        )
    return specs


def new_job(root: Path, count: int) -> tuple[DataPaths, Store, JobRecord, list[TaskRecord]]:
    paths = DataPaths(root / "data").ensure()
    store, _ = open_store(paths)
    job, tasks = create_job(
        store, paths, synthetic_specs(count), JobOptions(name="bench", out_root=root / "out")
    )
    return paths, store, job, tasks
