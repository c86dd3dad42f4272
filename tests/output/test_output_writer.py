"""A finished image is written completely or not at all, exactly once, inside the output folder."""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest

from novelgen_desktop.errors import OutputError
from novelgen_desktop.output import writer
from novelgen_desktop.output.writer import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    OutputExistsError,
    OutputWriteError,
    WrittenFile,
    is_temp_file_name,
    remove_temp_files,
    sha256_file,
    verify_file,
    write_image_atomically,
)

DATA = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 80  # ~20 KB; the writer does not validate


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and is_temp_file_name(p.name)]


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- success --------------------------------------------------------------------------------


@pytest.mark.parametrize("fsync", [True, False])
def test_writes_content_and_reports_hash(tmp_path: Path, fsync: bool) -> None:
    result = write_image_atomically(tmp_path, PurePosixPath("ch 1/001-01.png"), DATA, fsync=fsync)
    target = tmp_path / "ch 1" / "001-01.png"
    assert result == WrittenFile(
        path=target.resolve(),
        relative="ch 1/001-01.png",
        sha256=hashlib.sha256(DATA).hexdigest(),
        size=len(DATA),
    )
    assert result.path.is_absolute()
    assert target.read_bytes() == DATA
    assert all_files(tmp_path) == ["ch 1/001-01.png"]


def test_accepts_str_relative_and_bytes_likes(tmp_path: Path) -> None:
    a = write_image_atomically(tmp_path, "a.png", bytearray(DATA))
    b = write_image_atomically(tmp_path, "b.png", memoryview(DATA))
    assert a.sha256 == b.sha256 == hashlib.sha256(DATA).hexdigest()
    assert (tmp_path / "b.png").read_bytes() == DATA


def test_large_data_is_written_in_full(tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)  # more than one write chunk
    result = write_image_atomically(tmp_path, "big.png", big, fsync=False)
    assert (tmp_path / "big.png").read_bytes() == big
    assert result.sha256 == hashlib.sha256(big).hexdigest()


def test_empty_data(tmp_path: Path) -> None:
    result = write_image_atomically(tmp_path, "empty.png", b"")
    assert result.size == 0
    assert result.sha256 == hashlib.sha256(b"").hexdigest()


def test_creates_nested_folders_and_missing_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "not" / "yet"
    write_image_atomically(out, PurePosixPath("a/b/c/d.png"), DATA)
    assert (out / "a" / "b" / "c" / "d.png").read_bytes() == DATA


def test_no_temp_files_after_success(tmp_path: Path) -> None:
    for i in range(5):
        write_image_atomically(tmp_path, PurePosixPath(f"x/{i}.png"), DATA)
    assert temp_files(tmp_path) == []
    assert all_files(tmp_path) == [f"x/{i}.png" for i in range(5)]


def test_directories_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = writer._fsync_dir

    def recording(directory: Path) -> None:
        synced.append(str(directory))
        real(directory)

    monkeypatch.setattr(writer, "_fsync_dir", recording)
    write_image_atomically(tmp_path, PurePosixPath("new/dir/x.png"), DATA)
    root = tmp_path.resolve()
    if writer._CAN_FSYNC_DIRS:
        # Parents of each new folder (so the folder survives), then the file's folder.
        assert set(synced) == {str(root), str(root / "new"), str(root / "new" / "dir")}
        assert synced[-1] == str(root / "new" / "dir")
    synced.clear()
    write_image_atomically(tmp_path, PurePosixPath("new/dir/y.png"), DATA, fsync=False)
    assert synced == []


def test_file_is_fsynced_before_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_image_atomically(tmp_path, "x.png", DATA)
    assert events.index("fsync") < events.index("replace")
    if writer._CAN_FSYNC_DIRS:
        assert events[-1] == "fsync"  # the folder, after the rename


# --- failure --------------------------------------------------------------------------------


