"""The load test's bookkeeping must see lost and duplicated work when there is some: a job
run to the end is measured clean, then damaged in each way the report counts."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.loadtest.harness import inspect_job, job_ids, percentile, steady_rate

TASKS = 24


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small job run to the end by the command line (in-process simulated workers)."""
    root = tmp_path_factory.mktemp("measured")
    prompts = root / "p.txt"
    prompts.write_text("".join(f"Prompt {i}: the keeper's lamp, ink\n" for i in range(TASKS)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "novelgen_desktop",
            "--data-dir",
            str(root / "data"),
            "run",
            str(prompts),
            "--out",
            str(root / "out"),
            "--simulate",
            "--workers",
            "3",
            "--sim-latency",
            "0.01",
            "--sim-image-size",
            "32",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def job(finished_job: Path, tmp_path: Path) -> tuple[Path, str, Path]:
    """A private copy of the finished job: (data dir, job id, job folder)."""
    root = tmp_path / "copy"
    shutil.copytree(finished_job, root)
    data = root / "data"
    (job_id,) = job_ids(data)
    with sqlite3.connect(data / "novelgen.sqlite") as conn:
        (old,) = conn.execute("SELECT out_dir FROM jobs").fetchone()
        new = str(root / Path(old).relative_to(finished_job))
        conn.execute("UPDATE jobs SET out_dir = ?", (new,))
    return data, job_id, Path(new)


def test_a_finished_job_measures_clean(job: tuple[Path, str, Path]) -> None:
    data, job_id, _ = job
    m = inspect_job(data, job_id)
    assert m["job_state"] == "finished"
    assert (m["tasks"], m["done"], m["not_done"], m["duplicated"]) == (TASKS, TASKS, 0, 0)
    assert m["manifest_rows"] == TASKS
    assert m["missing_files"] == m["hash_mismatches"] == m["temp_files"] == 0
    assert m["throughput_per_s"] > 0
    assert 0 < m["latency_s"]["p50"] <= m["latency_s"]["p99"]
    assert sum(m["done_by_worker"].values()) == TASKS


def test_an_extra_image_file_counts_as_duplicated(job: tuple[Path, str, Path]) -> None:
    data, job_id, out = job
    image = next(p for p in out.rglob("*.png"))
    shutil.copy(image, image.with_name("copy-" + image.name))
    m = inspect_job(data, job_id)
    assert m["duplicated_detail"]["extra_image_files"] == 1
    assert m["duplicated"] == 1


def test_a_repeated_manifest_row_counts_as_duplicated(job: tuple[Path, str, Path]) -> None:
    data, job_id, out = job
    manifest = out / "manifest.jsonl"
    first = manifest.read_text().splitlines()[0]
    with manifest.open("a") as f:
        f.write(first + "\n")
    m = inspect_job(data, job_id)
    assert m["duplicated_detail"]["extra_manifest_rows"] == 1
    assert m["duplicated"] == 1


def test_a_task_not_done_counts_as_lost(job: tuple[Path, str, Path]) -> None:
    data, job_id, _ = job
    with sqlite3.connect(data / "novelgen.sqlite") as conn:
        conn.execute(
            "UPDATE tasks SET state = 'pending', output_path = NULL "
            "WHERE id = (SELECT MIN(id) FROM tasks)"
        )
    m = inspect_job(data, job_id)
    assert m["not_done"] == 1
    # Its file and manifest row are now unaccounted for.
    assert m["duplicated_detail"]["extra_image_files"] == 1
    assert m["manifest_rows_disagreeing"] == 1


def test_a_damaged_image_is_seen(job: tuple[Path, str, Path]) -> None:
    data, job_id, out = job
    image = next(p for p in out.rglob("*.png"))
    image.write_bytes(image.read_bytes()[:-1] + b"\x00")
    missing = next(p for p in out.rglob("*.png") if p != image)
    missing.unlink()
    m = inspect_job(data, job_id)
    assert m["hash_mismatches"] == 1
    assert m["missing_files"] == 1


def test_rates_and_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert steady_rate([0.1 * i for i in range(101)]) == pytest.approx(10.0)
    assert steady_rate([1.0] * 5) is None
