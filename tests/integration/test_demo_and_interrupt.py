"""The README's demo job end to end, and Ctrl-C → clean stop → resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.helpers import assert_job_complete_and_consistent, job_ids

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "the-lighthouse-keeper.script"


def novelgen(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "novelgen_desktop", "--data-dir", str(data_dir), *args]


@pytest.mark.slow
def test_sample_script_gives_300_valid_images_and_300_manifest_rows(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        novelgen(
            data_dir,
            "run",
            str(SAMPLE),
            "--simulate",
            "--workers",
            "5",
            "--out",
            str(tmp_path / "out"),
            "--sim-latency",
            "0.02",
            "--sim-image-size",
            "96",
            "--no-progress",
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (job_id,) = job_ids(data_dir)
    assert_job_complete_and_consistent(data_dir, job_id, 300)
    out = tmp_path / "out" / job_id
    # The default template puts chapters in folders and pages/panels in names.
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["1", "2", "3"]
    assert (out / "1" / "001-01.png").is_file()
    assert "300/300 images done" in result.stderr


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_job_resumes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a gull over the harbour, study {i}\n" for i in range(60)))
    sim = [
        "--simulate",
        "--workers",
        "3",
        "--sim-latency",
        "0.1",
        "--sim-image-size",
        "48",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        novelgen(data_dir, "run", str(prompts), "--out", str(tmp_path / "out"), *sim),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some images are done
        manifests = list((tmp_path / "out").glob("*/manifest.jsonl"))
        if manifests and len(manifests[0].read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "novelgen resume" in err
    (job_id,) = job_ids(data_dir)

    status = subprocess.run(
        novelgen(data_dir, "status", job_id, "--json"), capture_output=True, text=True, check=True
    )
    assert '"state": "running"' in status.stdout  # stopped, resumable, not finished

    result = subprocess.run(
        novelgen(data_dir, "resume", *sim), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert_job_complete_and_consistent(data_dir, job_id, 60)
