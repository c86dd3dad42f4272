"""The pairing token and the paired extensions, kept in the data directory.

The token is what lets a process or the extension drive the hub: it is created once (256
bits), stored readable by the user only (0600), shown by ``novelgen pair`` and replaced by
``novelgen pair --regenerate`` (which locks out every peer paired with the old one). The
extension ids are the ``chrome-extension://<id>`` origins the hub accepts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.protocol.auth import new_pairing_token
from novelgen_desktop.protocol.messages import TOKEN

SHIPPED_EXTENSION_ID = "jiehgpegehofiljbeepelopkoiliedji"
"""The id of NovelGen's own extension: fixed by the ``key`` in ``extension/manifest.json``,
so an unpacked install has it on every machine and the hub accepts it without a pairing
step. Other ids (a fork, a Web Store build) are paired with ``novelgen pair
--allow-extension``."""
TOKEN_FILE = "pairing-token"
EXTENSIONS_FILE = "paired-extensions.json"
_TOKEN = re.compile(TOKEN)
_EXTENSION_ID = re.compile(r"[a-p]{32}")


def token_file(paths: DataPaths) -> Path:
    return paths.root / TOKEN_FILE


def _write_private(path: Path, text: str) -> None:
    """Atomically, never readable by others even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def read_token_file(path: Path) -> str:
    """The token in ``path``; ConfigError saying what is wrong with the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise ConfigError(f"token file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read token file {path}: {exc}") from exc
    if not _TOKEN.fullmatch(text):
        raise ConfigError(
            f"token file {path}: expected one line of 22–128 characters from A–Z a–z 0–9 _ -, "
            f"got {len(text)} character(s); make a new one with: novelgen pair --regenerate"
        )
    return text


def load_or_create_token(paths: DataPaths) -> str:
    path = token_file(paths)
    if path.exists():
        return read_token_file(path)
    token = new_pairing_token()
    _write_private(path, token + "\n")
    return token


def regenerate_token(paths: DataPaths) -> str:
    token = new_pairing_token()
    _write_private(token_file(paths), token + "\n")
    return token


def check_extension_id(text: str) -> str:
    if not _EXTENSION_ID.fullmatch(text):
        raise ConfigError(
            f"extension id {text!r}: expected the 32 letters a–p that chrome://extensions shows"
        )
    return text


def paired_extensions(paths: DataPaths) -> list[str]:
    """The shipped extension's id, then those paired by hand."""
    path = paths.root / EXTENSIONS_FILE
    if not path.exists():
        return [SHIPPED_EXTENSION_ID]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ConfigError(f"{path}: expected a JSON list of extension ids")
    return [SHIPPED_EXTENSION_ID] + [
        check_extension_id(x) for x in data if x != SHIPPED_EXTENSION_ID
    ]


def pair_extension(paths: DataPaths, extension_id: str) -> list[str]:
    ids = paired_extensions(paths)
    if check_extension_id(extension_id) not in ids:
        ids.append(extension_id)
        extra = [x for x in ids if x != SHIPPED_EXTENSION_ID]
        _write_private(paths.root / EXTENSIONS_FILE, json.dumps(extra, indent=1) + "\n")
    return ids


__all__ = [
    "SHIPPED_EXTENSION_ID",
    "check_extension_id",
    "load_or_create_token",
    "pair_extension",
    "paired_extensions",
    "read_token_file",
    "regenerate_token",
    "token_file",
]
