"""Recovery: reconcile_job at every crash point of the completion sequence, and open_store
rebuilding a damaged or missing database from snapshots.

A completion is three durable steps, in this order:

1. the image is renamed into place (``write_image_atomically``);
2. its manifest row is appended and fsynced;
3. the database commit (``TaskCompleted`` + the new manifest offset).

The tests drive a real job from ``create_job`` by hand through those steps, "crash" between
them simply by stopping, and check what ``reconcile_job`` makes of the leftovers.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pytest

from novelgen_desktop.engine import recovery
from novelgen_desktop.engine.jobs import JobOptions, create_job
from novelgen_desktop.engine.model import ErrorKind, TaskState
from novelgen_desktop.engine.recovery import open_store, reconcile_job
from novelgen_desktop.engine.runner import manifest_row
from novelgen_desktop.errors import StoreError
from novelgen_desktop.output.imagecheck import inspect_image
from novelgen_desktop.output.writer import sha256_file, write_image_atomically
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.sim.render import corrupt_image, render_panel_jpeg, render_panel_png
from novelgen_desktop.store import schema
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.manifest import MANIFEST_NAME, ManifestWriter, read_manifest
from novelgen_desktop.store.records import (
    AttemptEnded,
    AttemptStarted,
    JobRecord,
    TaskCompleted,
    TaskRecord,
    TaskUpdated,
)
from novelgen_desktop.store.snapshot import list_snapshots, write_snapshot

Stage = Literal["renamed", "manifested", "committed"]


@dataclass
class Env:
    paths: DataPaths
    store: Store
    job: JobRecord
    tasks: list[TaskRecord]

    @property
    def out_dir(self) -> Path:
        return Path(self.job.out_dir)

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    def current_job(self) -> JobRecord:
        return self.store.find_job(self.job.id)

    def task(self, task_id: int) -> TaskRecord:
        (found,) = [t for t in self.store.load_tasks(self.job.id) if t.id == task_id]
        return found


def make_specs(prefix: str = "A lighthouse") -> list[PromptSpec]:
    specs = [
        PromptSpec(
            f"{prefix} on a cliff, panel {i}",
            SourceLocation("script.md", i),
            chapter="1",
            page=1,
            panel=i,
        )
        for i in range(1, 4)
    ]
    specs.append(
        PromptSpec(
            f"{prefix}, two takes",
            SourceLocation("script.md", 9),
            chapter="2",
            page=3,
            panel=1,
            images=2,
        )
    )
    return specs


def new_env(store: Store, paths: DataPaths, name: str, out_root: Path) -> Env:
    job, tasks = create_job(store, paths, make_specs(name), JobOptions(name, out_root))
    return Env(paths, store, job, tasks)


@pytest.fixture
def paths(isolated_data_dir: Path) -> DataPaths:
    resolved = resolve_data_dir()
    assert resolved.root == isolated_data_dir.resolve()
    return resolved.ensure()


@pytest.fixture
def env(paths: DataPaths, tmp_path: Path) -> Iterator[Env]:
    store = Store(paths.database)
    try:
        yield new_env(store, paths, "Recovery Test", tmp_path / "out")
    finally:
        store.close()


def png(seed: int) -> bytes:
    return render_panel_png(f"panel {seed}", width=64, height=64, seed=seed)


# --- driving the completion sequence by hand --------------------------------------------------


def start_attempt(env: Env, task: TaskRecord, attempt: int = 1) -> None:
    env.store.apply([AttemptStarted(task.id, attempt, "w1", "acc1", time.time())])


def fail_attempt(env: Env, task: TaskRecord, attempt: int) -> None:
    env.store.apply(
        [
            AttemptEnded(task.id, attempt, time.time(), "failed", ErrorKind.TIMEOUT, "slow"),
            TaskUpdated(task.id, TaskState.QUEUED, attempt, 0.0, ErrorKind.TIMEOUT, "slow"),
        ]
    )


def complete(
    env: Env,
    task: TaskRecord,
    stage: Stage,
    *,
    attempt: int = 1,
    data: bytes | None = None,
    started: bool = True,
) -> dict[str, Any]:
    """Run the completion sequence for ``task`` up to and including ``stage``; return the
    manifest row it wrote (or would have written)."""
    data = png(task.id) if data is None else data
    info = inspect_image(data)
    if started:
        start_attempt(env, task, attempt)
    relative = PurePosixPath(task.planned_path).with_suffix(info.extension)
    written = write_image_atomically(env.out_dir, relative, data, fsync=False)
    finished = time.time()
    row = manifest_row(
        env.job,
        task,
        attempt,
        written,
        info,
        worker_id="w1",
        account_id="acc1",
        finished_at=finished,
        conversation_url=f"https://chat/{task.id}",
        image_id=None,
    )
    if stage == "renamed":
        return row
    writer = ManifestWriter(env.manifest)
    try:
        size = writer.append([row])
    finally:
        writer.close()
    if stage == "manifested":
        return row
    env.store.apply(
        [
            AttemptEnded(
                task.id, attempt, finished, "done", conversation_url=row["conversation_url"]
            ),
            TaskCompleted(
                task.id,
                attempt,
                written.relative,
                written.sha256,
                written.size,
                finished,
                "w1",
                row,
            ),
        ],
        manifest_offset=(env.job.id, size),
    )
    return row


def manifest_rows(env: Env) -> list[dict[str, Any]]:
    return [r.data for r in read_manifest(env.manifest)]


def temp_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*.tmp"))


def attempt_outcomes(env: Env, task_id: int) -> list[tuple[int, str | None]]:
    return [(a.attempt, a.outcome) for a in env.store.load_attempts(task_id)]


def assert_consistent(env: Env, *, stale_rows_for: Iterable[int] = ()) -> None:
    """After reconciliation: every done task has exactly one manifest row, the row and the
    database agree, the file on disk is that image; not-done tasks have no output; the
    committed manifest offset is the whole manifest; no temp files."""
    job = env.current_job()
    tasks = env.store.load_tasks(job.id)
    done = {t.id: t for t in tasks if t.state is TaskState.DONE}
    raw = env.manifest.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "manifest left with a torn tail"
    rows = manifest_rows(env)
    assert len(rows) == raw.count(b"\n"), "manifest holds unreadable lines"
    per_task = Counter(r["task"] for r in rows)
    for task_id, task in done.items():
        assert per_task[task_id] == 1, f"task {task_id} has {per_task[task_id]} manifest rows"
        (row,) = [r for r in rows if r["task"] == task_id]
        assert (row["file"], row["sha256"], row["size"]) == (
            task.output_path,
            task.sha256,
            task.size,
        )
        path = env.out_dir / str(task.output_path)
        assert sha256_file(path) == task.sha256
        assert path.stat().st_size == task.size
        inspect_image(path.read_bytes())
    stray = set(per_task) - set(done)
    assert stray <= set(stale_rows_for), f"manifest rows for tasks not done: {sorted(stray)}"
    for task in tasks:
        if task.state is not TaskState.DONE:
            assert task.output_path is None and task.sha256 is None
            assert task.state is not TaskState.LEASED
    assert job.manifest_offset == len(raw)
    assert temp_files(env.out_dir) == []
    done_attempts = env.store.execute(
        "SELECT a.task_id, COUNT(*) FROM attempts a JOIN tasks t ON t.id = a.task_id "
        "WHERE t.job_id = ? AND a.outcome = 'done' GROUP BY a.task_id",
        (job.id,),
    ).fetchall()
    assert all(count == 1 for _task, count in done_attempts)
    assert {task_id for task_id, _ in done_attempts} <= set(done)


# --- sanity of the set-up --------------------------------------------------------------------


def test_job_plans_unique_paths_and_a_first_snapshot(env: Env) -> None:
    planned = [t.planned_path for t in env.tasks]
    assert len(planned) == 5
    assert len({p.lower() for p in planned}) == 5
    assert [seq for seq, _ in list_snapshots(env.paths.snapshots_dir(env.job.id))] == [0]
    complete(env, env.tasks[0], "committed")
    report = reconcile_job(env.store, env.current_job())
    assert not report.changed
    assert report.describe() == "nothing to repair"
    assert_consistent(env)


# --- (a) renamed, nothing else ----------------------------------------------------------------


def test_image_on_disk_without_manifest_row_is_adopted(env: Env) -> None:
    committed, crashed = env.tasks[0], env.tasks[1]
    complete(env, committed, "committed")
    complete(env, crashed, "renamed")
    before_rows = manifest_rows(env)
    path = env.out_dir / crashed.planned_path
    expected_sha = sha256_file(path)

    report = reconcile_job(env.store, env.current_job())

    assert (report.from_disk, report.from_manifest, report.leases_requeued) == (1, 0, 1)
    task = env.task(crashed.id)
    assert task.state is TaskState.DONE
    assert task.output_path == crashed.planned_path
    assert task.sha256 == expected_sha
    assert task.size == path.stat().st_size
    rows = manifest_rows(env)
    assert rows[: len(before_rows)] == before_rows
    (added,) = rows[len(before_rows) :]
    assert added["task"] == crashed.id
    assert added["recovered"] == "adopted-from-disk"
    assert added["sha256"] == expected_sha
    assert added["file"] == crashed.planned_path
    assert added["format"] == "png"
    assert {t.id: t.state for t in report.tasks}[crashed.id] is TaskState.DONE
    assert "adopted from disk" in report.describe()
    assert_consistent(env)


def test_image_on_disk_without_any_attempt_record_is_adopted(env: Env) -> None:
    task = env.tasks[2]
    complete(env, task, "renamed", started=False)
    report = reconcile_job(env.store, env.current_job())
    assert report.from_disk == 1
    adopted = env.task(task.id)
    assert adopted.state is TaskState.DONE
    assert adopted.done_attempt == 1
    assert_consistent(env)


# --- (b) renamed + manifest row, no commit ----------------------------------------------------


def test_manifest_row_past_the_committed_offset_is_adopted(env: Env) -> None:
    committed, crashed = env.tasks[0], env.tasks[1]
    complete(env, committed, "committed")
    offset_before = env.current_job().manifest_offset
    start_attempt(env, crashed, 1)
    fail_attempt(env, crashed, 1)
    row = complete(env, crashed, "manifested", attempt=2)
    manifest_before = env.manifest.read_bytes()
    assert offset_before < len(manifest_before)

    report = reconcile_job(env.store, env.current_job())

    assert (report.from_manifest, report.from_disk) == (1, 0)
    assert env.manifest.read_bytes() == manifest_before  # no second row for the same image
    task = env.task(crashed.id)
    assert task.state is TaskState.DONE
    assert (task.output_path, task.sha256, task.size) == (row["file"], row["sha256"], row["size"])
    assert task.done_attempt == 2
    assert attempt_outcomes(env, crashed.id) == [(1, "failed"), (2, "done")]
    assert env.store.load_attempts(crashed.id)[1].conversation_url == row["conversation_url"]
    assert "recovered from the manifest" in report.describe()
    assert_consistent(env)


def test_two_manifest_rows_past_the_offset_for_one_task_adopt_it_once(env: Env) -> None:
    task = env.tasks[0]
    row = complete(env, task, "manifested")
    writer = ManifestWriter(env.manifest)
    try:
        writer.append([row])  # the same row again (e.g. a retried append)
    finally:
        writer.close()
    report = reconcile_job(env.store, env.current_job())
    assert report.from_manifest == 1
    assert env.task(task.id).state is TaskState.DONE
    assert Counter(r["task"] for r in manifest_rows(env))[task.id] == 2


# --- (c) manifest row without its file --------------------------------------------------------


def test_manifest_row_whose_file_is_missing_is_not_adopted(env: Env) -> None:
    committed, lost = env.tasks[0], env.tasks[1]
    complete(env, committed, "committed")
    complete(env, lost, "manifested")
    (env.out_dir / lost.planned_path).unlink()

    report = reconcile_job(env.store, env.current_job())

    assert (report.from_manifest, report.from_disk) == (0, 0)
    assert env.task(lost.id).state is TaskState.QUEUED
    assert any(f"task {lost.id}" in note for note in report.notes)
    assert f"task {lost.id}" in report.describe()
    assert_consistent(env, stale_rows_for=[lost.id])


def test_manifest_row_whose_sha_differs_is_not_adopted(env: Env) -> None:
    damaged = env.tasks[1]
    complete(env, damaged, "manifested")
    path = env.out_dir / damaged.planned_path
    path.write_bytes(corrupt_image(path.read_bytes(), "zero_tail"))  # bit rot after the crash

    report = reconcile_job(env.store, env.current_job())

    assert (report.from_manifest, report.from_disk) == (0, 0)
    assert env.task(damaged.id).state is TaskState.QUEUED
    assert any(f"task {damaged.id}" in note for note in report.notes)
    assert any(damaged.planned_path in note for note in report.notes)
    assert_consistent(env, stale_rows_for=[damaged.id])


def test_manifest_row_with_a_different_valid_image_on_disk(env: Env) -> None:
    """The row's hash does not match, but a valid image sits at the planned path: it is
    adopted from disk (as an image renamed into place would be), and the database follows
    the file actually on disk, never the stale row."""
    task = env.tasks[1]
    stale = complete(env, task, "manifested")
    path = env.out_dir / task.planned_path
    path.write_bytes(png(999))
    report = reconcile_job(env.store, env.current_job())
    assert report.from_manifest == 0
    done = env.task(task.id)
    assert done.state is TaskState.DONE
    assert done.sha256 == sha256_file(path) != stale["sha256"]
    last_row = [r for r in manifest_rows(env) if r["task"] == task.id][-1]
    assert last_row["sha256"] == done.sha256


@pytest.mark.parametrize(
    "bad_row",
    [
        {"task": "1", "file": "x.png"},
        {"task": None},
        {"task": 10**9, "file": "x.png", "sha256": "0" * 64},
        {"file": "x.png"},
        {"task": "TASK", "file": 3},
    ],
)
def test_odd_manifest_rows_past_the_offset_are_ignored(env: Env, bad_row: dict[str, Any]) -> None:
    complete(env, env.tasks[0], "committed")
    with env.manifest.open("ab") as handle:
        handle.write((json.dumps(bad_row) + "\n").encode())
    report = reconcile_job(env.store, env.current_job())
    assert report.from_manifest == 0
    assert [t.state for t in env.store.load_tasks(env.job.id)].count(TaskState.DONE) == 1


def test_manifest_row_pointing_at_a_file_with_no_hash_is_not_trusted_blindly(env: Env) -> None:
    task = env.tasks[0]
    row = complete(env, task, "manifested")
    # Rewrite the manifest with the same row minus its hash.
    row = {k: v for k, v in row.items() if k != "sha256"}
    env.manifest.write_bytes((json.dumps(row) + "\n").encode())
    report = reconcile_job(env.store, env.current_job())
    done = env.task(task.id)
    assert done.state is TaskState.DONE
    # Whatever path it took, the database must carry the real hash and size of the file.
    assert done.sha256 == sha256_file(env.out_dir / task.planned_path)
    assert done.size == (env.out_dir / task.planned_path).stat().st_size
    assert report.from_manifest + report.from_disk == 1


# --- (d) torn manifest tail -------------------------------------------------------------------


def test_torn_manifest_tail_is_cut(env: Env) -> None:
    committed, torn = env.tasks[0], env.tasks[1]
    complete(env, committed, "committed")
    clean = env.manifest.read_bytes()
    partial = json.dumps({"task": torn.id, "file": torn.planned_path}).encode()[:-7]
    with env.manifest.open("ab") as handle:
        handle.write(partial)

    report = reconcile_job(env.store, env.current_job())

    assert report.torn_bytes == len(partial)
    assert env.manifest.read_bytes() == clean
    assert env.task(torn.id).state is TaskState.QUEUED
    assert "torn manifest line" in report.describe()
    assert_consistent(env)


def test_torn_tail_of_a_renamed_image_is_cut_and_the_image_adopted(env: Env) -> None:
    committed, crashed = env.tasks[0], env.tasks[1]
    complete(env, committed, "committed")
    row = complete(env, crashed, "renamed")
    line = (json.dumps(row) + "\n").encode()
    with env.manifest.open("ab") as handle:
        handle.write(line[: len(line) // 2])  # the crash hit mid-append

    report = reconcile_job(env.store, env.current_job())

    assert report.torn_bytes == len(line) // 2
    assert (report.from_manifest, report.from_disk) == (0, 1)
    assert env.task(crashed.id).state is TaskState.DONE
    assert_consistent(env)


# --- (e) temp files ---------------------------------------------------------------------------


def test_temp_files_are_removed(env: Env) -> None:
    complete(env, env.tasks[0], "committed")
    chapter = env.out_dir / "1"
    ours = [
        chapter / ".001-02.png.0123456789abcdef.tmp",
        env.out_dir / "2" / "nested" / ".003-01-v1.png.fedcba9876543210.tmp",
    ]
    for path in ours:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(1)[:100])
    theirs = [chapter / ".notes.tmp", chapter / "draft.tmp"]
    for path in theirs:
        path.write_text("the author's own file")

    report = reconcile_job(env.store, env.current_job())

    assert report.temp_files_removed == 2
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs)
    assert (report.from_disk, report.from_manifest) == (0, 0)
    assert "temp file" in report.describe()
    for path in theirs:
        path.unlink()
    assert_consistent(env)


# --- (f) leased task --------------------------------------------------------------------------


def test_leased_task_is_requeued_and_its_attempt_interrupted(env: Env) -> None:
    leased = env.tasks[3]
    start_attempt(env, leased, 1)
    assert env.task(leased.id).state is TaskState.LEASED

    report = reconcile_job(env.store, env.current_job())

    assert report.leases_requeued == 1
    task = env.task(leased.id)
    assert task.state is TaskState.QUEUED
    assert task.failures == 0  # the program stopped; the prompt did nothing wrong
    (attempt,) = env.store.load_attempts(leased.id)
    assert attempt.outcome == "interrupted"
    assert attempt.ended_at is not None
    assert manifest_rows(env) == []
    assert "interrupted task" in report.describe()
    assert_consistent(env)


# --- (g) a damaged file at a planned path -----------------------------------------------------


@pytest.mark.parametrize("how", ["truncate", "zero_tail", "flip_crc", "html", "json", "empty"])
def test_corrupt_file_at_planned_path_is_not_adopted(env: Env, how: str) -> None:
    task = env.tasks[0]
    start_attempt(env, task, 1)
    path = env.out_dir / task.planned_path
    path.parent.mkdir(parents=True, exist_ok=True)
    broken = corrupt_image(png(task.id), how)
    path.write_bytes(broken)

    report = reconcile_job(env.store, env.current_job())

    assert report.from_disk == 0
    assert env.task(task.id).state is TaskState.QUEUED
    assert any(task.planned_path in note for note in report.notes)
    assert path.read_bytes() == broken  # evidence is left alone; the engine replaces it
    assert manifest_rows(env) == []
    assert_consistent(env)


# --- (h) a JPEG result --------------------------------------------------------------------------


def test_jpeg_at_planned_path_with_jpg_extension_is_adopted(env: Env) -> None:
    task = env.tasks[4]
    jpeg = render_panel_jpeg("a jpeg panel", width=64, height=64, seed=3)
    complete(env, task, "renamed", data=jpeg)
    expected = PurePosixPath(task.planned_path).with_suffix(".jpg").as_posix()
    assert (env.out_dir / expected).is_file()

    report = reconcile_job(env.store, env.current_job())

    assert report.from_disk == 1
    done = env.task(task.id)
    assert done.state is TaskState.DONE
    assert done.output_path == expected
    (row,) = manifest_rows(env)
    assert (row["file"], row["format"]) == (expected, "jpeg")
    assert_consistent(env)


def test_jpeg_in_the_manifest_past_the_offset_is_adopted(env: Env) -> None:
    task = env.tasks[4]
    jpeg = render_panel_jpeg("a jpeg panel", width=64, height=64, seed=4)
    complete(env, task, "manifested", data=jpeg)
    report = reconcile_job(env.store, env.current_job())
    assert (report.from_manifest, report.from_disk) == (1, 0)
    assert str(env.task(task.id).output_path).endswith(".jpg")
    assert_consistent(env)


# --- every crash point at once, idempotence, a crash inside reconcile ------------------------


def _every_crash_point(env: Env) -> dict[str, TaskRecord]:
    committed, manifested, renamed, leased, untouched = env.tasks
    complete(env, committed, "committed")
    complete(env, manifested, "manifested")
    complete(env, renamed, "renamed")
    start_attempt(env, leased, 1)
    with env.manifest.open("ab") as handle:
        handle.write(b'{"task":')
    (env.out_dir / "1" / ".001-03.png.00112233445566aa.tmp").write_bytes(b"partial")
    return {
        "committed": committed,
        "manifested": manifested,
        "renamed": renamed,
        "leased": leased,
        "untouched": untouched,
    }


def test_every_crash_point_in_one_job(env: Env) -> None:
    tasks = _every_crash_point(env)
    report = reconcile_job(env.store, env.current_job())
    assert report.torn_bytes == len(b'{"task":')
    assert report.temp_files_removed == 1
    assert report.leases_requeued == 3  # leased, and the two crashed mid-completion
    assert (report.from_manifest, report.from_disk) == (1, 1)
    states = {name: env.task(t.id).state for name, t in tasks.items()}
    assert states == {
        "committed": TaskState.DONE,
        "manifested": TaskState.DONE,
        "renamed": TaskState.DONE,
        "leased": TaskState.QUEUED,
        "untouched": TaskState.QUEUED,
    }
    events = env.store.events(env.job.id)
    assert [e["kind"] for e in events] == ["recovered"]
    assert events[0]["message"] == report.describe()
    assert_consistent(env)


def test_reconcile_is_idempotent(env: Env) -> None:
    _every_crash_point(env)
    reconcile_job(env.store, env.current_job())
    manifest_after_first = env.manifest.read_bytes()
    tasks_after_first = env.store.load_tasks(env.job.id)

    again = reconcile_job(env.store, env.current_job())

    assert not again.changed
    assert again.notes == []
    assert env.manifest.read_bytes() == manifest_after_first
    assert env.store.load_tasks(env.job.id) == tasks_after_first
    assert_consistent(env)


def test_a_crash_inside_reconcile_before_its_commit(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reconcile appends the adopted rows to the manifest before committing; if it dies in
    between, the next reconcile must find those rows and not append them a second time."""
    tasks = _every_crash_point(env)
    real_apply = Store.apply

    def dying_apply(self: Store, ops: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error (simulated crash)")

    monkeypatch.setattr(Store, "apply", dying_apply)
    with pytest.raises(sqlite3.OperationalError):
        reconcile_job(env.store, env.current_job())
    monkeypatch.setattr(Store, "apply", real_apply)

    report = reconcile_job(env.store, env.current_job())

    assert report.from_manifest == 2  # the crashed row and the one reconcile itself wrote
    assert report.from_disk == 0
    assert env.task(tasks["renamed"].id).state is TaskState.DONE
    assert_consistent(env)


# --- open_store: quarantine and rebuild ------------------------------------------------------


def _damage_database(paths: DataPaths, *, wal_and_shm: bool = True) -> dict[str, bytes]:
    """Overwrite the (closed) database with junk; optionally leave -wal/-shm beside it."""
    files = {"": os.urandom(64 * 1024)}
    if wal_and_shm:
        files["-wal"] = b"wal junk " * 100
        files["-shm"] = b"shm junk " * 100
    for suffix, data in files.items():
        Path(str(paths.database) + suffix).write_bytes(data)
    return files


def _task_states(store: Store, job_id: str) -> dict[int, TaskState]:
    return {t.id: t.state for t in store.load_tasks(job_id)}


def test_open_store_on_a_healthy_database_changes_nothing(env: Env) -> None:
    env.store.close()
    store, report = open_store(env.paths)
    try:
        assert report is None
        assert [j.id for j in store.list_jobs()] == [env.job.id]
        assert not env.paths.quarantine_dir.exists() or not any(env.paths.quarantine_dir.iterdir())
    finally:
        store.close()


def test_damaged_database_is_quarantined_and_jobs_rebuilt(paths: DataPaths, tmp_path: Path) -> None:
    store = Store(paths.database)
    first = new_env(store, paths, "First Job", tmp_path / "out")
    second = new_env(store, paths, "Second Job", tmp_path / "out")
    complete(first, first.tasks[0], "committed")
    write_snapshot(store, first.job.id, paths.snapshots_dir(first.job.id), 1)
    expected_first = store.load_tasks(first.job.id)
    expected_second = store.load_tasks(second.job.id)
    store.close()
    junk = _damage_database(paths, wal_and_shm=False)

    rebuilt_store, report = open_store(paths)
    try:
        assert report is not None
        assert report.quarantined is not None
        assert report.quarantined.parent == paths.quarantine_dir
        assert report.quarantined.read_bytes() == junk[""]
        assert "damaged" in str(report.reason)
        assert str(report.quarantined) in report.describe()
        assert sorted(report.rebuilt) == sorted([first.job.id, second.job.id])
        assert report.lost == []
        assert "rebuilt 2 job(s)" in report.describe()
        assert rebuilt_store.load_tasks(first.job.id) == expected_first
        assert rebuilt_store.load_tasks(second.job.id) == expected_second
        assert rebuilt_store.find_job(first.job.id).manifest_offset == 0  # re-read it all
        assert [e["kind"] for e in rebuilt_store.events(first.job.id)] == ["rebuilt"]
        # Reconciling the rebuilt job agrees with the manifest and adds nothing.
        job = rebuilt_store.find_job(first.job.id)
        result = reconcile_job(rebuilt_store, job)
        assert (result.from_manifest, result.from_disk) == (0, 0)
        assert_consistent(Env(paths, rebuilt_store, job, expected_first))
    finally:
        rebuilt_store.close()
    rebuilt_store2, again = open_store(paths)
    rebuilt_store2.close()
    assert again is None  # the rebuilt database is healthy and complete


def test_quarantine_keeps_the_wal_and_shm_of_a_crashed_database(env: Env) -> None:
    """A crash leaves committed transactions in -wal (not yet checkpointed). When the main
    file is then found damaged, the quarantine must receive all three files as they were:
    the WAL holds the newest commits, and is evidence like the rest."""
    env.store.checkpoint()
    for task in env.tasks[:3]:
        complete(env, task, "committed")  # these commits live only in the WAL for now
    crashed = {
        suffix: Path(str(env.paths.database) + suffix).read_bytes()
        for suffix in ("", "-wal", "-shm")
    }
    assert len(crashed["-wal"]) > 0
    env.store.close()  # (a clean close would checkpoint: put the crash-time files back)
    damaged_main = os.urandom(len(crashed[""]))
    for suffix, data in {**crashed, "": damaged_main}.items():
        Path(str(env.paths.database) + suffix).write_bytes(data)

    store, report = open_store(env.paths)
    store.close()

    assert report is not None and report.quarantined is not None
    assert report.rebuilt == [env.job.id]
    wal = Path(str(report.quarantined) + "-wal")
    assert wal.is_file(), "the WAL was not quarantined"
    assert wal.read_bytes() == crashed["-wal"]
    assert Path(str(report.quarantined) + "-shm").is_file()
    # ... and the damaged main file is kept as found, not written to (e.g. by a checkpoint).
    assert report.quarantined.read_bytes() == damaged_main


def test_deleted_database_is_rebuilt_from_snapshots(env: Env) -> None:
    complete(env, env.tasks[0], "committed")
    write_snapshot(env.store, env.job.id, env.paths.snapshots_dir(env.job.id), 1)
    expected = env.store.load_tasks(env.job.id)
    env.store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(env.paths.database) + suffix).unlink(missing_ok=True)

    store, report = open_store(env.paths)
    try:
        assert report is not None
        assert report.quarantined is None
        assert report.rebuilt == [env.job.id]
        assert store.load_tasks(env.job.id) == expected
        assert store.find_job(env.job.id).name == env.job.name
        # The attempts went with the database, but the finished image's attempt is recorded
        # again from the snapshot: every done task has its done attempt.
        done = expected[0]
        assert done.state is TaskState.DONE
        assert [(a.attempt, a.outcome, a.ended_at) for a in store.load_attempts(done.id)] == [
            (done.done_attempt, "done", done.finished_at)
        ]
        assert all(store.load_attempts(t.id) == [] for t in expected[1:])
    finally:
        store.close()


