"""``novelgen recover`` through the command line on a damaged data directory: a deleted
database, a truncated snapshot, a missing image and a stray file, each named in the report;
the dry run changes nothing; --apply leaves a job verify agrees with (but for the stray file,
which recover leaves in place and verify keeps naming); resume finishes it."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from novelgen_desktop.engine.restore import job_lock
from novelgen_desktop.paths import resolve_data_dir
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.manifest import MANIFEST_NAME
from novelgen_desktop.store.snapshot import list_snapshots
from tests.integration.helpers import assert_job_complete_and_consistent, job_ids

SIM = ["--simulate", "--sim-latency", "0", "--sim-image-size", "32", "--no-progress"]
TASKS = 6


def tree(root: Path) -> dict[str, int]:
    """Every file and when it last changed; the job's lock file only records who holds it
    (the dry run holds it too, so that the job cannot start under it)."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and p.name != "run.lock"
    }


def damage(tmp_path: Path, *, delete_image: str | None) -> tuple[Path, str, Path]:
    """Run a job to the end, then delete its database, truncate its newest snapshot, drop a
    stray file in its folder and (optionally) delete one image."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a harbour at dusk, view {i}\n" for i in range(TASKS)))
    run = ["run", str(prompts), "--out", str(tmp_path / "out"), "--snapshot-every", "2"]
    assert main([*run, *SIM]) == 0
    data_dir = Path(os.environ["NOVELGEN_DATA_DIR"])
    job_id = job_ids(data_dir)[-1]
    out = tmp_path / "out" / job_id
    if delete_image is not None:
        (out / delete_image).unlink()
    (out / "stray.png").write_bytes(b"not a panel of this job")
    paths = resolve_data_dir(data_dir)
    _seq, newest = list_snapshots(paths.snapshots_dir(job_id))[0]
    newest.write_bytes(newest.read_bytes()[:60])
    for suffix in ("", "-wal", "-shm"):
        Path(str(data_dir / "novelgen.sqlite") + suffix).unlink(missing_ok=True)
    return data_dir, job_id, out


@pytest.fixture
def damaged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str, Path, str]:
    """(data dir, job id, output folder, the missing image) of a finished job after damage."""
    missing = "00003.png"
    data_dir, job_id, out = damage(tmp_path, delete_image=missing)
    capsys.readouterr()
    return data_dir, job_id, out, missing


def test_dry_run_names_every_damage_and_changes_nothing(
    damaged: tuple[Path, str, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, job_id, out, missing = damaged
    before = tree(data_dir), tree(out)
    assert main(["recover", job_id[:12], "--from-snapshot"]) == 0  # a prefix, newest readable
    text = capsys.readouterr().out
    assert f"job {job_id}: restore from snapshot " in text
    assert "unreadable snapshots: 1" in text and "cannot be read" in text
    assert f"missing images (drawn again): 1\n    task 3 (#3) {missing}:" in text
    assert "stray files (left in place): 1\n    stray.png" in text
    assert "the database now:   no database file" in text
    assert "the database after: running, 1 queued, 5 done" in text
    assert "dry run: nothing changed" in text
    assert (tree(data_dir), tree(out)) == before
    assert not (data_dir / "novelgen.sqlite").exists()

    assert main(["recover", job_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["applied"] is False
    plan = report["plan"]
    assert plan["database"]["status"] == "missing"
    assert [m["path"] for m in plan["missing"]] == [missing]
    assert plan["stray"] == ["stray.png"]
    assert [s["readable"] for s in plan["snapshots"]].count(False) == 1
    assert plan["result"]["counts"]["queued"] == 1


def test_refusals_exit_2_with_a_specific_message(
    damaged: tuple[Path, str, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, job_id, _out, _missing = damaged
    assert main(["recover", job_id, "--from-snapshot", "42"]) == 2
    err = capsys.readouterr().err
    assert f"job {job_id} has no snapshot 42; readable snapshots: " in err
    with job_lock(resolve_data_dir(data_dir), job_id):
        assert main(["recover", job_id, "--apply"]) == 2
    assert f"job {job_id} is already running in another NovelGen process" in (
        capsys.readouterr().err
    )
    assert main(["recover", "no-such-job"]) == 2
    assert "no job matches 'no-such-job'" in capsys.readouterr().err
    assert not (data_dir / "novelgen.sqlite").exists()


def test_apply_then_verify_then_resume_finishes_the_job(
    damaged: tuple[Path, str, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, job_id, out, missing = damaged
    assert main(["recover", job_id, "--apply"]) == 0
    text = capsys.readouterr().out
    assert "there was no database file to back up" in text
    assert "restored; novelgen verify agrees (except the 1 stray file(s) named above)" in text
    assert f"continue with: novelgen resume {job_id}" in text

    assert main(["verify", job_id]) == 1  # the stray file only
    text = capsys.readouterr().out
    assert "5 done, 5 file(s) checked" in text
    assert "stray_file: stray.png belongs to no finished task" in text
    assert "1 problem(s)" in text

    assert main(["resume", job_id, *SIM]) == 0
    capsys.readouterr()
    assert (out / missing).exists()  # drawn again
    (out / "stray.png").unlink()  # the author tidies up
    assert main(["verify", job_id]) == 0
    assert_no_task_lost_or_duplicated(data_dir, job_id, out)


def test_recover_after_only_the_database_and_a_snapshot_were_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a missing image nothing is drawn again, so the manifest keeps one row per
    task and the shared end-to-end check applies as it is."""
    data_dir, job_id, out = damage(tmp_path, delete_image=None)
    capsys.readouterr()
    assert main(["recover", job_id, "--apply", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["applied"] is True and report["verify_ok"] is True
    assert report["backup"] is None
    assert report["verify_findings"] == ["stray_file: stray.png belongs to no finished task"]
    (out / "stray.png").unlink()
    assert main(["resume", job_id, *SIM]) == 0
    capsys.readouterr()
    assert_job_complete_and_consistent(data_dir, job_id, TASKS)
    # A second recover on a healthy database backs it up first.
    assert main(["recover", job_id, "--apply"]) == 0
    text = capsys.readouterr().out
    assert "database backed up to " in text and "novelgen verify agrees" in text
    [backup] = (data_dir / "backups").iterdir()
    assert backup.name.endswith(f"-before-recover-{job_id}.sqlite")
    assert f"database backed up to {backup}" in text


def assert_no_task_lost_or_duplicated(data_dir: Path, job_id: str, out: Path) -> None:
    """``assert_job_complete_and_consistent`` for a job in which a panel was drawn again:
    that helper counts manifest rows by their ``task`` key, and a redraw adds the
    ``replaced_task`` row that voids the lost image's row (as "regenerate" does). Here the
    rows are read the way verify and recovery read them: the last word per task wins."""
    rows = [json.loads(r) for r in (out / MANIFEST_NAME).read_text().splitlines()]
    voids = [r for r in rows if "replaced_task" in r]
    last: dict[int, dict[str, object]] = {}
    for row in rows:
        if "task" in row:
            last[row["task"]] = row
        elif "replaced_task" in row:
            last.pop(row["replaced_task"], None)
    with Store(data_dir / "novelgen.sqlite", check=False) as store:
        tasks = store.load_tasks(job_id)
        done_attempts = Counter(
            task
            for task, outcome in store.execute(
                "SELECT a.task_id, a.outcome FROM attempts a JOIN tasks t ON t.id = a.task_id "
                "WHERE t.job_id = ?",
                (job_id,),
            )
            if outcome == "done"
        )
    assert len(tasks) == TASKS and {t.state.value for t in tasks} == {"done"}
    assert set(done_attempts.values()) == {1} and set(done_attempts) == {t.id for t in tasks}
    assert {k: (r["file"], r["sha256"]) for k, r in last.items()} == {
        t.id: (t.output_path, t.sha256) for t in tasks
    }
    assert len(rows) == TASKS + 2 * len(voids)  # each redraw: a void row and a new row
    if not voids:
        assert_job_complete_and_consistent(data_dir, job_id, TASKS)
