"""Putting a finished image on disk so that it is either complete or absent, never half there.

A finished image is the expensive thing this tool produces (minutes of a rate-limited account),
so a crash, a power cut or a full disk at any moment must leave the output folder in one of two
states for each image: the complete file, or nothing (plus, at worst, a temp file that
:func:`remove_temp_files` clears at the next start). The classic sequence gives that: write a
temp file in the target directory, ``fsync`` it, ``os.replace`` it onto the final name (atomic
within one filesystem), then ``fsync`` the directory so the rename itself survives a power cut.
Only after :func:`write_image_atomically` returns may the engine record the task as done.

A result must also never be written twice: a duplicate delivery (a retried transfer, a worker
that answered after its lease expired) must not silently produce a second file or replace the
first, so an existing target is refused unless the caller explicitly asks to overwrite.

Limits worth knowing: on macOS ``os.fsync`` does not flush the drive's own cache (only
``F_FULLFSYNC`` does, at ~10x the cost); on Windows directories cannot be fsynced and NTFS
journals the rename instead. Both are the same trade-offs SQLite makes by default.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import stat
import threading
import weakref
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from novelgen_desktop.errors import OutputError

__all__ = [
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "OutputExistsError",
    "OutputWriteError",
    "WrittenFile",
    "fsync_folders",
    "is_temp_file_name",
    "remove_temp_files",
    "sha256_file",
    "verify_file",
    "write_image_atomically",
]

TEMP_PREFIX: Final = "."
TEMP_SUFFIX: Final = ".tmp"
_TEMP_TOKEN_HEX: Final = 16
# ".<name>.<16 hex>.tmp": the random token keeps a user's own ".notes.tmp" out of the pattern.
_TEMP_NAME: Final = re.compile(
    rf"{re.escape(TEMP_PREFIX)}.+\.[0-9a-f]{{{_TEMP_TOKEN_HEX}}}{re.escape(TEMP_SUFFIX)}",
    re.DOTALL,
)
_TEMP_NAME_MAX_BYTES: Final = 100  # keeps ".<name>.<token>.tmp" under the 255-byte limit
_CHUNK: Final = 1024 * 1024
_O_BINARY: Final = getattr(os, "O_BINARY", 0)  # Windows would otherwise translate newlines
_CAN_FSYNC_DIRS: Final = os.name != "nt"


class _DirSync:
    """Group commit for directory fsyncs.

    Every write ends with an fsync of its folder, and with a thread pool writing into the same
    chapter folder most of those would flush the same directory again and again (on the
    machine this was measured on, a directory fsync cost as much as the file's). A caller only
    needs *some* fsync of the folder that started after its own rename; so callers take a
    ticket after renaming, and whoever holds the folder's lock flushes on behalf of every
    ticket issued so far. Waiting callers then find themselves covered and return at once.
    """

    __slots__ = ("__weakref__", "lock", "requested", "synced")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requested = 0
        self.synced = 0


_dir_syncs: weakref.WeakValueDictionary[str, _DirSync] = weakref.WeakValueDictionary()
_dir_syncs_lock = threading.Lock()


def _fsync_dir_coalesced(directory: Path) -> None:
    """Make every rename into ``directory`` done so far durable, sharing the fsync with
    concurrent callers (see :class:`_DirSync`)."""
    if not _CAN_FSYNC_DIRS:
        return
    key = os.fspath(directory)
    with _dir_syncs_lock:
        state = _dir_syncs.get(key)
        if state is None:
            state = _dir_syncs[key] = _DirSync()
        state.requested += 1
        ticket = state.requested
    with state.lock:
        if state.synced >= ticket:
            return
        with _dir_syncs_lock:
            covered = state.requested
        _fsync_dir(directory)
        state.synced = covered


# The existence check and the rename must be one step, or two threads delivering the same
# result could both pass the check and the second would silently replace the first. Only
# writes to the same target can race, so the locks are striped by target path: one global
# lock was measured to queue the writer threads behind each other's rename (slow on
# virtualised disks), while a stripe per path hash keeps the guarantee without the queue.
_RENAME_STRIPES: Final = 64
_rename_locks: Final = tuple(threading.Lock() for _ in range(_RENAME_STRIPES))


def _rename_lock_for(target: Path) -> threading.Lock:
    return _rename_locks[hash(os.fspath(target)) % _RENAME_STRIPES]


class OutputExistsError(OutputError):
    """The target file already exists; the engine decides whether that is a duplicate."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"output file already exists: {path}")
        self.path = path


class OutputWriteError(OutputError):
    """The operating system refused the write. ``errno`` lets the engine tell a full disk
    (``ENOSPC``: pause everything) from a one-off failure (retry this image)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """What the store records about a finished image, enough to verify it later."""

    path: Path  # absolute
    relative: str  # posix, relative to the output folder
    sha256: str  # hex
    size: int


def write_image_atomically(
    out_dir: Path,
    relative: PurePosixPath | str,
    data: bytes | bytearray | memoryview,
    *,
    fsync: bool = True,
    overwrite: bool = False,
    sync_folder: bool = True,
) -> WrittenFile:
    """Write ``data`` to ``out_dir / relative`` completely or not at all.

    Raises :class:`OutputExistsError` if the target exists and ``overwrite`` is false,
    :class:`OutputWriteError` when the OS refuses (full disk, permissions, a file where a
    folder should be), and :class:`OutputError` if ``relative`` would leave ``out_dir``.
    ``fsync=False`` skips every flush: for tests and benchmarks, never for real output.
    ``sync_folder=False`` skips only the folder flush after the rename: for a caller that
    flushes the folders of a whole batch itself (:func:`fsync_folders`) before it records
    any image of that batch as done — one folder fsync per batch instead of one per image.

    If only the final folder flush fails, the complete file is already in place (just not
    known to be durable) and :class:`OutputWriteError` is still raised; a retry will then meet
    :class:`OutputExistsError`, and :func:`verify_file` can tell whether that file is this
    image.
    """
    parts = _checked_parts(relative)
    root = _resolved_root(out_dir)
    target = root.joinpath(*parts)
    parent = target.parent
    if not overwrite and os.path.lexists(target):  # cheap early answer; rechecked at rename
        raise OutputExistsError(target)
    view = memoryview(data).cast("B")
    hasher = hashlib.sha256()
    temp = parent / _temp_name(target.name)
    try:
        try:
            for retry in (False, True):
                _prepare_folder(root, parent, relative, fsync=fsync, recheck=retry)
                try:
                    fd = os.open(
                        temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _O_BINARY, 0o666
                    )
                    break
                except FileNotFoundError:
                    if retry:  # the folder vanished twice: let the OS error speak
                        raise
                    _forget_folder(root, parent)  # removed since it was verified: redo it
            try:
                offset = 0
                while offset < len(view):
                    chunk = view[offset : offset + _CHUNK]
                    written = os.write(fd, chunk)
                    hasher.update(chunk[:written])
                    offset += written
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            with _rename_lock_for(target):
                if not overwrite and os.path.lexists(target):
                    raise OutputExistsError(target)
                os.replace(temp, target)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp)
            raise
        if fsync and sync_folder:
            _fsync_dir_coalesced(parent)
    except OSError as exc:
        raise OutputWriteError(f"cannot write {target}: {exc}", exc.errno) from exc
    return WrittenFile(
        path=target,
        relative="/".join(parts),
        sha256=hasher.hexdigest(),
        size=len(view),
    )


def is_temp_file_name(name: str) -> bool:
    """Whether ``name`` is one of this module's temp files (and so safe to delete when no
    write is in progress)."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_temp_files(out_dir: Path) -> int:
    """Delete temp files left by writes interrupted by a crash; returns how many.

    Call it at start-up or before resuming a job, never while writes to ``out_dir`` may be in
    flight: it would delete their temp files from under them. Symlinks are neither followed
    nor deleted; a missing ``out_dir`` simply has nothing to clean.
    """
    removed = 0
    for dirpath, _dirnames, filenames in os.walk(out_dir):
        for name in filenames:
            if not is_temp_file_name(name):
                continue
            path = os.path.join(dirpath, name)
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise OutputWriteError(f"cannot remove temp file {path}: {exc}", exc.errno) from exc
            removed += 1
    return removed


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file, streamed so a large image never has to fit in memory twice."""
    hasher = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            hasher.update(view[:count])
    return hasher.hexdigest()


def verify_file(path: Path | str, sha256: str, size: int) -> bool:
    """Whether ``path`` still holds exactly the recorded image.

    A missing file (or a folder in its place) is an answer, ``False``; any other OS error
    (permissions, I/O) is raised as :class:`OutputWriteError`, because "cannot tell" must not
    be mistaken for "lost" and trigger a second generation of an image that is still there.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        return sha256_file(path) == sha256.lower()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    except OSError as exc:
        raise OutputWriteError(f"cannot verify {path}: {exc}", exc.errno) from exc


