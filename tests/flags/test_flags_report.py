"""``novelgen flags report JOB``: variants compared on the attempts a job recorded.

The figures are checked against attempts written by hand (known outcomes and durations), and
once end to end: a simulated job run under a 50/50 experiment through ``novelgen run``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from novelgen_desktop.flags.report import (
    experiment_report,
    format_report,
    percentile,
    wilson,
)
from novelgen_desktop.store.schema import migrate

Row = tuple[int, float, float | None, str | None, dict[str, str] | None]


def database(rows: list[Row]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    migrate(conn)
    conn.execute(
        "INSERT INTO jobs (id, name, state, created_at, updated_at, out_dir, naming_template) "
        "VALUES ('j', 'j', 'running', 0, 0, '/tmp/out', '{seq}.png')"
    )
    for task_id in sorted({r[0] for r in rows}):
        conn.execute(
            "INSERT INTO tasks (id, job_id, seq, prompt, planned_path, state) "
            "VALUES (?, 'j', ?, 'p', ?, 'queued')",
            (task_id, task_id, f"{task_id}.png"),
        )
    attempt: dict[int, int] = {}
    for task_id, started, ended, outcome, variants in rows:
        attempt[task_id] = attempt.get(task_id, 0) + 1
        conn.execute(
            "INSERT INTO attempts (task_id, attempt, started_at, ended_at, outcome, variants) "
            "VALUES (?,?,?,?,?,?)",
            (
                task_id,
                attempt[task_id],
                started,
                ended,
                outcome,
                json.dumps(variants) if variants else None,
            ),
        )
    return conn


A = {"fresh_chat": "control"}
B = {"fresh_chat": "fresh"}


def test_figures_per_variant() -> None:
    conn = database(
        [
            (1, 0.0, 2.0, "done", A),
            (2, 0.0, 1.0, "failed", A),
            (2, 5.0, 9.0, "done", A),  # a retry
            (3, 0.0, 1.0, "refused", A),
            (4, 0.0, 3.0, "done", B),
            (5, 0.0, 1.0, "recalled", B),  # memory called it back: not the variant's doing
            (5, 2.0, 3.0, "done", B),
            (6, 0.0, None, None, B),  # still running
            (7, 0.0, 1.0, "done", None),  # before the experiment
        ]
    )
    report = experiment_report(conn, "j")
    assert report.attempts == 9 and report.attempts_without_variants == 1
    control, fresh = report.variants
    assert (control.flag, control.variant) == ("fresh_chat", "control")
    assert (control.tasks, control.attempts, control.finished) == (3, 4, 4)
    assert (control.done, control.failed, control.refused, control.retries) == (2, 1, 1, 1)
    assert control.success_rate == pytest.approx(0.5)
    assert control.latency_mean == pytest.approx(3.0)  # (2 + 4) / 2
    assert control.latency_p95 == pytest.approx(4.0)
    assert (fresh.tasks, fresh.attempts, fresh.finished, fresh.not_counted) == (3, 4, 2, 2)
    assert fresh.success_rate == pytest.approx(1.0) and fresh.retries == 1
    assert fresh.success_low is not None and fresh.success_low < 1.0  # 2 of 2 proves little
    text = format_report(report)
    assert "fresh_chat:" in text and "control" in text and "50.0 %" in text
    assert "1 attempt(s) ran with no experiment" in text


def test_no_experiment_says_so() -> None:
    report = experiment_report(database([(1, 0.0, 1.0, "done", None)]), "j")
    assert report.variants == []
    assert "no attempt ran under an experiment" in format_report(report)


def test_wilson_and_percentile() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(50, 100) or (0, 0)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert percentile([], 0.95) is None
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0


def test_report_of_a_simulated_job_under_an_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"panel {n}\n" for n in range(40)))
    assert (
        main(
            [
                "flags",
                "set",
                "fresh_chat",
                "--variant",
                "control=off:50",
                "--variant",
                "fresh=on:50",
            ]
        )
        == 0
    )
    sim = ["--simulate", "--workers", "3", "--sim-latency", "0.01", "--sim-image-size", "32"]
    assert main(["run", str(prompts), "--out", str(tmp_path / "out"), "--no-progress", *sim]) == 0
    capsys.readouterr()
    assert main(["flags", "report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_variant = {row["variant"]: row for row in report["variants"]}
    assert set(by_variant) == {"control", "fresh"}
    assert sum(row["tasks"] for row in by_variant.values()) == 40
    assert all(row["success_rate"] == 1.0 for row in by_variant.values())
    assert main(["flags", "report"]) == 0
    assert "fresh_chat:" in capsys.readouterr().out
