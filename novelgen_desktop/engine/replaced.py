"""Setting a finished image aside so that its panel can be drawn again.

A finished image was paid for (minutes of a rate-limited account), so "regenerate this
panel" never deletes it: it moves to ``<out_dir>/.replaced/`` under a name no other file
has, and the manifest gets a row saying where it went. The task then goes back to the queue
with its file fields cleared, and the next image lands at the planned path as usual.

The order makes every crash point safe:

1. the image gets a second name under ``.replaced/`` (a hard link; a copy where links are
   not supported) — a crash here leaves the task done with an extra copy;
2. the store records the task as queued and its done attempt as ``replaced`` — a crash here
   leaves the old image at the planned path, which the next resume adopts again (the
   regeneration is undone, nothing is lost);
3. the planned path is unlinked and a ``replaced`` row is appended to the manifest.

Only after step 3 may a worker be given the task: an image still at the planned path would
be kept as the task's result (see ``JobRunner._write_file``) instead of the new one.

Manifest rows written here have no ``task`` key (``replaced_task`` instead), so recovery,
which adopts rows by their ``task``, never takes a set-aside image for the task's result.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from novelgen_desktop.errors import OutputError
from novelgen_desktop.output.writer import fsync_folders
from novelgen_desktop.store.manifest import MANIFEST_NAME
from novelgen_desktop.store.records import TaskRecord

REPLACED_DIR = ".replaced"
"""Under each job's output folder: images set aside by "regenerate", never deleted."""


class RunnerStoppingError(Exception):
    """The running job is winding down: the caller waits for it to stop, then changes the
    stored job instead (its runner can no longer record anything)."""


@dataclass(frozen=True, slots=True)
class ReplacedImage:
    """What became of a regenerated task's old image."""

    task_id: int
    old_path: str | None  # relative to the output folder; None if the task had no file
    moved_to: str | None  # relative to the output folder; None if the file was missing
    requeued: bool  # False when the job was cancelled meanwhile (the task is cancelled)


def set_aside(out_dir: Path, task: TaskRecord) -> str | None:
    """Give the task's image a second, unique name under ``.replaced/`` (step 1); returns
    it relative to ``out_dir``, or None when the file is already gone (nothing to keep)."""
    if not task.output_path:
        return None
    source = out_dir / task.output_path
    if not source.is_file():
        return None
    relative = PurePosixPath(task.output_path)
    attempt = task.done_attempt or task.attempts or 1
    stem = f"{relative.stem}.attempt-{attempt}"
    folder = out_dir / REPLACED_DIR / relative.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    for number in range(1, 10_000):
        name = f"{stem}{'' if number == 1 else f'-{number}'}{relative.suffix}"
        target = folder / name
        try:
            _link_or_copy(source, target)
        except FileExistsError:
            continue  # regenerated before: keep every earlier image too
        except OSError as exc:
            raise OutputError(
                f"cannot set {source} aside into {folder}: {exc.strerror or exc}"
            ) from exc
        fsync_folders([folder])
        return (PurePosixPath(REPLACED_DIR) / relative.parent / name).as_posix()
    raise OutputError(f"no free name for {relative.name} under {folder}")


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link is instant and atomic; some output drives (FAT, exFAT, network shares)
    have none, so the bytes are copied there, through a temp name, and fsynced."""
    try:
        os.link(source, target)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    if target.exists():
        raise FileExistsError(str(target))
    temp = target.with_name(f".{target.name}.copy")
    shutil.copyfile(source, temp)
    with temp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, target)  # only this process writes under .replaced/: no race to lose


def undo_set_aside(out_dir: Path, moved_to: str | None) -> None:
    """The store refused the change: the second name goes (the image stays where it was)."""
    if moved_to is not None:
        (out_dir / moved_to).unlink(missing_ok=True)


def drop_original(
    out_dir: Path, job_id: str, task: TaskRecord, moved_to: str | None, now: float
) -> None:
    """Step 3: the planned path is freed for the next image and the manifest says where
    the old one went. Raises OutputError if the old file cannot be removed (the next image
    of this task would then be refused as a duplicate of it)."""
    if task.output_path and moved_to is not None:
        original = out_dir / task.output_path
        try:
            original.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot remove {original} (a copy is kept at {out_dir / moved_to}): "
                f"{exc.strerror or exc}"
            ) from exc
        fsync_folders([original.parent])
    append_manifest_row(out_dir / MANIFEST_NAME, replaced_row(job_id, task, moved_to, now))


def replaced_row(job_id: str, task: TaskRecord, moved_to: str | None, now: float) -> dict[str, Any]:
    return {
        "job": job_id,
        "replaced_task": task.id,
        "seq": task.seq,
        "attempt": task.done_attempt,
        "was": task.output_path,
        "moved_to": moved_to,
        "sha256": task.sha256,
        "size": task.size,
        "replaced_at": now,
    }


def append_manifest_row(manifest: Path, row: dict[str, Any]) -> None:
    """One ``write`` on an ``O_APPEND`` descriptor: safe beside the job's own manifest
    writer, whose appends are whole lines too (the kernel serialises appends to one file)."""
    payload = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    fd = os.open(manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def regenerated_message(task_id: int, moved_to: str | None) -> str:
    where = f"its image was moved to {moved_to}" if moved_to else "its image file was missing"
    return f"task {task_id} will be drawn again: {where}"


__all__ = [
    "REPLACED_DIR",
    "ReplacedImage",
    "RunnerStoppingError",
    "append_manifest_row",
    "drop_original",
    "regenerated_message",
    "replaced_row",
    "set_aside",
    "undo_set_aside",
]
