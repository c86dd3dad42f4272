"""``novelgen verify``: each way a job's folder can disagree with its records is named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from novelgen_desktop.engine.verify import FindingKind, verify_job
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.manifest import MANIFEST_NAME
from tests.integration.helpers import job_ids

SIM = ["--simulate", "--sim-latency", "0", "--sim-image-size", "32", "--no-progress"]


@pytest.fixture
def finished_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"a lighthouse, view {i}" for i in range(6)) + "\n")
    assert main(["run", str(prompts), "--out", str(tmp_path / "out"), *SIM]) == 0
    capsys.readouterr()
    data_dir = Path(os.environ["NOVELGEN_DATA_DIR"])
    return data_dir, job_ids(data_dir)[-1]


def load(data_dir: Path, job_id: str) -> tuple[object, list[object]]:
    with Store(data_dir / "novelgen.sqlite", check=False) as store:
        job = store.find_job(job_id, exact=True)
        return job, store.load_tasks(job_id)


def test_a_finished_job_verifies_clean(
    finished_job: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _data_dir, job_id = finished_job
    assert main(["verify", job_id]) == 0
    out = capsys.readouterr().out
    assert f"job {job_id}: 6 done, 6 file(s) checked (sizes and SHA-256)" in out
    assert out.rstrip().endswith("all agree")


def test_every_kind_of_damage_is_named(
    finished_job: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, job_id = finished_job
    job, tasks = load(data_dir, job_id)
    out = Path(job.out_dir)  # type: ignore[attr-defined]
    first, second, third, fourth = tasks[:4]  # type: ignore[misc]
    (out / first.output_path).unlink()  # a missing image
    changed = out / second.output_path
    changed.write_bytes(changed.read_bytes()[:-10])  # a truncated image
    same_size = out / third.output_path
    data = bytearray(same_size.read_bytes())
    data[-20] ^= 0xFF
    same_size.write_bytes(bytes(data))  # same size, other bytes
    (out / "stray.png").write_bytes(b"not ours")  # a stray file
    (out / ".panel.png.0123456789abcdef.tmp").write_bytes(b"half")  # an interrupted write
    (out / ".replaced").mkdir()
    (out / ".replaced" / "old.png").write_bytes(b"kept on purpose")  # not a stray
    manifest = out / MANIFEST_NAME
    rows = manifest.read_text().splitlines()
    kept = [r for r in rows if json.loads(r)["task"] != fourth.id]
    kept.append(json.dumps({"task": 999_999, "file": "ghost.png", "sha256": "0" * 64}))
    manifest.write_text("\n".join(kept) + "\n")

    report = verify_job(job, tasks)  # type: ignore[arg-type]
    found = {(f.kind, f.task_id, f.path) for f in report.findings}
    assert found == {
        (FindingKind.MISSING_FILE, first.id, first.output_path),
        (FindingKind.CHANGED_FILE, second.id, second.output_path),
        (FindingKind.CHANGED_FILE, third.id, third.output_path),
        (FindingKind.STRAY_FILE, None, "stray.png"),
        (FindingKind.TEMP_FILE, None, ".panel.png.0123456789abcdef.tmp"),
        (FindingKind.MANIFEST_MISSING_ROW, fourth.id, fourth.output_path),
        (FindingKind.MANIFEST_EXTRA_ROW, 999_999, None),
    }
    sizes_only = verify_job(job, tasks, hashes=False)  # type: ignore[arg-type]
    assert (FindingKind.CHANGED_FILE, third.id, third.output_path) not in {
        (f.kind, f.task_id, f.path) for f in sizes_only.findings
    }

    assert main(["verify", job_id]) == 1
    text = capsys.readouterr().out
    assert f"missing_file: task {first.id}: {first.output_path} is missing" in text
    assert f"changed_file: task {second.id}: {second.output_path} is " in text
    assert "stray_file: stray.png belongs to no finished task" in text
    assert f"manifest_missing_row: task {fourth.id}: done" in text
    assert "7 problem(s)" in text
    assert main(["verify", job_id, "--json"]) == 1
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["ok"] is False and len(parsed["findings"]) == 7


def test_a_manifest_that_disagrees_and_a_missing_manifest(
    finished_job: tuple[Path, str],
) -> None:
    data_dir, job_id = finished_job
    job, tasks = load(data_dir, job_id)
    out = Path(job.out_dir)  # type: ignore[attr-defined]
    manifest = out / MANIFEST_NAME
    rows = [json.loads(r) for r in manifest.read_text().splitlines()]
    rows[0]["sha256"] = "f" * 64
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = verify_job(job, tasks)  # type: ignore[arg-type]
    [finding] = report.findings
    assert finding.kind is FindingKind.MANIFEST_DISAGREES and finding.task_id == rows[0]["task"]
    assert f"{MANIFEST_NAME} line 1 says" in finding.message
    manifest.unlink()
    kinds = [f.kind for f in verify_job(job, tasks).findings]  # type: ignore[arg-type]
    assert kinds == [FindingKind.NO_MANIFEST]


def test_verify_after_the_database_was_deleted_and_a_snapshot_truncated(
    finished_job: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The store is rebuilt from the newest readable snapshot + the manifest first (said on
    stderr), then checked: the rebuilt job agrees with its files."""
    from novelgen_desktop.paths import resolve_data_dir
    from novelgen_desktop.store.snapshot import list_snapshots

    data_dir, job_id = finished_job
    paths = resolve_data_dir(data_dir)
    snapshots = list_snapshots(paths.snapshots_dir(job_id))
    newest = snapshots[-1][1] if snapshots[-1][0] >= snapshots[0][0] else snapshots[0][1]
    newest.write_bytes(newest.read_bytes()[:40])  # truncated
    for suffix in ("", "-wal", "-shm"):
        Path(str(data_dir / "novelgen.sqlite") + suffix).unlink(missing_ok=True)
    assert main(["verify", job_id]) == 1  # the rebuilt job is behind its manifest
    captured = capsys.readouterr()
    assert f"rebuilt 1 job(s) from snapshots: {job_id}" in captured.err
    assert "note: the database has not taken in the last 6 manifest row(s) yet" in captured.out
    assert main(["resume", job_id, *SIM]) == 0  # reconciles: nothing is drawn again
    capsys.readouterr()
    assert main(["verify", job_id]) == 0
    captured = capsys.readouterr()
    assert "6 done, 6 file(s) checked" in captured.out and "all agree" in captured.out
    assert "note:" not in captured.out
