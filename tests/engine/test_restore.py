"""``engine.restore``: a job rebuilt from a chosen snapshot + manifest + files, through the
module API. Jobs are real (run with simulated workers), then damaged the way a disk, a crash
or a person damages them: the database deleted, a snapshot truncated, an image deleted or
altered, a file dropped into the job's folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from novelgen_desktop.engine.joblock import JobBusyError
from novelgen_desktop.engine.replaced import REPLACED_DIR
from novelgen_desktop.engine.restore import (
    RestoreRefusedError,
    apply_restore,
    job_lock,
    plan_restore,
    recover_job,
)
from novelgen_desktop.engine.verify import FindingKind
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.manifest import MANIFEST_NAME
from novelgen_desktop.store.records import TaskRecord
from novelgen_desktop.store.snapshot import list_snapshots
from tests.integration.helpers import job_ids

SIM = ["--simulate", "--sim-latency", "0", "--sim-image-size", "32", "--no-progress"]
TASKS = 8


@pytest.fixture
def finished(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[DataPaths, str]:
    """A finished 8-panel job with snapshots 0 (at creation), 1, 2 … (every 3 images)."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a lighthouse, view {i}\n" for i in range(TASKS)))
    run = ["run", str(prompts), "--out", str(tmp_path / "out"), "--snapshot-every", "3"]
    assert main([*run, *SIM]) == 0
    capsys.readouterr()
    paths = resolve_data_dir(os.environ["NOVELGEN_DATA_DIR"])
    return paths, job_ids(paths.root)[-1]


def stored(paths: DataPaths, job_id: str) -> tuple[Path, list[TaskRecord]]:
    with Store(paths.database, check=False) as store:
        return Path(store.find_job(job_id).out_dir), store.load_tasks(job_id)


def delete_database(paths: DataPaths) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(paths.database) + suffix).unlink(missing_ok=True)


def truncate_newest_snapshot(paths: DataPaths, job_id: str) -> tuple[int, Path]:
    seq, path = list_snapshots(paths.snapshots_dir(job_id))[0]
    path.write_bytes(path.read_bytes()[:40])
    return seq, path


def test_deleted_database_truncated_snapshot_missing_image_and_stray_file(
    finished: tuple[DataPaths, str], capsys: pytest.CaptureFixture[str]
) -> None:
    paths, job_id = finished
    out, tasks = stored(paths, job_id)
    missing = tasks[2]
    assert missing.output_path is not None
    (out / missing.output_path).unlink()
    (out / "cover-notes.txt").write_text("the author's own file")
    delete_database(paths)
    bad_seq, bad_path = truncate_newest_snapshot(paths, job_id)

    plan = plan_restore(paths, job_id)
    assert not paths.database.exists(), "a plan reads only: no database is created"
    assert plan.snapshot_seq < bad_seq  # the newest readable one, not the truncated one
    assert [(s.seq, s.path) for s in plan.unreadable] == [(bad_seq, str(bad_path))]
    assert "cannot be read" in str(plan.unreadable[0].reason)
    assert plan.database == "missing" and plan.current_counts is None
    assert [(c.task_id, c.path) for c in plan.missing] == [(missing.id, missing.output_path)]
    assert plan.stray == ["cover-notes.txt"]
    assert plan.counts["done"] == TASKS - 1 and plan.counts["queued"] == 1

    result = apply_restore(paths, plan)
    assert result.backup is None  # there was no database file
    assert result.ok, result.remaining
    assert result.verify is not None
    assert [(f.kind, f.path) for f in result.verify.findings] == [
        (FindingKind.STRAY_FILE, "cover-notes.txt")
    ]
    _out, after = stored(paths, job_id)
    by_id = {t.id: t for t in after}
    assert by_id[missing.id].state.value == "queued" and by_id[missing.id].output_path is None
    assert sum(t.state.value == "done" for t in after) == TASKS - 1

    # verify keeps naming the stray file (recover leaves the author's files alone) …
    assert main(["verify", job_id]) == 1
    text = capsys.readouterr().out
    assert "stray_file: cover-notes.txt" in text and "1 problem(s)" in text
    # … and resume draws the missing panel again: nothing lost, nothing twice.
    assert main(["resume", job_id, *SIM]) == 0
    capsys.readouterr()
    _out, final = stored(paths, job_id)
    assert {t.state.value for t in final} == {"done"}
    redrawn = {t.id: t for t in final}[missing.id]
    assert redrawn.done_attempt == (missing.done_attempt or 1) + 1
    assert (out / "cover-notes.txt").read_text() == "the author's own file"


