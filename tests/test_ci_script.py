"""scripts/test.sh (what CI runs) must fail when any check fails, not only the last one.

The script once chained its checks with ``&&``; under ``set -e`` a failure inside such a list
does not stop the script, so a lint error passed CI. Here the real script runs in a copy of the
repository's layout where setup does nothing and each tool is a stub that records its call.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def stub(path: Path, name: str, failing: str | None) -> None:
    """A tool that appends its name and arguments to calls.log and fails when told to."""
    path.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "{name} $*" >> "$CALLS"\n'
        f'case "{name} $*" in "{failing}"*) exit 1;; esac\n'
        "exit 0\n"
        if failing
        else f'#!/usr/bin/env bash\necho "{name} $*" >> "$CALLS"\nexit 0\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_script(tmp_path: Path, failing: str | None) -> tuple[int, list[str]]:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "test.sh", repo / "scripts" / "test.sh")
    (repo / "scripts" / "setup.sh").write_text("exit 0\n")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("ruff", "mypy", "python"):
        stub(bin_dir / tool, tool, failing)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    stub(path_dir / "node", "node", failing)
    calls = tmp_path / "calls.log"
    env = {**os.environ, "CALLS": str(calls), "PATH": f"{path_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "test.sh")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    logged = calls.read_text().splitlines() if calls.exists() else []
    return done.returncode, logged


def test_every_check_runs_when_all_pass(tmp_path: Path) -> None:
    rc, calls = run_script(tmp_path, failing=None)
    assert rc == 0
    assert [c.split()[0] for c in calls] == ["ruff", "ruff", "mypy", "node", "python"]
    assert calls[-1].startswith("python -m pytest")


@pytest.mark.parametrize(
    ("failing", "ran"),
    [
        ("ruff check", 1),
        ("ruff format", 2),
        ("mypy", 3),
        ("node", 4),
        ("python -m pytest", 5),
    ],
)
def test_a_failing_check_fails_the_run_and_stops_it(tmp_path: Path, failing: str, ran: int) -> None:
    rc, calls = run_script(tmp_path, failing=failing)
    assert rc != 0, f"{failing} failed but scripts/test.sh exited 0"
    assert len(calls) == ran, calls
    assert calls[-1].startswith(failing)


def test_every_test_file_that_starts_chromium_is_in_the_serial_group() -> None:
    """A new browser test outside the group would run beside another browser on two workers."""
    from tests.conftest import serial_group

    markers = ("CHROMIUM", "browser_rig", "playwright")
    starting = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").rglob("test_*.py")
        if any(marker in path.read_text(encoding="utf-8") for marker in markers)
        and path.name != "test_ci_script.py"
    )
    assert len(starting) >= 10, starting
    assert {p: serial_group(f"{p}::test") for p in starting} == dict.fromkeys(starting, "chromium")