def test_leased_tasks_in_a_snapshot_come_back_queued(env: Env) -> None:
    start_attempt(env, env.tasks[1], 1)
    write_snapshot(env.store, env.job.id, env.paths.snapshots_dir(env.job.id), 1)
    env.store.close()
    env.paths.database.unlink()
    store, report = open_store(env.paths)
    try:
        assert report is not None and report.rebuilt == [env.job.id]
        assert _task_states(store, env.job.id)[env.tasks[1].id] is TaskState.QUEUED
    finally:
        store.close()


def test_job_with_only_damaged_snapshots_is_lost_others_rebuilt(
    paths: DataPaths, tmp_path: Path
) -> None:
    store = Store(paths.database)
    good = new_env(store, paths, "Good Job", tmp_path / "out")
    bad = new_env(store, paths, "Bad Job", tmp_path / "out")
    write_snapshot(store, bad.job.id, paths.snapshots_dir(bad.job.id), 1)
    store.close()
    for _seq, path in list_snapshots(paths.snapshots_dir(bad.job.id)):
        path.write_bytes(path.read_bytes()[:40])  # truncated: plain and gz alike
    _damage_database(paths, wal_and_shm=False)

    rebuilt, report = open_store(paths)
    try:
        assert report is not None
        assert report.rebuilt == [good.job.id]
        assert len(report.lost) == 1
        assert bad.job.id in report.lost[0]
        assert "could not rebuild" in report.describe()
        assert [j.id for j in rebuilt.list_jobs()] == [good.job.id]
    finally:
        rebuilt.close()


