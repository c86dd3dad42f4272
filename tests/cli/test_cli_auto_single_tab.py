"""``novelgen run`` with tabs failing together: it switches to one tab by itself and says so
(auto_single_tab, docs/flags.md), and ``novelgen flags history`` shows why."""

from __future__ import annotations

from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from tests.cli.test_cli import write_prompts

FAILING = [
    "--simulate",
    "--workers",
    "3",
    "--sim-latency",
    "0.005",
    "--sim-image-size",
    "32",
    "--sim-seed",
    "7",
    "--backoff-base",
    "0.01",
    "--no-progress",
]


def run_failing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    panels: int,
    failure_rate: str,
    *more: str,
) -> tuple[int, str, str]:
    """``novelgen run`` three simulated tabs failing at ``failure_rate``; (exit code,
    stderr of the run, ``novelgen flags show`` afterwards)."""
    prompts = write_prompts(tmp_path / "prompts.txt", panels)
    out = str(tmp_path / "out")
    code = main(
        ["run", str(prompts), "--out", out, *FAILING, "--sim-failure-rate", failure_rate, *more]
    )
    err = capsys.readouterr().err
    assert main(["flags", "show"]) == 0
    return code, err, capsys.readouterr().out


def test_run_falls_back_to_one_tab_and_flags_history_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, shown = run_failing(tmp_path, capsys, 12, "0.9")
    assert code != 0  # most panels end dead at this failure rate: the run says so
    [line] = [x for x in err.splitlines() if "tab orchestration failing" in x]
    assert line.startswith("novelgen: tab orchestration failing: ")
    assert "attempts in the last 10 min failed on " in line
    assert line.endswith(
        "; switched to the single-tab fallback (multi_tab off, flags v2); switch multi_tab "
        "on again once the cause is fixed"
    )

    assert main(["flags", "history", "--limit", "1"]) == 0
    history = capsys.readouterr().out
    assert "automatic single-tab fallback: " in history and "(current)" in history
    assert history.rstrip().endswith("multi_tab=off")
    assert any(
        x.split()[:2] == ["multi_tab", "off"] and "local file" in x for x in shown.splitlines()
    ), shown


def test_a_run_with_ordinary_failures_keeps_its_tabs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # With the default five failures per task, 40 panels at 30 % left one panel dead in
    # about 1 run in 11 (1 - (1 - 0.3**5)**40), which is the engine working, not a fall to one
    # tab; twenty failures make a dead panel a 1-in-10^9 event, so "every panel done" is
    # a fair check again.
    code, err, shown = run_failing(tmp_path, capsys, 40, "0.3", "--max-failures", "20")
    assert code == 0, err
    assert "tab orchestration failing" not in err
    assert any(x.split()[:3] == ["multi_tab", "on", "default"] for x in shown.splitlines()), shown
