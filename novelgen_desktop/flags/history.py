"""Every version of the shared flag set, and the rollback pin, in one small SQLite file.

SQLite rather than a JSON file because several processes share it (the window, ``novelgen
serve``, a ``novelgen flags rollback`` typed in a terminal): a version is recorded inside
``BEGIN IMMEDIATE`` only if its content differs from the latest, so two processes noticing the
same change record it once, and ``PRAGMA data_version`` tells a running process in
microseconds that another one rolled back — the poll that makes a rollback live in < 1 s.

Each version names its ``parent``: the set it replaced. A rollback restores the current
version's parent and records it as a new version whose parent is the restored one's parent,
so rolling back twice goes two steps back instead of flipping between two sets.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import FlagLayer, FlagSetting, Variant
from novelgen_desktop.flags.flagset import settings_digest
from novelgen_desktop.flags.registry import REGISTRY

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    version    INTEGER PRIMARY KEY,
    parent     INTEGER,
    created_at REAL NOT NULL,
    digest     TEXT NOT NULL,
    settings   TEXT NOT NULL,
    sources    TEXT NOT NULL,
    reason     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pin (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    version   INTEGER NOT NULL,
    pinned_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class FlagVersion:
    version: int
    parent: int | None
    created_at: float
    digest: str
    settings: FlagLayer
    sources: dict[str, str]
    reason: str


def _setting_from_json(raw: Any) -> FlagSetting:
    if isinstance(raw, dict):
        return FlagSetting(
            variants=tuple(
                Variant(v["name"], float(v["weight"]), v["value"]) for v in raw["variants"]
            ),
            salt=raw.get("salt"),
        )
    return FlagSetting(value=raw)


def _decode_settings(text: str) -> FlagLayer:
    # Only flags this version knows: a history written by a newer NovelGen may name more.
    return {k: _setting_from_json(v) for k, v in json.loads(text).items() if k in REGISTRY}


class FlagHistory:
    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.clock = clock
        try:
            self._conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open the flag history {path}: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    def data_version(self) -> int:
        """Changes when another connection commits (a rollback from another process)."""
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def _row(self, row: tuple[Any, ...] | None) -> FlagVersion | None:
        if row is None:
            return None
        version, parent, created_at, digest, settings, sources, reason = row
        return FlagVersion(
            version,
            parent,
            created_at,
            digest,
            _decode_settings(settings),
            json.loads(sources),
            reason,
        )

    _COLUMNS = "version, parent, created_at, digest, settings, sources, reason"

    def latest(self) -> FlagVersion | None:
        return self._row(
            self._conn.execute(
                f"SELECT {self._COLUMNS} FROM versions ORDER BY version DESC LIMIT 1"
            ).fetchone()
        )

    def get(self, version: int) -> FlagVersion | None:
        return self._row(
            self._conn.execute(
                f"SELECT {self._COLUMNS} FROM versions WHERE version = ?", (version,)
            ).fetchone()
        )

    def versions(self, limit: int = 50) -> list[FlagVersion]:
        rows = self._conn.execute(
            f"SELECT {self._COLUMNS} FROM versions ORDER BY version DESC LIMIT ?", (limit,)
        ).fetchall()
        return [v for v in map(self._row, rows) if v is not None]

    def pinned(self) -> FlagVersion | None:
        """The version a rollback restored, while it is in force."""
        row = self._conn.execute("SELECT version FROM pin WHERE id = 1").fetchone()
        return None if row is None else self.get(int(row[0]))

    def _insert(
        self,
        settings: Mapping[str, FlagSetting],
        sources: Mapping[str, str],
        reason: str,
        parent: int | None,
    ) -> FlagVersion:
        encoded = json.dumps({k: settings[k].to_json() for k in sorted(settings)})
        cursor = self._conn.execute(
            "INSERT INTO versions (parent, created_at, digest, settings, sources, reason) "
            "VALUES (?,?,?,?,?,?)",
            (
                parent,
                self.clock(),
                settings_digest(settings),
                encoded,
                json.dumps(dict(sources)),
                reason,
            ),
        )
        version = self.get(int(cursor.lastrowid or 0))
        assert version is not None
        return version

    def record(
        self, settings: Mapping[str, FlagSetting], sources: Mapping[str, str], reason: str
    ) -> FlagVersion:
        """The version for ``settings``: the latest if it has the same content, else a new one."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            latest = self.latest()
            if latest is not None and latest.digest == settings_digest(settings):
                self._conn.execute("COMMIT")
                return latest
            version = self._insert(
                settings, sources, reason, None if latest is None else latest.version
            )
            self._conn.execute("COMMIT")
            return version
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def rollback(self, to: int | None = None) -> FlagVersion:
        """Pin the set to version ``to`` (default: the current version's parent) and record
        that as the newest version. ConfigError when there is nothing to go back to."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            latest = self.latest()
            if latest is None:
                raise ConfigError("no flag set has been recorded yet: nothing to roll back")
            target_id = latest.parent if to is None else to
            if target_id is None:
                copy = f" ({latest.reason})" if latest.reason.startswith("rollback to") else ""
                raise ConfigError(
                    f"nothing to roll back to: the set in force, v{latest.version}{copy}, is "
                    "the first recorded flag set"
                )
            target = self.get(target_id)
            if target is None:
                raise ConfigError(
                    f"there is no flag set version {target_id} (versions 1–{latest.version})"
                )
            self._conn.execute(
                "INSERT OR REPLACE INTO pin (id, version, pinned_at) VALUES (1, ?, ?)",
                (target.version, self.clock()),
            )
            version = self._insert(
                target.settings,
                target.sources,  # where each value first came from (set_local needs it)
                f"rollback to v{target.version}",
                target.parent,
            )
            self._conn.execute("COMMIT")
            return version
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def release(self) -> bool:
        """End a rollback: the layers (local file, remote) decide again. False if none."""
        cursor = self._conn.execute("DELETE FROM pin WHERE id = 1")
        return cursor.rowcount > 0


__all__ = ["FlagHistory", "FlagVersion"]
