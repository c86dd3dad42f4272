"""SIGKILL at random moments, then resume: nothing lost, nothing duplicated.

Each trial starts a real ``novelgen run`` subprocess with simulated latency and failures,
kills it with SIGKILL at a random moment, resumes and kills again, then resumes to the end
and checks every invariant of a finished job. The number of trials comes from
``NOVELGEN_CRASH_TRIALS`` (10 in CI; the benchmark runs more).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.helpers import assert_job_complete_and_consistent, job_ids

TRIALS = int(os.environ.get("NOVELGEN_CRASH_TRIALS", "10"))
TASKS = 80


def write_prompts(path: Path, count: int) -> None:
    lines = [
        f"Panel {i}: a lighthouse on a cliff at dusk, storm clouds, view {i}" for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def novelgen(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "novelgen_desktop", "--data-dir", str(data_dir), *args]


SIM_OPTIONS = [
    "--simulate",
    "--workers",
    "4",
    "--sim-latency",
    "0.08",
    "--sim-latency-sigma",
    "0.6",
    "--sim-failure-rate",
    "0.05",
    "--sim-invalid-image-rate",
    "0.02",
    "--sim-image-size",
    "64",
    "--backoff-base",
    "0.05",
    "--max-failures",  # a panel dead of bad luck after the default 5 is not what this tests
    "10",
    "--snapshot-every",
    "7",
    "--no-progress",
]


def start_and_kill(cmd: list[str], delay: float) -> int | None:
    """Run ``cmd``; SIGKILL it after ``delay`` seconds unless it ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=delay)
        return proc.returncode
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def run_to_end(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_random_moments_then_resume(tmp_path: Path, trial: int) -> None:
    rng = random.Random(1000 + trial)
    data_dir = tmp_path / "data"
    prompts = tmp_path / "prompts.txt"
    write_prompts(prompts, TASKS)
    out = tmp_path / "out"
    run_cmd = novelgen(data_dir, "run", str(prompts), "--out", str(out), *SIM_OPTIONS)

    start_and_kill(run_cmd, rng.uniform(0.4, 2.5))
    kills = 1
    # Resume and kill again, once or twice, each time at a different moment.
    for _ in range(rng.randint(1, 2)):
        if not (data_dir / "novelgen.sqlite").exists() or not job_ids(data_dir):
            start_and_kill(run_cmd, rng.uniform(0.3, 3.0))
        else:
            (job_id,) = job_ids(data_dir)
            resume = novelgen(data_dir, "resume", job_id, *SIM_OPTIONS)
            start_and_kill(resume, rng.uniform(0.2, 2.0))
        kills += 1

    if not job_ids(data_dir):  # killed before the job was even created: start it for real
        result = run_to_end(run_cmd)
    else:
        (job_id,) = job_ids(data_dir)
        result = run_to_end(novelgen(data_dir, "resume", job_id, *SIM_OPTIONS))
    assert result.returncode == 0, result.stderr
    (job_id,) = job_ids(data_dir)
    assert_job_complete_and_consistent(data_dir, job_id, TASKS)
    # A finished job resumed again does nothing and still agrees with itself.
    again = run_to_end(novelgen(data_dir, "resume", job_id, *SIM_OPTIONS))
    assert again.returncode == 0, again.stderr
    assert_job_complete_and_consistent(data_dir, job_id, TASKS)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garbage-header", "zeroed-pages", "deleted"])
def test_damaged_database_is_rebuilt_from_snapshot_and_manifest(
    tmp_path: Path, damage: str
) -> None:
    data_dir = tmp_path / "data"
    prompts = tmp_path / "prompts.txt"
    write_prompts(prompts, TASKS)
    out = tmp_path / "out"
    run_cmd = novelgen(data_dir, "run", str(prompts), "--out", str(out), *SIM_OPTIONS)
    # Run long enough for some images and at least one periodic snapshot, then kill.
    deadline = time.monotonic() + 60
    proc = subprocess.Popen(run_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() < deadline:
            manifest = list(out.glob("*/manifest.jsonl"))
            if manifest and len(manifest[0].read_text().splitlines()) >= 20:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (job_id,) = job_ids(data_dir)

    database = data_dir / "novelgen.sqlite"
    # Fold the WAL into the main file first, so the damage hits real job data.
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    if damage == "garbage-header":
        with database.open("r+b") as handle:
            handle.write(os.urandom(4096))
    elif damage == "zeroed-pages":
        size = database.stat().st_size
        with database.open("r+b") as handle:
            handle.seek(4096)
            handle.write(b"\0" * max(0, size - 4096))
    else:
        database.unlink()

    result = run_to_end(novelgen(data_dir, "resume", *SIM_OPTIONS))
    assert result.returncode == 0, result.stderr
    assert "rebuilt 1 job(s) from snapshots" in result.stderr
    if damage != "deleted":
        assert "the database was damaged" in result.stderr
        assert list((data_dir / "quarantine").glob("novelgen-*.sqlite")), "damaged file kept"
    assert_job_complete_and_consistent(data_dir, job_id, TASKS)
