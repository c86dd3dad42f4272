"""``novelgen diagnose``: one archive an author can attach to a bug report.

What a maintainer needs to understand a failure without the author's machine: what the app
logged, what state the jobs and the database are in, how memory looked, which versions run,
and how it is configured. What must never leave the machine: the pairing token (it lets
anyone drive the hub), cookies, passwords, session ids. So every section passes through
:class:`Redactor` before it is written, the pairing files are never read into the archive,
and the archive's ``README.txt`` says what is inside and what was taken out (the kind and
where, never the value).

The archive is made of named *sections* (:data:`SECTIONS`): each is a function of the data
directory that returns a JSON-ready value (written as ``<name>.json``) or :class:`Files`
(written under ``<name>/``). A section that fails is recorded with its error instead of
stopping the others: a diagnosis is most needed when something is broken. Adding one is one
line in :data:`SECTIONS`. No Qt: this runs where the window cannot start.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from novelgen_desktop import __version__
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.store.snapshot import list_snapshots

LOG_TAIL_BYTES = 1 << 20
"""Of each log file, the last MiB (the end is where a failure is)."""
LOG_TOTAL_BYTES = 8 << 20
"""All log files together at most; older-modified files are left out first."""
EVENT_LIMIT = 2000
"""The newest events from the database's event log."""
PAIRING_FILES = frozenset({"pairing-token", "paired-extensions.json"})
"""Never copied into an archive, whatever a section asks for."""

_SECRET_NAME = re.compile(
    r"token|secret|passw|cookie|api[_-]?key|(?:^|_|-)key$|auth|session|credential|bearer",
    re.IGNORECASE,
)
_HEADER = re.compile(
    r"(?P<name>\b(?:set-cookie|cookie|authorization|proxy-authorization)\s*[:=]\s*)"
    r"(?P<value>[^\r\n]*)",
    re.IGNORECASE,
)
_KEY_VALUE = re.compile(
    r"(?P<name>\b[\w.-]*(?:token|secret|password|passwd|cookie|session|api[_-]?key)[\w.-]*"
    r"[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;&}]+)",
    re.IGNORECASE,
)
_TOKEN_SHAPED = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{22,}(?![A-Za-z0-9_-])")
REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class Files:
    """A section made of files: archive member name (under the section's folder) → bytes."""

    members: dict[str, bytes]
    notes: list[str] = field(default_factory=list)


def _looks_random(text: str) -> bool:
    """A token, not a word, a hex digest or a job id: letters of both cases and a digit
    (base64url from ``secrets.token_urlsafe``). SHA-256 digests (lowercase hex) stay, so a
    report can still name an image."""
    return (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and any(c.isdigit() for c in text)
    )


class Redactor:
    """Takes secrets out of values and text, and remembers what it took (for the README)."""

    def __init__(self, known: set[str]) -> None:
        self.known = {k for k in known if len(k) >= 8}  # literal secrets: scrubbed everywhere
        self.taken: Counter[tuple[str, str]] = Counter()  # (where, what kind) → times

    def value(self, data: Any, where: str, name: str = "") -> Any:
        if name and _SECRET_NAME.search(name) and data not in (None, "", [], {}):
            self.taken[(where, f"field {name!r}")] += 1
            return REDACTED
        if isinstance(data, dict):
            return {k: self.value(v, where, str(k)) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.value(v, where, name) for v in data]
        if isinstance(data, str):
            return self.text(data, where)
        return data

    def text(self, text: str, where: str) -> str:
        for secret in self.known:
            if secret in text:
                self.taken[(where, "a known secret (the pairing token)")] += text.count(secret)
                text = text.replace(secret, REDACTED)

        def header(match: re.Match[str]) -> str:
            self.taken[(where, f"{match['name'].split(':')[0].strip()} header")] += 1
            return match["name"] + REDACTED

        def key_value(match: re.Match[str]) -> str:
            if match["value"] == REDACTED:
                return match[0]
            self.taken[(where, "a secret-named value")] += 1
            return match["name"] + REDACTED

        def shaped(match: re.Match[str]) -> str:
            if not _looks_random(match[0]):
                return match[0]
            self.taken[(where, "a token-shaped string")] += 1
            return REDACTED

        text = _HEADER.sub(header, text)
        text = _KEY_VALUE.sub(key_value, text)
        return _TOKEN_SHAPED.sub(shaped, text)

    def data(self, raw: bytes, where: str) -> bytes:
        return self.text(raw.decode("utf-8", "replace"), where).encode("utf-8")


