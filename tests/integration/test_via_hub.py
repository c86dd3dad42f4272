"""`run --simulate --via-hub`: the simulated tabs are real WebSocket peers of the hub, so the
whole remote path (handshake, token, binary images, acks, reconnects) carries the job."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import assert_job_complete_and_consistent, job_ids
from tests.integration.test_crash_recovery import start_and_kill, write_prompts

VIA_HUB = [
    "--simulate",
    "--via-hub",
    "--workers",
    "4",
    "--sim-latency",
    "0.05",
    "--sim-failure-rate",
    "0.05",
    "--sim-invalid-image-rate",
    "0.02",
    "--sim-crash-rate",
    "0.02",
    "--sim-image-size",
    "48",
    "--backoff-base",
    "0.05",
    "--max-failures",  # a panel dead of bad luck after the default 5 is not what this tests
    "10",
    "--no-progress",
]


def novelgen(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "novelgen_desktop", "--data-dir", str(data_dir), *args]


@pytest.mark.slow
def test_job_over_the_hub_completes_consistently(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    prompts = tmp_path / "p.txt"
    write_prompts(prompts, 60)
    result = subprocess.run(
        novelgen(data_dir, "run", str(prompts), "--out", str(tmp_path / "out"), *VIA_HUB),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (job_id,) = job_ids(data_dir)
    assert_job_complete_and_consistent(data_dir, job_id, 60)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_sigkill_with_workers_over_the_hub_then_resume(tmp_path: Path, trial: int) -> None:
    rng = random.Random(5000 + trial)
    data_dir = tmp_path / "data"
    prompts = tmp_path / "p.txt"
    write_prompts(prompts, 60)
    run_cmd = novelgen(data_dir, "run", str(prompts), "--out", str(tmp_path / "out"), *VIA_HUB)
    start_and_kill(run_cmd, rng.uniform(0.8, 2.5))
    if job_ids(data_dir):
        (job_id,) = job_ids(data_dir)
        cmd = novelgen(data_dir, "resume", job_id, *VIA_HUB)
    else:
        cmd = run_cmd
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    (job_id,) = job_ids(data_dir)
    assert_job_complete_and_consistent(data_dir, job_id, 60)
