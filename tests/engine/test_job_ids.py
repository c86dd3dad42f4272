"""Job ids stay unique when their random suffix repeats (a name used many times a day)."""

from __future__ import annotations

from pathlib import Path

import pytest

from novelgen_desktop.engine import jobs
from novelgen_desktop.engine.jobs import JobOptions, create_job
from novelgen_desktop.engine.recovery import open_store
from novelgen_desktop.paths import DataPaths
from tests.engine.test_recovery import make_specs


def test_a_repeated_suffix_draws_again_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = DataPaths(tmp_path / "data")
    paths.ensure()
    store, _report = open_store(paths)
    suffixes = iter(["abcd", "abcd", "abcd", "beef"])
    monkeypatch.setattr(jobs.secrets, "token_hex", lambda _n: next(suffixes))
    first, _ = create_job(store, paths, make_specs(), JobOptions("same", tmp_path / "out"))
    second, _ = create_job(store, paths, make_specs(), JobOptions("same", tmp_path / "out"))
    assert first.id.endswith("-abcd") and second.id.endswith("-beef")
    store.close()
