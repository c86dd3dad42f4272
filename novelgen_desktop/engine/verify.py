"""``novelgen verify``: do the files on disk, the database and the manifest agree?

A job's promise is "every finished panel is on disk, exactly once, with the bytes we recorded".
This checks it from the outside, read-only: nothing is repaired here (``novelgen resume``
reconciles, ``novelgen recover`` rebuilds), so the report can be trusted as a description of
what is there. Each finding names the task, the file and what was expected against what was
found, so the author knows which panel to look at.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from novelgen_desktop.engine.model import TaskState
from novelgen_desktop.engine.recovery import files_under
from novelgen_desktop.engine.replaced import REPLACED_DIR
from novelgen_desktop.output.writer import is_temp_file_name, sha256_file
from novelgen_desktop.store.manifest import MANIFEST_NAME, read_manifest
from novelgen_desktop.store.records import JobRecord, TaskRecord


class FindingKind(enum.StrEnum):
    MISSING_FILE = "missing_file"  # a done task's image is not on disk
    CHANGED_FILE = "changed_file"  # on disk, but not the bytes recorded (size or SHA-256)
    NO_OUTPUT_PATH = "no_output_path"  # a done task without a recorded file
    STRAY_FILE = "stray_file"  # a file in the job's folder no done task owns
    TEMP_FILE = "temp_file"  # an interrupted write's leftover (resume deletes it)
    MANIFEST_MISSING_ROW = "manifest_missing_row"  # done in the database, no manifest row
    MANIFEST_DISAGREES = "manifest_disagrees"  # the manifest's last word differs
    MANIFEST_EXTRA_ROW = "manifest_extra_row"  # a row for a task the database has not done
    NO_MANIFEST = "no_manifest"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    message: str
    task_id: int | None = None
    path: str | None = None  # relative to the job's output folder

    def __str__(self) -> str:
        where = f"task {self.task_id}: " if self.task_id is not None else ""
        return f"{self.kind.value}: {where}{self.message}"


@dataclass(slots=True)
class VerifyReport:
    job_id: str
    out_dir: str
    done: int = 0
    files_checked: int = 0
    hashes_checked: bool = True
    findings: list[Finding] = field(default_factory=list)
    manifest_unreconciled: int = 0  # rows past what the database has taken in

    def hint(self) -> str | None:
        """What to do first, when the findings come from a database behind its manifest (a
        crash or a rebuild from an older snapshot), not from damage."""
        if not self.manifest_unreconciled:
            return None
        return (
            f"the database has not taken in the last {self.manifest_unreconciled} manifest "
            "row(s) yet (a crash, or a rebuild from an older snapshot): `novelgen resume` "
            "reconciles them first"
        )

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_job(job: JobRecord, tasks: list[TaskRecord], *, hashes: bool = True) -> VerifyReport:
    """Compare ``tasks`` (from the store) with the job's folder and manifest. Reads only."""
    out = Path(job.out_dir)
    report = VerifyReport(job.id, job.out_dir, hashes_checked=hashes)
    done = [t for t in tasks if t.state is TaskState.DONE]
    report.done = len(done)
    owned: dict[str, TaskRecord] = {}
    for task in done:
        if not task.output_path:
            report.findings.append(
                Finding(FindingKind.NO_OUTPUT_PATH, "done, but no file is recorded", task.id)
            )
            continue
        owned[task.output_path] = task
        path = out / task.output_path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            report.findings.append(
                Finding(
                    FindingKind.MISSING_FILE,
                    f"{task.output_path} is missing (recorded {task.size} bytes, "
                    f"sha256 {task.sha256})",
                    task.id,
                    task.output_path,
                )
            )
            continue
        report.files_checked += 1
        if size != task.size:
            report.findings.append(
                Finding(
                    FindingKind.CHANGED_FILE,
                    f"{task.output_path} is {size} bytes, recorded {task.size}",
                    task.id,
                    task.output_path,
                )
            )
        elif hashes and sha256_file(path) != task.sha256:
            report.findings.append(
                Finding(
                    FindingKind.CHANGED_FILE,
                    f"{task.output_path} has other bytes than recorded (sha256 {task.sha256})",
                    task.id,
                    task.output_path,
                )
            )
    if out.is_dir():
        # Regenerated panels' old images are kept under .replaced/ on purpose.
        for relative in sorted(files_under(out, skip=frozenset({REPLACED_DIR}))):
            if relative == MANIFEST_NAME or relative in owned:
                continue
            name = relative.rsplit("/", 1)[-1]
            if is_temp_file_name(name):
                report.findings.append(
                    Finding(
                        FindingKind.TEMP_FILE,
                        f"{relative} is an interrupted write (novelgen resume removes it)",
                        path=relative,
                    )
                )
            else:
                report.findings.append(
                    Finding(
                        FindingKind.STRAY_FILE,
                        f"{relative} belongs to no finished task",
                        path=relative,
                    )
                )
    _check_manifest(out, done, report)
    manifest = out / MANIFEST_NAME
    if manifest.exists():
        report.manifest_unreconciled = sum(
            1 for _row in read_manifest(manifest, offset=min(job.manifest_offset, _size(manifest)))
        )
    return report


def _size(path: Path) -> int:
    return path.stat().st_size


def _check_manifest(out: Path, done: list[TaskRecord], report: VerifyReport) -> None:
    manifest = out / MANIFEST_NAME
    if not manifest.exists():
        if done:
            report.findings.append(
                Finding(FindingKind.NO_MANIFEST, f"{MANIFEST_NAME} is missing", path=MANIFEST_NAME)
            )
        return
    last: dict[int, tuple[int, dict[str, object]]] = {}
    for row in read_manifest(manifest):
        task_id = row.data.get("task")
        if isinstance(task_id, int) and "file" in row.data:
            last[task_id] = (row.line, row.data)
        replaced = row.data.get("replaced_task")  # regenerated: its earlier image row is void
        if isinstance(replaced, int):
            last.pop(replaced, None)
    done_ids = {t.id for t in done}
    for task in done:
        entry = last.get(task.id)
        if entry is None:
            report.findings.append(
                Finding(
                    FindingKind.MANIFEST_MISSING_ROW,
                    f"done ({task.output_path}) but {MANIFEST_NAME} has no row for it",
                    task.id,
                    task.output_path,
                )
            )
            continue
        line, data = entry
        if (data.get("file"), data.get("sha256")) != (task.output_path, task.sha256):
            report.findings.append(
                Finding(
                    FindingKind.MANIFEST_DISAGREES,
                    f"{MANIFEST_NAME} line {line} says {data.get('file')} "
                    f"(sha256 {data.get('sha256')}), the database {task.output_path} "
                    f"(sha256 {task.sha256})",
                    task.id,
                    task.output_path,
                )
            )
    for task_id, (line, data) in sorted(last.items()):
        if task_id not in done_ids:
            report.findings.append(
                Finding(
                    FindingKind.MANIFEST_EXTRA_ROW,
                    f"{MANIFEST_NAME} line {line} records {data.get('file')}, but the task is "
                    "not done in the database",
                    task_id,
                )
            )