# --- internals ------------------------------------------------------------------------------


def _checked_parts(relative: PurePosixPath | str) -> tuple[str, ...]:
    """The components of ``relative``, refusing anything that could point outside the output
    folder or at a temp file. :mod:`naming` already guarantees this; this is the second line."""
    text = str(relative)
    path = PurePosixPath(text)
    if not text or path.is_absolute() or text.startswith("\\"):
        raise OutputError(f"output path must be relative to the output folder: {text!r}")
    # Checked on the raw text: PurePosixPath would quietly drop "." and doubled slashes, and
    # either means the caller built the path wrongly.
    parts = tuple(text.split("/"))
    if any(
        part in ("", ".", "..") or "\\" in part or "\x00" in part or ":" in part for part in parts
    ):
        raise OutputError(f"output path has an unsafe component: {text!r}")
    if is_temp_file_name(parts[-1]):
        raise OutputError(f"output file name looks like a temp file: {text!r}")
    return parts


# Verifying a folder (resolve it, check it is inside the output folder, create it, fsync its
# parent) costs a dozen system calls; on the machines we measured each one is expensive, and
# thousands of images go into a handful of folders. So each folder is verified once per
# process, and again only if it disappears.
_verified_folders: set[tuple[str, str]] = set()
_verified_lock = threading.Lock()
_resolved_roots: dict[str, Path] = {}