def test_a_changed_image_is_set_aside_and_drawn_again_and_the_database_backed_up(
    finished: tuple[DataPaths, str],
) -> None:
    paths, job_id = finished
    out, tasks = stored(paths, job_id)
    changed = tasks[0]
    assert changed.output_path is not None
    path = out / changed.output_path
    altered = path.read_bytes()[:-3]
    path.write_bytes(altered)
    (out / ".00004.png.0123456789abcdef.tmp").write_bytes(b"half")

    plan = plan_restore(paths, job_id)
    assert plan.database == "ok" and plan.current_counts is not None
    assert plan.current_counts["done"] == TASKS
    assert [c.task_id for c in plan.changed] == [changed.id]
    assert plan.temp == [".00004.png.0123456789abcdef.tmp"] and plan.stray == []
    result = apply_restore(paths, plan)
    assert result.ok and result.verify is not None and result.verify.ok
    assert result.backup is not None and result.backup.exists()
    with Store(result.backup, check=True) as backup:  # the old rows, intact
        assert sum(t.state.value == "done" for t in backup.load_tasks(job_id)) == TASKS
    [kept] = result.set_aside
    assert kept.startswith(f"{REPLACED_DIR}/") and (out / kept).read_bytes() == altered
    assert not path.exists() and result.temp_removed == 1
    rows = [json.loads(r) for r in (out / MANIFEST_NAME).read_text().splitlines()]
    assert rows[-1]["replaced_task"] == changed.id and rows[-1]["moved_to"] == kept
    # attempts agree: the old done attempt is 'replaced', the redraw gets the next number
    assert main(["resume", job_id, *SIM]) == 0
    _out, final = stored(paths, job_id)
    assert {t.state.value for t in final} == {"done"}
    with Store(paths.database, check=False) as store:
        outcomes = [a.outcome for a in store.load_attempts(changed.id)]
    assert outcomes.count("done") == 1 and "replaced" in outcomes


def test_a_chosen_older_snapshot_takes_the_rest_from_the_manifest(
    finished: tuple[DataPaths, str],
) -> None:
    paths, job_id = finished
    oldest = min(seq for seq, _ in list_snapshots(paths.snapshots_dir(job_id)))
    plan = plan_restore(paths, job_id, oldest)
    assert plan.snapshot_seq == oldest
    assert plan.counts["done"] == TASKS and not plan.missing and not plan.stray
    assert len(plan.from_manifest) == TASKS - plan.snapshot_counts["done"] > 0
    result = apply_restore(paths, plan)
    assert result.verify is not None and result.verify.ok


def test_refusals_change_nothing(finished: tuple[DataPaths, str]) -> None:
    paths, job_id = finished
    before = paths.database.stat().st_mtime_ns
    available = sorted(seq for seq, _ in list_snapshots(paths.snapshots_dir(job_id)))
    with pytest.raises(RestoreRefusedError, match=r"has no snapshot 99; readable snapshots: "):
        plan_restore(paths, job_id, 99)
    with pytest.raises(RestoreRefusedError) as caught:
        plan_restore(paths, job_id, 99)
    assert ", ".join(map(str, available)) in str(caught.value)
    with job_lock(paths, job_id), pytest.raises(JobBusyError, match="already running"):
        recover_job(paths, job_id, apply=True)
    bad, _path = truncate_newest_snapshot(paths, job_id)
    with pytest.raises(RestoreRefusedError, match=f"snapshot {bad} of job .* cannot be read"):
        plan_restore(paths, job_id, bad)
    for _seq, path in list_snapshots(paths.snapshots_dir(job_id)):
        path.write_bytes(b"{")
    with pytest.raises(RestoreRefusedError, match=r"no snapshot of job .* can be read"):
        plan_restore(paths, job_id)
    assert paths.database.stat().st_mtime_ns == before