def test_job_whose_compressed_snapshot_has_a_corrupt_stream_is_lost_not_fatal(
    paths: DataPaths, tmp_path: Path
) -> None:
    """Same as above, but the older snapshot's damage is inside the deflate stream, which
    gzip reports as zlib.error: open_store must still list the job as lost and go on."""
    store = Store(paths.database)
    good = new_env(store, paths, "Good Job", tmp_path / "out")
    bad = new_env(store, paths, "Bad Job", tmp_path / "out")
    write_snapshot(store, bad.job.id, paths.snapshots_dir(bad.job.id), 1)
    store.close()
    snapshots = dict(list_snapshots(paths.snapshots_dir(bad.job.id)))
    snapshots[1].write_bytes(b"{ truncated")
    gz = snapshots[0]
    assert gz.name.endswith(".json.gz")
    # gzip header, then a deflate block of the reserved type 11: "invalid block type".
    gz.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x07" + bytes(32))
    _damage_database(paths, wal_and_shm=False)

    rebuilt, report = open_store(paths)
    try:
        assert report is not None
        assert report.rebuilt == [good.job.id]
        assert len(report.lost) == 1 and bad.job.id in report.lost[0]
    finally:
        rebuilt.close()


def test_rebuild_from_an_older_snapshot_then_reconcile_from_the_manifest(env: Env) -> None:
    t1, t2, t3, t4, t5 = env.tasks
    folder = env.paths.snapshots_dir(env.job.id)
    complete(env, t1, "committed")
    write_snapshot(env.store, env.job.id, folder, 1)
    complete(env, t2, "committed")
    complete(env, t3, "committed")
    write_snapshot(env.store, env.job.id, folder, 2)
    complete(env, t4, "committed")  # finished after the newest snapshot
    expected = {t.id: (t.output_path, t.sha256) for t in env.store.load_tasks(env.job.id)}
    env.store.close()
    manifest_before = env.manifest.read_bytes()
    newest = folder / "snapshot-000002.json"
    newest.write_bytes(newest.read_bytes()[:200])
    assert (folder / "snapshot-000001.json.gz").is_file()
    _damage_database(env.paths)

    store, report = open_store(env.paths)
    try:
        assert report is not None and report.rebuilt == [env.job.id]
        assert _task_states(store, env.job.id) == {
            t1.id: TaskState.DONE,
            t2.id: TaskState.QUEUED,
            t3.id: TaskState.QUEUED,
            t4.id: TaskState.QUEUED,
            t5.id: TaskState.QUEUED,
        }
        (event,) = store.events(env.job.id)
        assert "snapshot-000001.json.gz" in event["message"]

        rebuilt_env = Env(env.paths, store, store.find_job(env.job.id), env.tasks)
        result = reconcile_job(store, rebuilt_env.job)

        assert (result.from_manifest, result.from_disk) == (3, 0)
        assert env.manifest.read_bytes() == manifest_before
        after = {t.id: (t.output_path, t.sha256) for t in store.load_tasks(env.job.id)}
        assert after == expected
        assert _task_states(store, env.job.id)[t5.id] is TaskState.QUEUED
        assert_consistent(rebuilt_env)
    finally:
        store.close()