def _resolved_root(out_dir: Path | str) -> Path:
    key = os.fspath(out_dir)
    root = _resolved_roots.get(key)
    if root is None:
        root = _resolved_roots[key] = Path(out_dir).resolve()
    return root


def _forget_folder(root: Path, folder: Path) -> None:
    with _verified_lock:
        _verified_folders.discard((str(root), str(folder)))


def _prepare_folder(
    root: Path, folder: Path, relative: PurePosixPath | str, *, fsync: bool, recheck: bool
) -> None:
    key = (str(root), str(folder))
    if not recheck and key in _verified_folders:
        return
    _ensure_inside(root, folder, relative)
    try:
        created = _make_dirs(folder)
    except OSError as exc:
        raise OutputWriteError(f"cannot create folder {folder}: {exc}", exc.errno) from exc
    # Again after creating: a symlink swapped in meanwhile must not redirect the write.
    _ensure_inside(root, folder, relative)
    if fsync:
        for directory in dict.fromkeys(d.parent for d in created):
            _fsync_dir_coalesced(directory)
    with _verified_lock:
        _verified_folders.add(key)


def _ensure_inside(root: Path, folder: Path, relative: PurePosixPath | str) -> None:
    try:
        resolved = folder.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise OutputError(f"cannot resolve output folder {folder}: {exc}") from exc
    if resolved != root and not resolved.is_relative_to(root):
        raise OutputError(f"output path {str(relative)!r} escapes the output folder {root}")


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and missing ancestors, returning those created (outermost first) so
    their parents can be fsynced: a new folder is only durable once its parent is."""
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    created: list[Path] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not directory.is_dir():  # a file where a folder should be
                raise
            continue  # another thread made it first
        created.append(directory)
    return created


def _temp_name(name: str) -> str:
    encoded = name.encode("utf-8")
    if len(encoded) > _TEMP_NAME_MAX_BYTES:
        name = encoded[:_TEMP_NAME_MAX_BYTES].decode("utf-8", "ignore")
    return f"{TEMP_PREFIX}{name}.{secrets.token_hex(_TEMP_TOKEN_HEX // 2)}{TEMP_SUFFIX}"


def fsync_folders(folders: Iterable[Path]) -> None:
    """Make every rename done so far into ``folders`` durable (group commit of folder fsyncs)."""
    for folder in folders:
        try:
            _fsync_dir(folder)
        except OSError as exc:
            raise OutputWriteError(f"cannot flush folder {folder}: {exc}", exc.errno) from exc


def _fsync_dir(directory: Path) -> None:
    if not _CAN_FSYNC_DIRS:
        return
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (certain network and FUSE mounts) cannot fsync a directory; the
        # file itself is already flushed, so this is the best that can be done there.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
