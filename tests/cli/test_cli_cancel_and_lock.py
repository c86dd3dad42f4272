"""`novelgen cancel`, and refusing to run a job that another process is running."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from novelgen_desktop.engine.joblock import JobLock
from novelgen_desktop.paths import resolve_data_dir
from tests.integration.helpers import job_ids

SIM = [
    "--simulate",
    "--workers",
    "2",
    "--sim-latency",
    "0",
    "--sim-image-size",
    "32",
    "--no-progress",
]


def _prompts(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "p.txt"
    path.write_text("".join(f"storm over the bay {i}\n" for i in range(count)), "utf-8")
    return path


def test_resume_refuses_a_job_another_process_is_running(
    tmp_path: Path, isolated_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Create a job whose run is interrupted (every attempt refused → incomplete), then
    # requeue it so it is resumable.
    prompts = _prompts(tmp_path, 3)
    assert (
        main(["run", str(prompts), "--out", str(tmp_path / "o"), *SIM, "--sim-refusal-rate", "1"])
        == 1
    )
    (job_id,) = job_ids(isolated_data_dir)
    assert main(["retry-dead", job_id, "--include-refused"]) == 0
    paths = resolve_data_dir(None)
    with JobLock(paths.job_lock(job_id), job_id):
        capsys.readouterr()
        assert main(["resume", job_id, *SIM]) == 2
        assert "already running in another NovelGen process" in capsys.readouterr().err
        assert main(["cancel", job_id]) == 2
    with sqlite3.connect(paths.database) as conn:
        states = {r[0] for r in conn.execute("SELECT state FROM tasks")}
    assert states == {"queued"}, "a refused resume must change nothing"
    # The job keeps the options it was started with unless the command line overrides them.
    assert main(["resume", job_id, *SIM, "--sim-refusal-rate", "0"]) == 0


def test_cancel_keeps_finished_images_and_cancels_the_rest(
    tmp_path: Path, isolated_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = _prompts(tmp_path, 4)
    assert main(["run", str(prompts), "--out", str(tmp_path / "o"), *SIM]) == 0
    (job_id,) = job_ids(isolated_data_dir)
    capsys.readouterr()
    assert main(["cancel", job_id]) == 0
    assert "already finished; nothing to cancel" in capsys.readouterr().out
    with sqlite3.connect(isolated_data_dir / "novelgen.sqlite") as conn:
        # Make two tasks unfinished again by hand, then cancel for real.
        conn.execute("UPDATE tasks SET state = 'queued', output_path = NULL WHERE seq > 2")
        conn.execute("UPDATE jobs SET state = 'running'")
    assert main(["cancel", job_id]) == 0
    assert "2 unfinished task(s) cancelled" in capsys.readouterr().out
    with sqlite3.connect(isolated_data_dir / "novelgen.sqlite") as conn:
        rows = dict(conn.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())
        (job_state,) = conn.execute("SELECT state FROM jobs").fetchone()
    assert rows == {"done": 2, "cancelled": 2}
    assert job_state == "cancelled"
    capsys.readouterr()
    assert main(["resume", job_id, *SIM]) == 2
    assert "was cancelled" in capsys.readouterr().err
    assert main(["retry-dead", job_id]) == 2
    assert "cannot be retried" in capsys.readouterr().err
