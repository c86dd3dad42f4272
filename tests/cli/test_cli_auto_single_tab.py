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


def test_run_falls_back_to_one_tab_and_flags_history_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = write_prompts(tmp_path / "prompts.txt", 12)
    code = main(
        ["run", str(prompts), "--out", str(tmp_path / "out"), *FAILING, "--sim-failure-rate", "0.9"]
    )
    err = capsys.readouterr().err
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
    assert main(["flags", "show"]) == 0
    shown = capsys.readouterr().out
    assert any(
        x.split()[:2] == ["multi_tab", "off"] and "local file" in x for x in shown.splitlines()
    ), shown


def test_a_run_with_ordinary_failures_keeps_its_tabs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = write_prompts(tmp_path / "prompts.txt", 40)
    code = main(
        ["run", str(prompts), "--out", str(tmp_path / "out"), *FAILING, "--sim-failure-rate", "0.3"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "tab orchestration failing" not in err
    assert main(["flags", "show"]) == 0
    shown = capsys.readouterr().out
    assert any(x.split()[:3] == ["multi_tab", "on", "default"] for x in shown.splitlines()), shown
