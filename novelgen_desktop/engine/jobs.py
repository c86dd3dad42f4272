"""Turning parsed prompts into a durable job, and opening jobs again.

Each panel becomes one task per image wanted. Output paths are planned here, once, with
collisions resolved across the whole job, so that any later run — a resume after a crash,
a retry, a rebuild from a snapshot — puts each image at exactly the same place and can
recognise an image that a crashed run already wrote.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novelgen_desktop.engine.composition import copy_references
from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.errors import JobNotFoundError
from novelgen_desktop.output.naming import (
    DEFAULT_TEMPLATE,
    NameFields,
    NamingTemplate,
    disambiguate,
    slugify,
)
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import JobRecord, TaskRecord
from novelgen_desktop.store.snapshot import write_snapshot

if TYPE_CHECKING:  # importing the prompts package loads every parser: not needed to resume
    from novelgen_desktop.prompts.model import PromptSpec


@dataclass(frozen=True, slots=True)
class JobOptions:
    name: str
    out_root: Path
    naming_template: str = DEFAULT_TEMPLATE
    sources: tuple[str, ...] = ()
    settings: dict[str, Any] | None = None
    # Reference images to keep with the job: (sha256, mime, path of the original file).
    references: tuple[tuple[str, str, str], ...] = ()


def make_job_id(name: str, now: float | None = None) -> str:
    """Readable and unique: ``lighthouse-keeper-20261123-7f3a``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32].strip("-") or "job"
    stamp = time.strftime("%Y%m%d", time.localtime(now))
    return f"{slug}-{stamp}-{secrets.token_hex(2)}"


def _unused_job_id(store: Store, name: str, now: float) -> str:
    """A job id no job has yet: the 16-bit suffix collides within a day once a name is used
    a few dozen times (a script resubmitted, a test submitting 46 jobs)."""
    for _ in range(64):
        job_id = make_job_id(name, now)
        try:
            store.find_job(job_id, exact=True)
        except JobNotFoundError:
            return job_id
    raise RuntimeError(f"no unused job id for {name!r} after 64 tries")


def plan_tasks(
    job_id: str, specs: Sequence[PromptSpec], template: NamingTemplate, first_task_id: int
) -> list[TaskRecord]:
    tasks: list[TaskRecord] = []
    taken: set[str] = set()
    seq = 0
    for spec in specs:
        for variant in range(1, spec.images + 1):
            seq += 1
            task_id = first_task_id + seq - 1
            fields = NameFields(
                chapter=spec.chapter,
                page=spec.page,
                panel=spec.panel,
                seq=seq,
                variant=variant,
                images=spec.images,
                job=job_id,
                task=task_id,
                slug=slugify(spec.text) or "panel",
                extension=".png",
            )
            path = disambiguate(template.render(fields), lambda p: p.as_posix().lower() in taken)
            taken.add(path.as_posix().lower())
            metadata = dict(spec.metadata)
            tasks.append(
                TaskRecord(
                    id=task_id,
                    job_id=job_id,
                    seq=seq,
                    prompt=spec.text,
                    planned_path=path.as_posix(),
                    state=TaskState.QUEUED,
                    chapter=spec.chapter,
                    page=spec.page,
                    panel=spec.panel,
                    variant=variant,
                    priority=spec.priority,
                    characters=list(spec.characters),
                    style=spec.style,
                    metadata=metadata,
                    source=str(spec.source),
                )
            )
    return tasks


def create_job(
    store: Store, paths: DataPaths, specs: Sequence[PromptSpec], options: JobOptions
) -> tuple[JobRecord, list[TaskRecord]]:
    """Create the job, its tasks and its first snapshot (so it can be rebuilt from day one)."""
    template = NamingTemplate(options.naming_template)
    now = time.time()
    job_id = _unused_job_id(store, options.name, now)
    out_dir = (options.out_root / job_id).resolve()
    job = JobRecord(
        id=job_id,
        name=options.name,
        created_at=now,
        updated_at=now,
        state=JobState.RUNNING,
        out_dir=str(out_dir),
        naming_template=options.naming_template,
        sources=list(options.sources),
        settings=dict(options.settings or {}),
    )
    tasks = plan_tasks(job_id, specs, template, store.next_task_id())
    if options.references:  # before the job exists: a job never lacks its images
        copy_references(paths.job_dir(job_id), options.references)
    store.create_job(job, tasks)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths.job_dir(job_id).mkdir(parents=True, exist_ok=True)
    write_snapshot(store, job_id, paths.snapshots_dir(job_id), 0)
    return store.find_job(job_id), tasks


IMAGE_EXTENSIONS = (".png", ".jpg", ".webp")


def relative_candidates(planned: str) -> list[str]:
    """Where a finished image of this task may be: the plan with any accepted extension.

    Plain string work (no PurePosixPath): resume runs this for every unfinished task of a
    10,000-task job before the first dispatch.
    """
    slash = planned.rfind("/")
    dot = planned.rfind(".")
    stem = planned[:dot] if dot > slash + 1 else planned
    return [stem + ext for ext in IMAGE_EXTENSIONS]
