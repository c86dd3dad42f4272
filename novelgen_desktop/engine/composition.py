"""How a task's prompt was composed, as the engine needs it: no style bible parsing here.

``novelgen_desktop.style`` composes prompts when a job is created and stores the result in
each task's ``metadata["composition"]``; the engine only reads it back (the manifest's
description and bible version, each attempt's style version, the reference images to attach)
and keeps the job's own copy of every reference image, named by its hash, in the job's data
folder: the job never needs the bible file or the original images again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from novelgen_desktop.engine.model import ChatStrategy, ReferenceFile
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.store.records import JobRecord, TaskRecord

COMPOSITION_KEY = "composition"
REFERENCES_DIR = "references"
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def reference_file_name(sha256: str, mime: str) -> str:
    return sha256 + _EXTENSIONS.get(mime, ".img")


def copy_references(job_dir: Path, sources: Iterable[tuple[str, str, str]]) -> None:
    """Copy each ``(sha256, mime, source path)`` into the job's references folder, durably.

    Raises OSError (the caller refuses to create the job) if a file cannot be copied.
    """
    folder = job_dir / REFERENCES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for sha256, mime, source in sources:
        target = folder / reference_file_name(sha256, mime)
        if target.exists():
            continue
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(source, partial)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)


def composition_fields(task: TaskRecord) -> dict[str, Any]:
    """What the manifest says about a composed prompt: the panel's own description and the
    style bible (name, version) it was composed with, so a row alone tells how its image was
    asked for. Empty for a task composed without a bible."""
    composition = task.metadata.get(COMPOSITION_KEY)
    if not isinstance(composition, dict):
        return {}
    return {
        "description": composition.get("description"),
        "style_bible": composition.get("bible"),
        "style_version": composition.get("version"),
        "characters": list(task.characters),
    }


def style_version_of(task: TaskRecord) -> str | None:
    composition = task.metadata.get(COMPOSITION_KEY)
    if isinstance(composition, dict):
        version = composition.get("version")
        return version if isinstance(version, str) else None
    return None


def chat_strategy_of(job: JobRecord) -> ChatStrategy:
    """The job's chat strategy (jobs made before there was one: a new chat per panel)."""
    try:
        return ChatStrategy(job.settings.get("chat_strategy", ChatStrategy.PANEL.value))
    except ValueError:
        return ChatStrategy.PANEL


def reference_files(paths: DataPaths, job_id: str, task: TaskRecord) -> tuple[ReferenceFile, ...]:
    """The job's own copies of the task's reference images (made when the job was created)."""
    composition = task.metadata.get(COMPOSITION_KEY)
    if not isinstance(composition, dict):
        return ()
    folder = paths.job_dir(job_id) / REFERENCES_DIR
    return tuple(
        ReferenceFile(
            sha256=ref["sha256"],
            name=ref["name"],
            mime=ref["mime"],
            path=str(folder / reference_file_name(ref["sha256"], ref["mime"])),
        )
        for ref in composition.get("references", ())
    )
