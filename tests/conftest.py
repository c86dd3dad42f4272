"""Suite-wide isolation: no test touches the user's real data directory or a display."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# CI runs the same generated examples every time (a red build must be reproducible); local
# runs explore new ones. Failures found locally are worth adding as explicit examples.
# Neither times the examples (no deadline, no too_slow health check): these machines are
# shared and noisy, and a slow first example (a regex compiled while another test process
# keeps both cores busy) is not a failure of the code under test.
_UNTIMED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", _UNTIMED, derandomize=True, print_blob=True)
settings.register_profile("dev", _UNTIMED)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own NOVELGEN_DATA_DIR (subprocesses inherit it too)."""
    data_dir = tmp_path / "novelgen-data"
    monkeypatch.setenv("NOVELGEN_DATA_DIR", str(data_dir))
    yield data_dir


# With pytest-xdist (scripts/test.sh runs two workers, `--dist loadgroup`), the tests that drive
# a real Chromium run one after another on one worker: two browsers side by side on a 2-core
# machine starve each other's pages and turn waits into timeouts. The app bundle's tests share
# one PyInstaller build (a module fixture), so they stay together on one worker too.
SERIAL_GROUPS = {
    "chromium": (
        "tests/extension_e2e/",
        "tests/fixtures/test_chatgpt_site.py",
        "tests/memory/test_probe.py",
        "tests/packaging/test_options_page.py",
    ),
    "app-bundle": ("tests/packaging/test_app_bundle.py",),
}


def serial_group(nodeid: str) -> str | None:
    """The group a test must run in, by where it lives; None when it may go anywhere."""
    for group, prefixes in SERIAL_GROUPS.items():
        if nodeid.startswith(prefixes):
            return group
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with the groups above, decided on the controller by path.

    Not through ``xdist_group`` marks: xdist 3.8 groups by appending ``@group`` to
    ``item._nodeid``, which pytest 9.2 no longer reads, so marked tests were spread anyway.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SerialGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return serial_group(nodeid) or nodeid

    return SerialGroupScheduling(config, log)
