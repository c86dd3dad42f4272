"""Where NovelGen keeps its state on disk.

Everything lives under one data directory (platformdirs by default) so that a test, a second
profile or a portable install can point ``--data-dir`` / ``NOVELGEN_DATA_DIR`` elsewhere and be
fully isolated from the user's real jobs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "novelgen-desktop"
DATA_DIR_ENV = "NOVELGEN_DATA_DIR"


@dataclass(frozen=True, slots=True)
class DataPaths:
    """The layout of one data directory."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "novelgen.sqlite"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def default_output_dir(self) -> Path:
        return self.root / "output"

    @property
    def quarantine_dir(self) -> Path:
        """Damaged databases are moved here, never deleted: they may still hold evidence."""
        return self.root / "quarantine"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def snapshots_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "snapshots"

    def job_lock(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "run.lock"

    def ensure(self) -> DataPaths:
        for folder in (self.root, self.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> DataPaths:
    """``--data-dir`` wins, then ``NOVELGEN_DATA_DIR``, then the platform's user data folder."""
    if explicit:
        root = Path(explicit)
    elif os.environ.get(DATA_DIR_ENV):
        root = Path(os.environ[DATA_DIR_ENV])
    else:
        root = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return DataPaths(root.expanduser().resolve())