# --- sections ------------------------------------------------------------------------------


def _version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _chromium() -> str | None:
    for binary in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
        if not os.path.exists(binary):
            continue
        try:
            done = subprocess.run(  # fixed paths, no shell
                [binary, "--version"], capture_output=True, text=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{binary}: {exc}"
        return done.stdout.strip() or done.stderr.strip()[:200] or None
    return None


def _extension_version() -> str | None:
    manifest = Path(__file__).resolve().parents[2] / "extension" / "manifest.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8")).get("version"))
    except (OSError, ValueError):
        return None


def versions(paths: DataPaths) -> object:
    return {
        "novelgen": __version__,
        "python": sys.version,
        "executable": sys.executable,
        "os": platform.platform(),
        "machine": platform.machine(),
        "PySide6": _version_of("PySide6") or _version_of("PySide6-Essentials"),
        "shiboken6": _version_of("shiboken6"),
        "websockets": _version_of("websockets"),
        "psutil": _version_of("psutil"),
        "chromium": _chromium(),
        "extension_manifest": _extension_version(),
    }


def _read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)


def _disk_usage(root: Path) -> dict[str, int]:
    usage: dict[str, int] = {}
    if not root.is_dir():
        return usage
    for entry in root.iterdir():
        if entry.is_file():
            usage[entry.name] = entry.stat().st_size
            continue
        total = 0
        for folder, _dirs, files in os.walk(entry):
            for name in files:
                with contextlib.suppress(OSError):  # removed while walking
                    total += os.lstat(os.path.join(folder, name)).st_size
        usage[entry.name] = total
    return usage


