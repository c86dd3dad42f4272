"""JSON snapshots of a whole job: the second copy of the truth.

A snapshot is written atomically (temp file, fsync, rename) from committed database state,
every N completions and on clean shutdown. The newest stays plain JSON (fast to read back);
older ones are gzip-compressed and pruned to a fixed number, so a 10,000-task job keeps a
bounded history of a few MB. Recovery reads the newest snapshot that parses.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.errors import StoreError
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import JobRecord, TaskRecord

SNAPSHOT_FORMAT = "novelgen-snapshot"
SNAPSHOT_VERSION = 1
_NAME = re.compile(r"^snapshot-(\d{6,})\.json(\.gz)?$")


def snapshot_payload(store: Store, job_id: str) -> dict[str, Any]:
    """Everything needed to rebuild the job without the database."""
    job = store.find_job(job_id)
    tasks = list(store.iter_task_dicts(job_id))
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "written_at": time.time(),
        "job": asdict(job),
        "counts": {k.value: v for k, v in store.count_by_state(job_id).items()},
        "tasks": tasks,
    }


@contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file that appears at ``path`` complete (fsynced, renamed, folder fsynced) or not at
    all. Written through a handle so a 10,000-task snapshot is streamed, not built in memory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def write_snapshot(store: Store, job_id: str, folder: Path, seq: int, *, keep: int = 10) -> Path:
    """Write snapshot number ``seq`` and compress/prune the older ones.

    The document is the same as ``snapshot_payload`` gives, but streamed task by task: peak
    memory stays flat however large the job is.
    """
    folder.mkdir(parents=True, exist_ok=True)
    job = asdict(store.find_job(job_id))
    job["snapshot_seq"] = seq  # recorded in the database below, after the file exists
    header = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "written_at": time.time(),
        "seq": seq,
        "job": job,
        "counts": {k.value: v for k, v in store.count_by_state(job_id).items()},
    }
    path = folder / f"snapshot-{seq:06d}.json"
    with _atomic_file(path) as handle:
        handle.write(_dump(header)[:-1] + b',"tasks":[')
        for index, task in enumerate(store.iter_task_dicts(job_id)):
            if index:
                handle.write(b",")
            handle.write(_dump(task))
        handle.write(b"]}")
    store.set_snapshot_seq(job_id, seq)
    compress_and_prune(folder, keep=keep)
    return path


def list_snapshots(folder: Path) -> list[tuple[int, Path]]:
    """Snapshots in ``folder``, newest first."""
    found: list[tuple[int, Path]] = []
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    found.sort(key=lambda item: (item[0], item[1].suffix == ".json"), reverse=True)
    return found


def compress_and_prune(folder: Path, *, keep: int = 10) -> None:
    snapshots = list_snapshots(folder)
    for index, (_seq, path) in enumerate(snapshots):
        if index >= keep:
            path.unlink(missing_ok=True)
        elif index > 0 and path.suffix == ".json":
            gz_path = path.with_name(path.name + ".gz")
            with (
                _atomic_file(gz_path) as handle,
                path.open("rb") as source,
                # filename="": the header must not carry the temp file's name
                gzip.GzipFile(filename="", fileobj=handle, mode="wb", compresslevel=6) as gz,
            ):
                shutil.copyfileobj(source, gz, 1 << 20)
            path.unlink()
    for leftover in folder.glob(".snapshot-*.tmp"):
        leftover.unlink(missing_ok=True)


def read_snapshot(path: Path) -> dict[str, Any]:
    """Parse one snapshot; any damage is a :class:`StoreError` naming the file."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        payload = json.loads(raw)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise StoreError(f"snapshot {path} cannot be read: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
        raise StoreError(f"snapshot {path} is not a NovelGen snapshot")
    if payload.get("version") != SNAPSHOT_VERSION:
        raise StoreError(f"snapshot {path} has unsupported version {payload.get('version')!r}")
    return payload


def records_from_snapshot(payload: dict[str, Any]) -> tuple[JobRecord, list[TaskRecord]]:
    try:
        job_data = dict(payload["job"])
        job_data["state"] = JobState(job_data["state"])
        job = JobRecord(**job_data)
        tasks = []
        for item in payload["tasks"]:
            data = dict(item)
            data["state"] = TaskState(data["state"])
            tasks.append(TaskRecord(**data))
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"snapshot content is inconsistent: {exc}") from exc
    return job, tasks