def test_failed_replace_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OutputWriteError) as excinfo:
        write_image_atomically(tmp_path, PurePosixPath("ch/1.png"), DATA)
    assert excinfo.value.errno == 5
    assert isinstance(excinfo.value, OutputError)
    assert all_files(tmp_path) == []


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    calls = 0
    real_write = os.write

    def full_disk(fd: int, data: object) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data[:100])  # type: ignore[index]

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OutputWriteError) as excinfo:
        write_image_atomically(tmp_path, "x.png", DATA)
    assert excinfo.value.errno == errno.ENOSPC
    assert all_files(tmp_path) == []


def test_failed_fsync_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputWriteError):
        write_image_atomically(tmp_path, "x.png", DATA)
    assert all_files(tmp_path) == []


def test_interrupt_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image_atomically(tmp_path, "x.png", DATA)
    assert all_files(tmp_path) == []


def test_file_where_a_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "ch").write_bytes(b"not a folder")
    with pytest.raises(OutputWriteError, match="cannot create folder"):
        write_image_atomically(tmp_path, "ch/1.png", DATA)


# --- never twice ----------------------------------------------------------------------------


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    write_image_atomically(tmp_path, "x.png", DATA)
    with pytest.raises(OutputExistsError) as excinfo:
        write_image_atomically(tmp_path, "x.png", b"other")
    assert excinfo.value.path == (tmp_path / "x.png").resolve()
    assert isinstance(excinfo.value, OutputError)
    assert (tmp_path / "x.png").read_bytes() == DATA
    assert all_files(tmp_path) == ["x.png"]


def test_refuses_to_replace_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "x.png").symlink_to(tmp_path / "missing")
    with pytest.raises(OutputExistsError):
        write_image_atomically(tmp_path, "x.png", DATA)


def test_overwrite_when_asked(tmp_path: Path) -> None:
    write_image_atomically(tmp_path, "x.png", DATA)
    result = write_image_atomically(tmp_path, "x.png", b"new", overwrite=True)
    assert (tmp_path / "x.png").read_bytes() == b"new"
    assert result.size == 3
    assert all_files(tmp_path) == ["x.png"]


