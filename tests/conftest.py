"""Suite-wide isolation: no test touches the user's real data directory or a display."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same generated examples every time (a red build must be reproducible); local
# runs explore new ones. Failures found locally are worth adding as explicit examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own NOVELGEN_DATA_DIR (subprocesses inherit it too)."""
    data_dir = tmp_path / "novelgen-data"
    monkeypatch.setenv("NOVELGEN_DATA_DIR", str(data_dir))
    yield data_dir