def state(paths: DataPaths) -> object:
    """Jobs with tasks per state, the schema version, ``PRAGMA integrity_check``, each
    job's snapshots and the data directory's disk use. Through a read-only connection: a
    diagnosis must not repair (or quarantine) the evidence."""
    summary: dict[str, Any] = {
        "data_dir": str(paths.root),
        "database": str(paths.database),
        "disk_usage_bytes": _disk_usage(paths.root),
    }
    if not paths.database.exists():
        summary["database_status"] = "missing"
    else:
        try:
            conn = _read_only(paths.database)
            try:
                summary["schema_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
                summary["integrity_check"] = [
                    r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()
                ][:20]
                jobs = []
                for job_id, name, job_state, out_dir, created in conn.execute(
                    "SELECT id, name, state, out_dir, created_at FROM jobs ORDER BY created_at"
                ).fetchall():
                    counts = dict(
                        conn.execute(
                            "SELECT state, COUNT(*) FROM tasks WHERE job_id = ? GROUP BY state",
                            (job_id,),
                        ).fetchall()
                    )
                    jobs.append(
                        {
                            "id": job_id,
                            "name": name,
                            "state": job_state,
                            "out_dir": out_dir,
                            "created_at": created,
                            "counts": counts,
                        }
                    )
                summary["jobs"] = jobs
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            summary["database_status"] = f"cannot be read: {exc}"
    snapshots: dict[str, list[dict[str, Any]]] = {}
    if paths.jobs_dir.is_dir():
        for job_dir in sorted(p for p in paths.jobs_dir.iterdir() if p.is_dir()):
            snapshots[job_dir.name] = [
                {"seq": seq, "file": path.name, "bytes": path.stat().st_size}
                for seq, path in list_snapshots(job_dir / "snapshots")
            ]
    summary["snapshots"] = snapshots
    return summary


def settings(paths: DataPaths) -> object:
    """The desktop settings file as it is on disk (also when the app would refuse it)."""
    from novelgen_desktop.desktop.settings import settings_path  # noqa: PLC0415

    path = settings_path(paths)
    if not path.exists():
        return {"file": str(path), "exists": False}
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        return {"file": str(path), "settings": json.loads(text)}
    except json.JSONDecodeError as exc:
        return {"file": str(path), "unparsable": str(exc), "text": text[:20_000]}


def memory(paths: DataPaths) -> object:
    """A fresh reading through the monitor's probe, and the memory events the governor
    logged (what is stored of its samples)."""
    from novelgen_desktop.memory.probe import own_memory, read_system  # noqa: PLC0415

    system = read_system()
    result: dict[str, Any] = {
        "read_at": time.time(),
        "system": {
            "total_bytes": system.total_bytes,
            "used_bytes": system.used_bytes,
            "percent": round(system.percent, 2),
        },
        "this_process_bytes": own_memory(),
    }
    if paths.database.exists():
        try:
            conn = _read_only(paths.database)
            try:
                result["logged"] = [
                    {"ts": ts, "level": level, "kind": kind, "message": message, "data": data}
                    for ts, level, kind, message, data in conn.execute(
                        "SELECT ts, level, kind, message, data FROM events WHERE kind LIKE "
                        "'memory%' OR kind LIKE 'cleanup%' ORDER BY id DESC LIMIT 500"
                    ).fetchall()
                ]
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            result["logged"] = f"cannot be read: {exc}"
    return result


def logs(paths: DataPaths) -> object:
    """Log files under the data directory (the end of each, size-capped) and the newest
    entries of the database's event log, which is what the app logs durably."""
    members: dict[str, bytes] = {}
    notes: list[str] = []
    found: list[Path] = []
    skip = {"output", "quarantine", "backups"}
    for folder, dirs, files in os.walk(paths.root):
        if Path(folder) == paths.root:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            if name in PAIRING_FILES:
                continue
            if re.search(r"\.log(\.\d+)?$|\.log\.txt$", name):
                found.append(Path(folder) / name)
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    budget = LOG_TOTAL_BYTES
    for path in found:
        size = path.stat().st_size
        take = min(size, LOG_TAIL_BYTES, budget)
        if take <= 0:
            notes.append(f"{path}: left out ({size} bytes; the {LOG_TOTAL_BYTES} byte cap)")
            continue
        with path.open("rb") as handle:
            handle.seek(size - take)
            data = handle.read(take)
        if take < size:
            notes.append(f"{path}: the last {take} of {size} bytes")
        members[path.relative_to(paths.root).as_posix().replace("/", "__")] = data
        budget -= take
    if paths.database.exists():
        try:
            conn = _read_only(paths.database)
            try:
                rows = conn.execute(
                    "SELECT ts, job_id, level, kind, worker_id, task_id, message, data "
                    "FROM events ORDER BY id DESC LIMIT ?",
                    (EVENT_LIMIT,),
                ).fetchall()
            finally:
                conn.close()
            keys = ("ts", "job", "level", "kind", "worker", "task", "message", "data")
            members["events.jsonl"] = "".join(
                json.dumps(dict(zip(keys, row, strict=True)), ensure_ascii=False) + "\n"
                for row in reversed(rows)
            ).encode("utf-8")
        except sqlite3.DatabaseError as exc:
            notes.append(f"the event log cannot be read: {exc}")
    if not found:
        notes.append(
            f"no *.log files under {paths.root}: the app logs to its terminal (stderr) and "
            "durably to the event log (events.jsonl)"
        )
    return Files(members, notes)


def feature_flags(paths: DataPaths) -> object:
    """The feature flags in force, where each came from, and the recent versions."""
    from novelgen_desktop.flags.service import describe_flags  # noqa: PLC0415

    return describe_flags(paths.root)


Section = tuple[str, Callable[[DataPaths], object]]
SECTIONS: list[Section] = [
    ("versions", versions),
    ("state", state),
    ("settings", settings),
    ("memory", memory),
    ("flags", feature_flags),
    ("logs", logs),
]
"""The archive's sections in order: (name, provider). Add one with one line."""


# --- the archive ---------------------------------------------------------------------------


@dataclass(slots=True)
class Archive:
    path: Path
    size: int
    members: list[str]
    redactions: dict[str, int]  # "where: what" → times
    failed: dict[str, str]  # section → error

    def redactions_summary(self) -> list[str]:
        lines = [f"redacted {n} × {what}" for what, n in sorted(self.redactions.items())]
        lines += [f"section {name} failed: {error}" for name, error in self.failed.items()]
        return lines


def _known_secrets(paths: DataPaths) -> set[str]:
    """Secrets to scrub by value wherever they appear: the pairing token."""
    found: set[str] = set()
    token = paths.root / "pairing-token"
    with contextlib.suppress(OSError, UnicodeDecodeError):  # no token yet: nothing to scrub
        found.update(token.read_text(encoding="utf-8").split())
    return found


def write_diagnosis(
    paths: DataPaths,
    out: str | os.PathLike[str] | None = None,
    *,
    sections: list[Section] | None = None,
) -> Archive:
    """Write the archive (a zip) and return what is in it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = Path(out) if out else Path.cwd() / f"novelgen-diagnose-{stamp}.zip"
    target = target.expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    redactor = Redactor(_known_secrets(paths))
    members: dict[str, bytes] = {}
    failed: dict[str, str] = {}
    notes: list[str] = []
    for name, provider in sections if sections is not None else SECTIONS:
        try:
            value = provider(paths)
        except Exception as exc:  # one broken section must not lose the rest
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        if isinstance(value, Files):
            for member, data in value.members.items():
                if Path(member).name in PAIRING_FILES:
                    continue
                members[f"{name}/{member}"] = redactor.data(data, f"{name}/{member}")
            notes += [redactor.text(n, name) for n in value.notes]
        else:
            clean = redactor.value(value, f"{name}.json")
            members[f"{name}.json"] = (
                json.dumps(clean, indent=1, ensure_ascii=False, default=str) + "\n"
            ).encode("utf-8")
    # A last pass over every member: a known secret must not be anywhere, in any form.
    for member, data in members.items():
        for secret in redactor.known:
            if secret.encode() in data:
                redactor.taken[(member, "a known secret (the pairing token)")] += 1
                members[member] = data.replace(secret.encode(), REDACTED.encode())
    redactions = {f"{where}: {what}": n for (where, what), n in redactor.taken.items()}
    readme = _readme(members, redactions, failed, notes)
    temp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", readme)
        for member, data in members.items():
            archive.writestr(member, data)
    os.replace(temp, target)
    return Archive(target, target.stat().st_size, ["README.txt", *members], redactions, failed)


def _readme(
    members: dict[str, bytes], redactions: dict[str, int], failed: dict[str, str], notes: list[str]
) -> str:
    lines = [
        f"NovelGen diagnosis, {time.strftime('%Y-%m-%d %H:%M:%S %z')}, novelgen {__version__}",
        "",
        "Contents:",
        *(f"  {name}  ({len(data)} bytes)" for name, data in members.items()),
        "",
        "Never included: the pairing token and the paired extensions "
        f"({', '.join(sorted(PAIRING_FILES))}).",
        "Redacted (the values are not in this archive): fields named like token, secret, "
        "password, cookie, key, auth or session; Cookie/Set-Cookie/Authorization headers; "
        "token-shaped strings; the pairing token wherever it appeared.",
    ]
    lines += [f"  {n} × {what}" for what, n in sorted(redactions.items())] or ["  nothing"]
    if failed:
        lines += ["", "Sections that could not be collected:"]
        lines += [f"  {name}: {error}" for name, error in failed.items()]
    if notes:
        lines += ["", "Notes:", *(f"  {n}" for n in notes)]
    return "\n".join(lines) + "\n"