def test_newer_database_is_refused_not_quarantined(env: Env) -> None:
    env.store.close()
    conn = sqlite3.connect(env.paths.database, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(env.paths)
    assert env.paths.database.is_file()
    assert not env.paths.quarantine_dir.exists() or not any(env.paths.quarantine_dir.iterdir())


def test_locked_database_is_not_quarantined(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.store.close()
    holder = sqlite3.connect(env.paths.database, isolation_level=None)
    real_connect = sqlite3.connect

    def impatient_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs["timeout"] = 0.05
        return real_connect(*args, **kwargs)

    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO accounts (id) VALUES ('other-novelgen')")
        monkeypatch.setattr(sqlite3, "connect", impatient_connect)
        with pytest.raises(StoreError, match="locked"):
            open_store(env.paths)
    finally:
        monkeypatch.setattr(sqlite3, "connect", real_connect)
        holder.execute("ROLLBACK")
        holder.close()
    assert not env.paths.quarantine_dir.exists() or not any(env.paths.quarantine_dir.iterdir())
    store, report = open_store(env.paths)
    try:
        assert report is None
        assert store.find_job(env.job.id).id == env.job.id
    finally:
        store.close()


def test_two_quarantines_in_the_same_second_keep_both_files(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quarantined databases are evidence and are "never deleted"; a second damaged database
    quarantined within the same second must not replace the first."""
    real_strftime = time.strftime

    def frozen_strftime(fmt: str, *args: Any) -> str:
        if fmt == "%Y%m%d-%H%M%S" and not args:
            return "20261123-120000"
        return real_strftime(fmt, *args)

    monkeypatch.setattr(recovery.time, "strftime", frozen_strftime)
    env.store.close()
    first_junk = b"first damaged database " * 500
    env.paths.database.write_bytes(first_junk)
    store, first = open_store(env.paths)
    store.close()
    second_junk = b"second damaged database " * 500
    env.paths.database.write_bytes(second_junk)
    store, second = open_store(env.paths)
    store.close()

    assert first is not None and second is not None
    kept = sorted(
        p.read_bytes() for p in env.paths.quarantine_dir.iterdir() if p.name.endswith(".sqlite")
    )
    assert kept == sorted([first_junk, second_junk])
