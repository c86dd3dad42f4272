"""The ``novelgen`` command line, mostly in-process through ``main([...])``.

Every run uses fast simulated workers (no latency, 32-pixel images). ``NOVELGEN_DATA_DIR`` is
set per test by ``tests/conftest.py``; ``--data-dir`` is used where isolation is the point.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from novelgen_desktop import __version__
from novelgen_desktop.cli.main import main
from novelgen_desktop.output.imagecheck import inspect_image
from tests.integration.helpers import assert_job_complete_and_consistent, job_ids

SIM = [
    "--simulate",
    "--sim-latency",
    "0",
    "--sim-image-size",
    "32",
    "--workers",
    "2",
    "--no-progress",
]
ROOT = Path(__file__).resolve().parents[2]


def write_prompts(path: Path, count: int) -> Path:
    lines = [f"a lighthouse on a cliff at dusk, storm clouds, view {i}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return write_prompts(tmp_path / "prompts.txt", 6)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def run_job(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, *extra: str
) -> tuple[int, str]:
    """``novelgen run`` a simulated job; (exit code, job id)."""
    code = main(["run", str(prompts), "--out", str(out), *SIM, *extra])
    capsys.readouterr()
    data_dir = Path(os.environ["NOVELGEN_DATA_DIR"])
    return code, job_ids(data_dir)[-1]


def no_job_created(data_dir: Path) -> bool:
    database = data_dir / "novelgen.sqlite"
    if not database.exists():
        return True
    return job_ids(data_dir) == []


# --- basics ---------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"novelgen {__version__}"


def test_version_as_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "novelgen_desktop", "--version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"novelgen {__version__}"


def test_no_command_without_a_display_says_how_to_run_headless(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain ``novelgen`` opens the window; with no display it must not abort inside Qt."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "no display" in err
    assert "novelgen serve" in err and "novelgen run FILE --simulate" in err
    assert "xvfb-run novelgen" in err


def test_bad_option_value_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], prompts: Path, isolated_data_dir: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", str(prompts), "--simulate", "--sim-failure-rate", "2"])
    assert exited.value.code == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert no_job_created(isolated_data_dir)


# --- validate -------------------------------------------------------------------------------


def test_validate_good_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = write_prompts(tmp_path / "list.txt", 3)
    table = tmp_path / "book.csv"
    table.write_text(
        "chapter,page,panel,prompt\n1,1,1,a cat\n1,1,2,a dog\n1,2,1,a bird\n2,1,1,a fish\n",
        encoding="utf-8",
    )
    assert main(["validate", str(text), str(table)]) == 0
    report = capsys.readouterr().out
    assert "prompts: 3" in report
    assert "prompts: 4" in report
    assert "Chapter 1: 3 panels on 2 pages" in report
    assert "OK: 7 prompts, 7 images wanted, from 2 files; 0 errors" in report


def test_validate_bad_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, isolated_data_dir: Path
) -> None:
    table = tmp_path / "bad.csv"
    table.write_text("chapter,page,panel,prompt\n1,1,1,a cat\n1,x,2,a dog\n1,2,1,\n")
    doc = tmp_path / "bad.json"
    doc.write_text('[{"prompt": "a cat", "page": "zz"}, {"page": 1}]')
    assert main(["validate", str(table), str(doc)]) == 2
    report = capsys.readouterr().out
    assert f"{table}:3: field 'page': expected a positive integer, got 'x'" in report
    assert f"{table}:4: field 'prompt'" in report
    assert f"{doc}:1:" in report
    assert "FAILED" in report and "4 errors" in report
    assert no_job_created(isolated_data_dir)


def test_validate_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    assert main(["validate", str(missing)]) == 2
    assert "nope.txt" in capsys.readouterr().out


# --- run: refusing to start ------------------------------------------------------------------


def test_run_without_simulate_creates_nothing(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, isolated_data_dir: Path
) -> None:
    assert main(["run", str(prompts), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "novelgen: error:" in err and "--simulate" in err
    assert no_job_created(isolated_data_dir)
    assert not out.exists()


def test_run_with_bad_prompt_file_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, out: Path, isolated_data_dir: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("chapter,page,panel,prompt\n1,1,1,a cat\n1,x,2,a dog\n")
    assert main(["run", str(bad), "--out", str(out), *SIM]) == 2
    err = capsys.readouterr().err
    assert "nothing was started" in err
    assert f"{bad}:3: field 'page'" in err
    assert no_job_created(isolated_data_dir)
    assert not out.exists()


def test_run_with_bad_template_names_the_field(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, isolated_data_dir: Path
) -> None:
    code = main(["run", str(prompts), "--out", str(out), "--template", "{chaptr}/{page}.png", *SIM])
    assert code == 2
    err = capsys.readouterr().err
    assert "'chaptr'" in err
    assert no_job_created(isolated_data_dir)


def test_run_with_impossible_simulation_creates_nothing(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, isolated_data_dir: Path
) -> None:
    args = ["--sim-failure-rate", "0.7", "--sim-refusal-rate", "0.7"]
    assert main(["run", str(prompts), "--out", str(out), *SIM, *args]) == 2
    assert "more than 1" in capsys.readouterr().err
    assert no_job_created(isolated_data_dir)


# --- run, status, jobs, export ----------------------------------------------------------------


def test_run_simulated_job(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, isolated_data_dir: Path
) -> None:
    assert main(["run", str(prompts), "--out", str(out), "--name", "Lighthouse", *SIM]) == 0
    err = capsys.readouterr().err
    (job_id,) = job_ids(isolated_data_dir)
    assert job_id.startswith("lighthouse-")
    assert f"job {job_id}: finished" in err
    assert "6/6 images done" in err
    assert_job_complete_and_consistent(isolated_data_dir, job_id, 6)
    job_out = out / job_id
    assert (job_out / "manifest.jsonl").is_file()
    images = sorted(job_out.glob("*.png"))  # a plain list falls back to {seq:05d}
    assert [p.name for p in images] == [f"{i:05d}.png" for i in range(1, 7)]
    info = inspect_image(images[0].read_bytes())
    assert (info.width, info.height) == (32, 32)


def test_refused_tasks_are_listed_with_their_source(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, isolated_data_dir: Path
) -> None:
    code = main(["run", str(prompts), "--out", str(out), *SIM, "--sim-refusal-rate", "1"])
    assert code == 1
    err = capsys.readouterr().err
    (job_id,) = job_ids(isolated_data_dir)
    assert f"job {job_id}: incomplete" in err
    for line in range(1, 7):
        assert f"refused: task {line} ({prompts}:{line}): refused:" in err
    assert "6 task(s) not done" in err
    assert f"novelgen retry-dead {job_id}" in err
    assert [p for p in (out / job_id).glob("*.png")] == []


def test_status_and_jobs(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, isolated_data_dir: Path
) -> None:
    code, job_id = run_job(capsys, prompts, out, "--name", "My Book")
    assert code == 0

    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert f"{job_id}  (My Book)  finished" in text
    assert "6/6 done (100.0%)" in text
    assert f"output: {out.resolve() / job_id}" in text

    assert main(["status", job_id[:12], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["id"] == job_id
    assert info["state"] == "finished"
    assert info["total"] == 6
    assert info["counts"]["done"] == 6
    assert sum(info["counts"].values()) == 6
    assert info["percent"] == 100.0
    assert info["errors"] == []

    assert main(["jobs"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 1
    assert listing[0].startswith(job_id)
    assert "finished" in listing[0] and "6/6" in listing[0] and "My Book" in listing[0]


def test_jobs_when_there_are_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs"]) == 0
    assert "no jobs yet" in capsys.readouterr().out


def test_status_json_reports_errors(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path
) -> None:
    code, job_id = run_job(
        capsys, prompts, out, "--sim-failure-rate", "1", "--max-failures", "2", "--backoff-base",
        "0.01",
    )  # fmt: skip
    assert code == 1
    assert main(["status", job_id, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["state"] == "incomplete"
    assert info["counts"]["dead"] == 6
    assert sum(e["count"] for e in info["errors"]) == 12  # 6 tasks x 2 failed attempts
    assert {e["kind"] for e in info["errors"]} <= {"page_error", "network", "timeout"}


def test_retry_dead_then_resume_finishes(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, isolated_data_dir: Path
) -> None:
    code, job_id = run_job(capsys, prompts, out, "--sim-failure-rate", "1", "--max-failures", "1")
    assert code == 1

    assert main(["retry-dead", job_id]) == 0
    said = capsys.readouterr().out
    assert f"requeued 6 task(s) of {job_id}" in said
    assert f"novelgen resume {job_id}" in said

    assert main(["resume", "--sim-failure-rate", "0", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"resuming {job_id}" in err
    assert f"job {job_id}: finished" in err
    assert_job_complete_and_consistent(isolated_data_dir, job_id, 6)

    # Nothing left: a second retry-dead requeues nothing.
    assert main(["retry-dead", job_id]) == 0
    assert "requeued 0 task(s)" in capsys.readouterr().out


def test_export_csv_and_json(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path, tmp_path: Path
) -> None:
    code, job_id = run_job(capsys, prompts, out)
    assert code == 0
    job_out = out.resolve() / job_id

    csv_path = tmp_path / "export.csv"
    assert main(["export", job_id, "--format", "csv", "-o", str(csv_path)]) == 0
    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert [r["seq"] for r in rows] == [str(i) for i in range(1, 7)]
    assert {r["state"] for r in rows} == {"done"}
    assert all((job_out / r["output_path"]).is_file() for r in rows)
    assert all(len(r["sha256"]) == 64 for r in rows)
    assert rows[0]["prompt"] == "a lighthouse on a cliff at dusk, storm clouds, view 0"
    assert rows[2]["source"].endswith("prompts.txt:3")

    json_path = tmp_path / "export.json"
    assert main(["export", job_id, "--format", "json", "--output", str(json_path)]) == 0
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["job"] == job_id
    assert data["out_dir"] == str(job_out)
    assert len(data["tasks"]) == 6
    assert [t["output_path"] for t in data["tasks"]] == [r["output_path"] for r in rows]
    assert {t["state"] for t in data["tasks"]} == {"done"}
    assert all(t["attempts"] >= 1 for t in data["tasks"])

    # Without --output, to standard output.
    assert main(["export", job_id, "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tasks"]) == 6


# --- resume and job lookup -------------------------------------------------------------------


def test_resume_with_no_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", "--simulate"]) == 2
    err = capsys.readouterr().err
    assert "no unfinished job" in err
    assert "novelgen jobs" in err


def test_resume_when_latest_job_is_finished(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path
) -> None:
    code, job_id = run_job(capsys, prompts, out)
    assert code == 0
    assert main(["resume"]) == 0
    err = capsys.readouterr().err
    assert "nothing to resume" in err
    assert job_id in err and "finished" in err


def test_unknown_job_id_lists_known_jobs(
    capsys: pytest.CaptureFixture[str], prompts: Path, out: Path
) -> None:
    code, job_id = run_job(capsys, prompts, out)
    assert code == 0
    for command in (["status", "nope"], ["export", "nope"], ["retry-dead", "nope"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "no job matches 'nope'" in err
        assert job_id in err


def test_unknown_job_id_without_any_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "nope"]) == 2
    assert "there are no jobs yet" in capsys.readouterr().err


def test_data_dirs_are_isolated(
    capsys: pytest.CaptureFixture[str], prompts: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "data-a", tmp_path / "data-b"
    for data_dir, name in ((first, "alpha"), (second, "beta")):
        code = main(
            ["--data-dir", str(data_dir), "run", str(prompts), "--name", name,
             "--out", str(tmp_path / "out"), *SIM]
        )  # fmt: skip
        assert code == 0
    capsys.readouterr()
    (alpha,) = job_ids(first)
    (beta,) = job_ids(second)
    assert alpha.startswith("alpha-") and beta.startswith("beta-")

    assert main(["--data-dir", str(first), "jobs"]) == 0
    listing = capsys.readouterr().out
    assert alpha in listing and beta not in listing
    assert main(["--data-dir", str(second), "status", alpha]) == 2
    assert "no job matches" in capsys.readouterr().err
    # The default data dir (NOVELGEN_DATA_DIR) saw neither.
    assert main(["jobs"]) == 0
    assert "no jobs yet" in capsys.readouterr().out


# --- end to end as a subprocess --------------------------------------------------------------


def test_run_and_status_as_subprocesses(prompts: Path, out: Path, isolated_data_dir: Path) -> None:
    base = [sys.executable, "-m", "novelgen_desktop"]
    proc = subprocess.run(
        [*base, "run", str(prompts), "--out", str(out), *SIM],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    (job_id,) = job_ids(isolated_data_dir)  # the subprocess used NOVELGEN_DATA_DIR
    assert f"job {job_id}: finished" in proc.stderr
    assert_job_complete_and_consistent(isolated_data_dir, job_id, 6)

    status = subprocess.run(
        [*base, "status", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert status.returncode == 0
    assert json.loads(status.stdout)["counts"]["done"] == 6

    with sqlite3.connect(isolated_data_dir / "novelgen.sqlite") as conn:
        (state,) = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert state == "finished"