def test_duplicate_arriving_during_the_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target appears after the early check (another thread renamed first): the check
    under the rename lock must still refuse, and the temp file must go."""
    write_image_atomically(tmp_path, "x.png", DATA)
    real_lexists = os.path.lexists
    calls: list[str] = []

    def lexists_late(path: str) -> bool:
        calls.append(str(path))
        return False if len(calls) == 1 else real_lexists(path)

    monkeypatch.setattr(os.path, "lexists", lexists_late)
    with pytest.raises(OutputExistsError):
        write_image_atomically(tmp_path, "x.png", b"second")
    monkeypatch.undo()
    assert len(calls) == 2
    assert (tmp_path / "x.png").read_bytes() == DATA
    assert all_files(tmp_path) == ["x.png"]


def test_concurrent_duplicates_write_exactly_once(tmp_path: Path) -> None:
    barrier = threading.Barrier(8)

    def deliver(i: int) -> str:
        barrier.wait()
        try:
            write_image_atomically(tmp_path, "same.png", DATA + bytes([i]))
        except OutputExistsError:
            return "exists"
        return "written"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(deliver, range(8)))
    assert outcomes.count("written") == 1
    assert all_files(tmp_path) == ["same.png"]


def test_concurrent_distinct_writes(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda i: write_image_atomically(tmp_path, f"c{i % 3}/{i}.png", DATA), range(60)
            )
        )
    assert len({r.path for r in results}) == 60
    assert len(all_files(tmp_path)) == 60
    assert temp_files(tmp_path) == []


# --- path escapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        "../x.png",
        "a/../../x.png",
        "a/../x.png",
        "/etc/x.png",
        "",
        ".",
        "a/./b.png",
        "a//b.png",
        "a/",
        "a\\..\\x.png",
        "C:x.png",
        "x\x00.png",
        ".x.png.0123456789abcdef.tmp",
    ],
)
def test_unsafe_relative_paths_are_refused(tmp_path: Path, relative: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(OutputError) as excinfo:
        write_image_atomically(out, relative, DATA)
    assert not isinstance(excinfo.value, OutputExistsError)
    assert all_files(tmp_path) == []


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputError, match="escapes"):
        write_image_atomically(out, "link/x.png", DATA)
    assert list(outside.iterdir()) == []


def test_symlinked_output_folder_itself_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    result = write_image_atomically(tmp_path / "alias", "x.png", DATA)
    assert result.path == real.resolve() / "x.png"
    assert (real / "x.png").read_bytes() == DATA


# --- temp files and recovery ----------------------------------------------------------------


def test_temp_name_pattern() -> None:
    name = writer._temp_name("001-01.png")
    assert name.startswith(TEMP_PREFIX)
    assert name.endswith(TEMP_SUFFIX)
    assert is_temp_file_name(name)
    assert not is_temp_file_name("001-01.png")
    assert not is_temp_file_name(".notes.tmp")  # a user's file, no random token
    long_name = writer._temp_name("é" * 120 + ".png")
    assert len(long_name.encode()) < 255
    assert is_temp_file_name(long_name)


def test_remove_temp_files(tmp_path: Path) -> None:
    write_image_atomically(tmp_path, "keep/a.png", DATA)
    leftovers = [
        tmp_path / writer._temp_name("a.png"),
        tmp_path / "keep" / writer._temp_name("b.png"),
        tmp_path / "deep" / "er" / writer._temp_name("c.jpg"),
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half an image")
    user_files = [tmp_path / ".notes.tmp", tmp_path / "draft.tmp", tmp_path / ".hidden"]
    for path in user_files:
        path.write_bytes(b"mine")
    assert remove_temp_files(tmp_path) == 3
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in user_files)
    assert (tmp_path / "keep" / "a.png").read_bytes() == DATA
    assert remove_temp_files(tmp_path) == 0


def test_remove_temp_files_leaves_symlinks_and_handles_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "precious.png"
    target.write_bytes(DATA)
    link = tmp_path / writer._temp_name("x.png")
    link.symlink_to(target)
    assert remove_temp_files(tmp_path) == 0
    assert link.is_symlink()
    assert remove_temp_files(tmp_path / "missing") == 0


def test_crash_leftover_is_found_by_remove_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulate a crash between the temp write and the rename (the process dies, so the
    cleanup in the writer never runs): recovery must find what was left."""

    def crash(src: object, dst: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(os, "replace", crash)
    monkeypatch.setattr(os, "unlink", lambda p: None)  # the dying process cleans nothing
    with pytest.raises(SystemExit):
        write_image_atomically(tmp_path, "ch/x.png", DATA)
    monkeypatch.undo()
    assert len(temp_files(tmp_path)) == 1
    assert remove_temp_files(tmp_path) == 1
    assert all_files(tmp_path) == []


# --- hashing and verification ---------------------------------------------------------------


def test_sha256_file_streams(tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_verify_file(tmp_path: Path) -> None:
    result = write_image_atomically(tmp_path, "x.png", DATA)
    assert verify_file(result.path, result.sha256, result.size)
    assert verify_file(result.path, result.sha256.upper(), result.size)
    assert not verify_file(result.path, result.sha256, result.size + 1)
    assert not verify_file(result.path, "0" * 64, result.size)
    assert not verify_file(tmp_path / "missing.png", result.sha256, result.size)
    assert not verify_file(tmp_path / "x.png" / "under-a-file", result.sha256, result.size)
    assert not verify_file(tmp_path, result.sha256, result.size)  # a folder
    # Same size, one byte changed: only the hash can tell.
    result.path.write_bytes(DATA[:-1] + b"\x00")
    assert not verify_file(result.path, result.sha256, result.size)


def test_verify_file_unreadable_is_an_error_not_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Cannot tell" must never read as "lost". The permission error is injected rather than
    made with chmod, so the test also runs as root (CI), which ignores file modes."""
    from novelgen_desktop.output import writer as writer_module

    result = write_image_atomically(tmp_path, "x.png", DATA)

    def unreadable(path: Path | str) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(writer_module, "sha256_file", unreadable)
    with pytest.raises(OutputWriteError, match="cannot verify"):
        verify_file(result.path, result.sha256, result.size)
