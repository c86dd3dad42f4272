"""``manifest.jsonl``: the append-only record of finished images, beside the images.

It is the third copy of the truth (after SQLite and the snapshots) and the one an author can
read without NovelGen. Rows are appended with a single ``write`` on an ``O_APPEND`` descriptor
and fsynced before the database commit that counts them, so after any crash the manifest holds
at least every image the database says is done. A crash mid-write can only tear the last line,
which :func:`repair_torn_tail` cuts off before anything else is appended.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True, slots=True)
class ManifestRow:
    line: int
    offset_after: int
    data: dict[str, Any]


class ManifestWriter:
    """Appends rows to one job's manifest. Not thread-safe: one writer thread owns it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, rows: Sequence[dict[str, Any]], *, fsync: bool = True) -> int:
        """Append ``rows`` and return the manifest's size afterwards."""
        if rows:
            payload = "".join(
                json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows
            ).encode("utf-8")
            view = memoryview(payload)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if fsync:
                os.fsync(self._fd)
        return os.fstat(self._fd).st_size

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)


def repair_torn_tail(path: Path) -> int:
    """Cut a partial last line left by a crash mid-append; return the bytes removed."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        # Walk back to the previous newline in blocks; manifests are small per line.
        position = size
        block = 4096
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            chunk = handle.read(position - start)
            index = chunk.rfind(b"\n")
            if index >= 0:
                keep = start + index + 1
                break
            position = start
        else:
            keep = 0
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
        return size - keep


def read_manifest(path: Path, *, offset: int = 0) -> Iterator[ManifestRow]:
    """Rows from ``offset`` on. Lines that are not JSON objects are skipped, not fatal: the
    manifest is evidence, and one bad line must not hide the rest."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(offset)
        position = offset
        line_no = 0
        for raw in handle:
            line_no += 1
            position += len(raw)
            if not raw.endswith(b"\n"):
                break  # torn tail: not a row
            try:
                data = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(data, dict):
                yield ManifestRow(line=line_no, offset_after=position, data=data)
