"""manifest.jsonl: append-only rows, torn-tail repair, and forgiving reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.store.manifest import (
    MANIFEST_NAME,
    ManifestWriter,
    read_manifest,
    repair_torn_tail,
)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return tmp_path / "out" / MANIFEST_NAME


def row(task: int, **extra: Any) -> dict[str, Any]:
    return {"task": task, "file": f"1/{task:03d}.png", "sha256": f"{task:064x}", **extra}


def line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


# --- ManifestWriter --------------------------------------------------------------------------


def test_append_returns_the_new_size(manifest: Path) -> None:
    writer = ManifestWriter(manifest)
    try:
        assert manifest.exists()
        assert writer.size() == 0
        first = writer.append([row(1)])
        assert first == manifest.stat().st_size > 0
        second = writer.append([row(2), row(3)])
        assert second == manifest.stat().st_size
        assert second > first
        assert writer.append([]) == second  # nothing written, size unchanged
        assert writer.append([row(4)], fsync=False) == manifest.stat().st_size
        assert writer.size() == manifest.stat().st_size
    finally:
        writer.close()
    assert manifest.read_bytes() == b"".join(line(row(i)) for i in (1, 2, 3, 4))


def test_rows_round_trip(manifest: Path) -> None:
    rows = [
        row(1, prompt="Le phare — « tempête » 🌊", chapter=None, width=64, ratio=0.5),
        row(2, prompt='line\nbreak and "quotes" and \\ backslash', nested={"a": [1, {}]}),
        row(3, prompt="separators \u2028 and \u2029 and \x85 inside a string"),
    ]
    writer = ManifestWriter(manifest)
    try:
        size = writer.append(rows)
    finally:
        writer.close()
    read = list(read_manifest(manifest))
    assert [r.data for r in read] == rows
    assert [r.line for r in read] == [1, 2, 3]
    assert read[-1].offset_after == size
    # offsets are byte positions: each one is where the next row starts
    raw = manifest.read_bytes()
    starts = [0] + [r.offset_after for r in read[:-1]]
    for start, item in zip(starts, read, strict=True):
        assert json.loads(raw[start : item.offset_after]) == item.data
    # Non-ASCII is stored as UTF-8, readable by a human without NovelGen.
    assert "Le phare — « tempête » 🌊".encode() in raw


def test_writer_appends_after_existing_rows(manifest: Path) -> None:
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(line(row(1)))
    writer = ManifestWriter(manifest)
    try:
        writer.append([row(2)])
    finally:
        writer.close()
    assert [r.data["task"] for r in read_manifest(manifest)] == [1, 2]


def test_writer_repairs_a_torn_tail_before_appending(manifest: Path) -> None:
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(line(row(1)) + b'{"task":2,"file":"1/00')
    writer = ManifestWriter(manifest)
    try:
        size = writer.append([row(3)])
    finally:
        writer.close()
    assert manifest.read_bytes() == line(row(1)) + line(row(3))
    assert size == manifest.stat().st_size
    assert [r.data["task"] for r in read_manifest(manifest)] == [1, 3]


# --- repair_torn_tail ------------------------------------------------------------------------

CLEAN = line(row(1)) + line(row(2, prompt="ü" * 50))

TORN_CASES = {
    # name: (content, bytes that must survive)
    "partial-after-newline": (CLEAN + b'{"task":3,"fi', CLEAN),
    "partial-is-a-complete-json-without-newline": (CLEAN + line(row(3))[:-1], CLEAN),
    "only-a-partial-line": (b'{"task":1,"file":"1/0', b""),
    "single-byte": (b"{", b""),
    "partial-multibyte-char": (CLEAN + '{"prompt":"ü'.encode()[:-1], CLEAN),
    "long-partial-line": (CLEAN + b'{"prompt":"' + b"x" * 10_000, CLEAN),
    "long-partial-only": (b'{"prompt":"' + b"y" * 9_000, b""),
    "partial-exactly-one-block": (CLEAN + b"z" * 4096, CLEAN),
    "partial-one-byte-short-of-a-block": (CLEAN + b"z" * 4095, CLEAN),
    "partial-one-byte-over-a-block": (CLEAN + b"z" * 4097, CLEAN),
    "newline-at-block-edge": (b"a" * 4095 + b"\n" + b"b" * 4096, b"a" * 4095 + b"\n"),
    "long-complete-lines-then-partial": (
        line(row(1, prompt="p" * 6000)) + line(row(2, prompt="q" * 6000)) + b'{"t',
        line(row(1, prompt="p" * 6000)) + line(row(2, prompt="q" * 6000)),
    ),
}


@pytest.mark.parametrize("case", sorted(TORN_CASES))
def test_repair_torn_tail_cuts_the_partial_line(manifest: Path, case: str) -> None:
    content, kept = TORN_CASES[case]
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(content)
    assert repair_torn_tail(manifest) == len(content) - len(kept)
    assert manifest.read_bytes() == kept
    # Repairing again finds nothing to do.
    assert repair_torn_tail(manifest) == 0
    assert manifest.read_bytes() == kept


@pytest.mark.parametrize(
    "content",
    [b"", CLEAN, b"\n", line(row(1, prompt="r" * 9000)), b"not json but complete\n"],
    ids=["empty", "clean", "blank-line", "long-clean", "garbage-but-complete"],
)
def test_repair_torn_tail_leaves_a_clean_file_alone(manifest: Path, content: bytes) -> None:
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(content)
    stamp = 1_000_000_000
    os.utime(manifest, (stamp, stamp))
    assert repair_torn_tail(manifest) == 0
    assert manifest.read_bytes() == content
    assert manifest.stat().st_mtime == stamp  # not even rewritten


def test_repair_torn_tail_of_a_missing_file(manifest: Path) -> None:
    assert repair_torn_tail(manifest) == 0
    assert not manifest.exists()


# --- read_manifest ---------------------------------------------------------------------------


def test_read_manifest_from_an_offset(manifest: Path) -> None:
    writer = ManifestWriter(manifest)
    try:
        after_two = writer.append([row(1), row(2)])
        end = writer.append([row(3), row(4)])
    finally:
        writer.close()
    tail = list(read_manifest(manifest, offset=after_two))
    assert [r.data["task"] for r in tail] == [3, 4]
    assert [r.line for r in tail] == [1, 2]  # counted from the offset
    assert tail[-1].offset_after == end
    # An offset taken from any row resumes right after it.
    rows = list(read_manifest(manifest))
    for index, item in enumerate(rows):
        rest = list(read_manifest(manifest, offset=item.offset_after))
        assert [r.data for r in rest] == [r.data for r in rows[index + 1 :]]
        assert [r.offset_after for r in rest] == [r.offset_after for r in rows[index + 1 :]]
    assert list(read_manifest(manifest, offset=end)) == []
    assert list(read_manifest(manifest, offset=end + 100)) == []


def test_read_manifest_skips_garbage_lines_in_the_middle(manifest: Path) -> None:
    manifest.parent.mkdir(parents=True)
    content = (
        line(row(1))
        + b"this is not json\n"
        + line(row(2))
        + b'{"task": 3, "file": \n'  # a line cut short and continued
        + b"\xff\xfe\x00 binary junk\n"
        + b"[1, 2, 3]\n"  # JSON, but not an object
        + b'"a string"\n'
        + b"\n"
        + b"null\n"
        + line(row(4))
    )
    manifest.write_bytes(content)
    rows = list(read_manifest(manifest))
    assert [r.data["task"] for r in rows] == [1, 2, 4]
    assert [r.line for r in rows] == [1, 3, 10]
    assert rows[-1].offset_after == len(content)


def test_read_manifest_ignores_a_torn_tail(manifest: Path) -> None:
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes(line(row(1)) + line(row(2))[:-1])  # valid JSON, but no newline yet
    assert [r.data["task"] for r in read_manifest(manifest)] == [1]


def test_read_manifest_of_a_missing_file_is_empty(manifest: Path) -> None:
    assert list(read_manifest(manifest)) == []
