"""JSON snapshots: atomic writes, gzip + prune, damage reported by name, exact round trips."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novelgen_desktop.engine.model import JobState, TaskState
from novelgen_desktop.errors import StoreError
from novelgen_desktop.store import snapshot as snapshot_mod
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import JobRecord, TaskCompleted, TaskRecord
from novelgen_desktop.store.snapshot import (
    SNAPSHOT_FORMAT,
    SNAPSHOT_VERSION,
    compress_and_prune,
    list_snapshots,
    read_snapshot,
    records_from_snapshot,
    snapshot_payload,
    write_snapshot,
)

JobFactory = Callable[..., tuple[JobRecord, list[TaskRecord]]]
SHA = "ab" * 32


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "jobs" / "j" / "snapshots"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- write_snapshot --------------------------------------------------------------------------


def test_write_snapshot_is_plain_json_and_leaves_no_temp_files(
    store: Store, new_job: JobFactory, folder: Path
) -> None:
    _job, tasks = new_job("j", tasks=3)
    path = write_snapshot(store, "j", folder, 0)
    assert path == folder / "snapshot-000000.json"
    assert names(folder) == ["snapshot-000000.json"]
    payload = json.loads(path.read_bytes())
    assert payload["format"] == SNAPSHOT_FORMAT
    assert payload["version"] == SNAPSHOT_VERSION
    assert payload["seq"] == 0
    assert payload["job"]["id"] == "j"
    assert payload["counts"]["queued"] == 3
    assert [t["id"] for t in payload["tasks"]] == [t.id for t in tasks]
    assert read_snapshot(path) == payload


def test_write_snapshot_records_its_seq(store: Store, new_job: JobFactory, folder: Path) -> None:
    new_job("j")
    write_snapshot(store, "j", folder, 7)
    assert store.find_job("j").snapshot_seq == 7


def test_older_snapshots_are_gzipped_and_pruned(
    store: Store, new_job: JobFactory, folder: Path
) -> None:
    _job, tasks = new_job("j", tasks=6)
    for seq in range(6):
        if seq:
            store.apply([TaskCompleted(tasks[seq - 1].id, 1, f"{seq}.png", SHA, 1, 1.0, None, {})])
        write_snapshot(store, "j", folder, seq, keep=3)
    assert names(folder) == [
        "snapshot-000003.json.gz",
        "snapshot-000004.json.gz",
        "snapshot-000005.json",
    ]
    assert [seq for seq, _path in list_snapshots(folder)] == [5, 4, 3]
    for seq in (3, 4):
        path = folder / f"snapshot-{seq:06d}.json.gz"
        payload = json.loads(gzip.decompress(path.read_bytes()))
        assert payload["seq"] == seq
        assert payload["counts"]["done"] == seq  # each kept the state it was taken at
        assert read_snapshot(path) == payload
    newest = read_snapshot(folder / "snapshot-000005.json")
    assert newest["counts"]["done"] == 5


def test_keep_one_leaves_only_the_newest(store: Store, new_job: JobFactory, folder: Path) -> None:
    new_job("j")
    for seq in range(4):
        write_snapshot(store, "j", folder, seq, keep=1)
    assert names(folder) == ["snapshot-000003.json"]


def test_write_snapshot_cleans_temp_files_left_by_a_crash(
    store: Store, new_job: JobFactory, folder: Path
) -> None:
    new_job("j")
    folder.mkdir(parents=True)
    (folder / ".snapshot-000001.json.4242.tmp").write_bytes(b'{"format": "novelgen-sn')
    (folder / ".snapshot-000000.json.gz.4242.tmp").write_bytes(b"\x1f\x8b")
    (folder / "notes.txt").write_text("the author's own file")
    write_snapshot(store, "j", folder, 2)
    assert names(folder) == ["notes.txt", "snapshot-000002.json"]


def test_a_crash_while_writing_keeps_the_previous_snapshot(
    store: Store, new_job: JobFactory, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_job("j")
    first = write_snapshot(store, "j", folder, 1)
    before = first.read_bytes()

    def crash(*_args: Any) -> None:
        raise OSError("simulated power cut before the rename")

    monkeypatch.setattr(snapshot_mod.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        write_snapshot(store, "j", folder, 2)
    monkeypatch.undo()
    # The final name never holds a partial file; the previous snapshot is untouched.
    assert not (folder / "snapshot-000002.json").exists()
    assert first.read_bytes() == before
    assert [seq for seq, _ in list_snapshots(folder)] == [1]
    # The next successful write clears the orphaned temp file.
    write_snapshot(store, "j", folder, 2)
    assert names(folder) == ["snapshot-000001.json.gz", "snapshot-000002.json"]


def test_list_snapshots_order_and_filtering(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in [
        "snapshot-000002.json.gz",
        "snapshot-000010.json",
        "snapshot-000002.json",
        "snapshot-1234567.json",  # more than six digits is still a snapshot
        "snapshot-12.json",  # too few digits
        "snapshot-000003.json.bak",
        "snapshot-000004.gz",
        ".snapshot-000005.json.1.tmp",
    ]:
        (folder / name).write_bytes(b"{}")
    listed = [(seq, path.name) for seq, path in list_snapshots(folder)]
    assert listed == [
        (1234567, "snapshot-1234567.json"),
        (10, "snapshot-000010.json"),
        (2, "snapshot-000002.json"),  # plain before gz of the same seq
        (2, "snapshot-000002.json.gz"),
    ]
    assert list_snapshots(folder / "missing") == []


def test_compress_and_prune_on_an_empty_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    compress_and_prune(folder, keep=3)
    assert names(folder) == []


# --- read_snapshot of damaged files ----------------------------------------------------------


def _good_payload() -> dict[str, Any]:
    return {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "job": {}, "tasks": []}


def _gzip_header() -> bytes:
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _bad_crc_gzip() -> bytes:
    data = gzip.compress(json.dumps(_good_payload()).encode())
    crc = bytes(b ^ 0xFF for b in data[-8:-4])  # the trailer's CRC32, inverted
    return data[:-8] + crc + data[-4:]


BAD_SNAPSHOTS: dict[str, tuple[str, bytes]] = {
    "empty": ("snapshot-000001.json", b""),
    "truncated-json": ("snapshot-000001.json", json.dumps(_good_payload()).encode()[:25]),
    "binary-garbage": ("snapshot-000001.json", bytes(range(256)) * 4),
    "invalid-utf8": ("snapshot-000001.json", b'{"format": "\xff\xfe"}'),
    "json-list": ("snapshot-000001.json", b"[1, 2, 3]"),
    "json-string": ("snapshot-000001.json", b'"novelgen-snapshot"'),
    "wrong-format": (
        "snapshot-000001.json",
        json.dumps({**_good_payload(), "format": "something-else"}).encode(),
    ),
    "missing-format": ("snapshot-000001.json", json.dumps({"version": 1}).encode()),
    "wrong-version": (
        "snapshot-000001.json",
        json.dumps({**_good_payload(), "version": SNAPSHOT_VERSION + 1}).encode(),
    ),
    "version-as-string": (
        "snapshot-000001.json",
        json.dumps({**_good_payload(), "version": str(SNAPSHOT_VERSION)}).encode(),
    ),
    "gz-not-gzip": ("snapshot-000001.json.gz", json.dumps(_good_payload()).encode()),
    "gz-truncated": (
        "snapshot-000001.json.gz",
        gzip.compress(json.dumps(_good_payload()).encode())[:30],
    ),
    "gz-bad-crc": ("snapshot-000001.json.gz", _bad_crc_gzip()),
    "gz-of-garbage": ("snapshot-000001.json.gz", gzip.compress(b"\x00\x01 not json")),
    "gz-wrong-version": (
        "snapshot-000001.json.gz",
        gzip.compress(json.dumps({**_good_payload(), "version": 0}).encode()),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SNAPSHOTS))
def test_read_snapshot_of_a_bad_file_names_the_file(folder: Path, case: str) -> None:
    name, data = BAD_SNAPSHOTS[case]
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data)
    with pytest.raises(StoreError) as info:
        read_snapshot(path)
    assert str(path) in str(info.value)


def test_read_snapshot_of_a_gz_with_a_corrupt_deflate_stream(folder: Path) -> None:
    """A gzip header followed by an invalid deflate block (BTYPE=11, reserved): the kind of
    damage a bad sector inside an older, compressed snapshot produces. gzip raises
    zlib.error for it, which is neither OSError nor ValueError; it must still come out as a
    StoreError, or recovery (which skips unreadable snapshots by catching StoreError) stops."""
    folder.mkdir(parents=True)
    path = folder / "snapshot-000001.json.gz"
    path.write_bytes(_gzip_header() + b"\x07" + bytes(32))
    with pytest.raises(StoreError) as info:
        read_snapshot(path)
    assert str(path) in str(info.value)


def test_read_snapshot_of_a_gz_with_flipped_bytes_inside(
    store: Store, new_job: JobFactory, folder: Path
) -> None:
    new_job("j", tasks=40)
    write_snapshot(store, "j", folder, 0)
    write_snapshot(store, "j", folder, 1)
    path = folder / "snapshot-000000.json.gz"
    data = bytearray(path.read_bytes())
    for offset in range(12, 16):  # just after the gzip header: inside the deflate stream
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        read_snapshot(path)
    assert str(path) in str(info.value)


def test_read_snapshot_of_a_missing_file(folder: Path) -> None:
    with pytest.raises(StoreError) as info:
        read_snapshot(folder / "snapshot-000009.json")
    assert "snapshot-000009.json" in str(info.value)


# --- records_from_snapshot -------------------------------------------------------------------


ODD_JOB = JobRecord(
    id="odd-20261123-0001",
    name='Ödd — «job» 🌊 with "quotes"',
    created_at=1_795_000_000.123456,
    updated_at=1_795_000_001.5,
    state=JobState.INCOMPLETE,
    out_dir="/tmp/out dir/with spaces/ünï",
    naming_template="{chapter}/{page:03d}-{panel:02d}.png",
    sources=["scripts/ch1.md", "scripts/ch 2 — draft.csv"],
    settings={"workers": 4, "backoff": 0.25, "flags": [True, None], "nested": {"é": "ü"}},
    manifest_offset=123_456,
    snapshot_seq=0,
)

ODD_TASKS = [
    TaskRecord(
        id=41,
        job_id=ODD_JOB.id,
        seq=1,
        prompt='Un phare\nsous la tempête — 灯台 🌩️ \u2028 \\ "q" \t tab',
        planned_path="Prologue/001-01.png",
        state=TaskState.DONE,
        chapter="Prologue",
        page=1,
        panel=1,
        variant=3,
        priority=-7,
        characters=["Zoë", "李", ""],
        style="ink wash",
        metadata={"caption": "Night.", "sfx": ["KRAK", "BOOM"], "n": 3, "x": None, "f": 1.5},
        source="ch1.md:12",
        attempts=4,
        failures=2,
        not_before=1_795_000_100.75,
        last_error_kind="timeout",
        last_error="no image after 120 s",
        output_path="Prologue/001-01.jpg",
        sha256="f" * 64,
        size=987_654,
        done_attempt=4,
        finished_at=1_795_000_200.25,
        worker_id="worker-ü-1",
    ),
    TaskRecord(
        id=42,
        job_id=ODD_JOB.id,
        seq=2,
        prompt="x",
        planned_path="00002.png",
        state=TaskState.REFUSED,
    ),
    TaskRecord(
        id=43,
        job_id=ODD_JOB.id,
        seq=3,
        prompt="leased when the snapshot was taken",
        planned_path="00003.png",
        state=TaskState.LEASED,
        attempts=1,
        worker_id="w2",
    ),
]


def test_records_from_snapshot_round_trips_an_odd_job(store: Store, folder: Path) -> None:
    store.create_job(ODD_JOB, ODD_TASKS)
    path = write_snapshot(store, ODD_JOB.id, folder, 0)
    job, tasks = records_from_snapshot(read_snapshot(path))
    assert job == ODD_JOB
    assert tasks == ODD_TASKS
    for original, restored in zip(ODD_TASKS, tasks, strict=True):
        assert type(restored.state) is TaskState
        assert restored.state is original.state
    assert type(job.state) is JobState


def test_records_from_a_compressed_snapshot(store: Store, folder: Path) -> None:
    store.create_job(ODD_JOB, ODD_TASKS)
    write_snapshot(store, ODD_JOB.id, folder, 0)
    write_snapshot(store, ODD_JOB.id, folder, 1)
    job, tasks = records_from_snapshot(read_snapshot(folder / "snapshot-000000.json.gz"))
    assert job == ODD_JOB
    assert tasks == ODD_TASKS


def test_a_rebuilt_job_can_be_inserted_again(store: Store, folder: Path, tmp_path: Path) -> None:
    store.create_job(ODD_JOB, ODD_TASKS)
    path = write_snapshot(store, ODD_JOB.id, folder, 0)
    job, tasks = records_from_snapshot(read_snapshot(path))
    with Store(tmp_path / "second.sqlite") as other:
        other.create_job(job, tasks)
        assert other.find_job(job.id) == ODD_JOB
        assert other.load_tasks(job.id) == ODD_TASKS


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("job"),
        lambda p: p.pop("tasks"),
        lambda p: p["job"].update(state="exploded"),
        lambda p: p["job"].pop("name"),
        lambda p: p["job"].update(unexpected_field=1),
        lambda p: p["tasks"][0].update(state="half-done"),
        lambda p: p["tasks"][0].pop("prompt"),
        lambda p: p["tasks"][0].update(bogus=True),
        lambda p: p.update(tasks=[1, 2]),
        lambda p: p.update(tasks=None),
    ],
)
def test_inconsistent_snapshot_content_is_a_store_error(
    store: Store, folder: Path, damage: Callable[[dict[str, Any]], Any]
) -> None:
    store.create_job(ODD_JOB, ODD_TASKS)
    payload = snapshot_payload(store, ODD_JOB.id)
    damage(payload)
    with pytest.raises(StoreError):
        records_from_snapshot(payload)


# --- property: any task record survives DB → snapshot → records ------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_opt_text = st.none() | _text
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_opt_int = st.none() | _int64
_float = st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(
    st.none() | st.booleans() | _int64 | _float | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=8,
)


@st.composite
def task_records(draw: st.DrawFn) -> TaskRecord:
    return TaskRecord(
        id=draw(st.integers(min_value=1, max_value=2**62)),
        job_id="prop",
        seq=draw(_int64),
        prompt=draw(_text),
        planned_path=draw(_text),
        state=draw(st.sampled_from(TaskState)),
        chapter=draw(_opt_text),
        page=draw(_opt_int),
        panel=draw(_opt_int),
        variant=draw(_int64),
        priority=draw(_int64),
        characters=draw(st.lists(_text, max_size=4)),
        style=draw(_opt_text),
        metadata=draw(st.dictionaries(_text, _json, max_size=4)),
        source=draw(_opt_text),
        attempts=draw(_int64),
        failures=draw(_int64),
        not_before=draw(_float),
        last_error_kind=draw(_opt_text),
        last_error=draw(_opt_text),
        output_path=draw(_opt_text),
        sha256=draw(_opt_text),
        size=draw(_opt_int),
        done_attempt=draw(_opt_int),
        finished_at=draw(st.none() | _float),
        worker_id=draw(_opt_text),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=task_records(), job_state=st.sampled_from(JobState), name=_text)
def test_any_task_record_round_trips_through_a_snapshot(
    task: TaskRecord, job_state: JobState, name: str
) -> None:
    job = JobRecord("prop", name, 1.0, 2.0, job_state, "/o", "{seq:05d}.png", ["s"], {"k": 1})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "snaps"
        with Store(root / "db.sqlite") as store:
            store.create_job(job, [task])
            write_snapshot(store, "prop", folder, 3)
            write_snapshot(store, "prop", folder, 4)  # turns 3 into .json.gz
        assert names(folder) == ["snapshot-000003.json.gz", "snapshot-000004.json"]
        for candidate in sorted(folder.iterdir()):
            restored_job, restored_tasks = records_from_snapshot(read_snapshot(candidate))
            assert restored_tasks == [task]
            assert restored_job.name == name
            assert restored_job.state is job_state
