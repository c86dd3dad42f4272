"""Settings the hub pushes to the browsers behind its workers (``configure``).

The extension finds every element of the ChatGPT page through an ordered selector table kept
as data. When the site changes, the author can give the hub a newer table
(``novelgen serve --selectors FILE``) and every connected extension uses it at once, without
a new extension release. The table is checked here, before any browser sees it, so a typo is
reported with the file, line and key instead of silently breaking every tab.

Table format (the same as ``extension/lib/selector_table.js``)::

    {"version": 8,
     "keys": {"sendButton": ["button[data-testid=\\"send-button\\"]", "#composer-submit-button"],
              "multigenPick": [{"css": "button", "text": "^Image 1$"}]}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.protocol.messages import MAX_SELECTOR_TABLE_CHARS, ChatMode, Configure

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_SELECTORS_PER_KEY = 32
MAX_SELECTOR_CHARS = 1000


def _check_entry(where: str, entry: Any) -> None:
    if isinstance(entry, str):
        if not entry.strip() or len(entry) > MAX_SELECTOR_CHARS:
            raise ConfigError(f"{where}: expected a CSS selector of 1–{MAX_SELECTOR_CHARS} chars")
        return
    if not isinstance(entry, dict):
        raise ConfigError(f'{where}: expected a CSS selector string or {{"css": …, "text": …}}')
    unknown = sorted(set(entry) - {"css", "text"})
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (expected css, text)")
    css = entry.get("css")
    if not isinstance(css, str) or not css.strip() or len(css) > MAX_SELECTOR_CHARS:
        raise ConfigError(f"{where}.css: expected a CSS selector of 1–{MAX_SELECTOR_CHARS} chars")
    text = entry.get("text")
    if text is not None:
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{where}.text: expected a non-empty regular expression")
        try:
            re.compile(text)
        except re.error as exc:
            raise ConfigError(f"{where}.text: not a regular expression: {exc}") from exc


def check_selector_table(data: Any, source: str) -> None:
    """Raise ConfigError naming ``source`` and the offending key/index if ``data`` is not a
    selector table."""
    if not isinstance(data, dict):
        raise ConfigError(f'{source}: expected a JSON object {{"version": N, "keys": {{…}}}}')
    unknown = sorted(set(data) - {"version", "keys", "comment"})
    if unknown:
        raise ConfigError(f"{source}: unknown field {unknown[0]!r} (expected version, keys)")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{source}: 'version' must be a whole number ≥ 1, got {version!r}")
    keys = data.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise ConfigError(f"{source}: 'keys' must be a non-empty object of selector lists")
    for key, entries in keys.items():
        if not _KEY.fullmatch(key):
            raise ConfigError(f"{source}: key {key!r}: expected a name like 'sendButton'")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{source}: keys.{key}: expected a non-empty list of selectors")
        if len(entries) > MAX_SELECTORS_PER_KEY:
            raise ConfigError(f"{source}: keys.{key}: at most {MAX_SELECTORS_PER_KEY} selectors")
        for index, entry in enumerate(entries):
            _check_entry(f"{source}: keys.{key}[{index}]", entry)


def load_selector_table(path: Path) -> str:
    """The table in ``path`` as compact JSON text, checked; ConfigError otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read selector table {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
        ) from exc
    check_selector_table(data, str(path))
    compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if len(compact) > MAX_SELECTOR_TABLE_CHARS:
        raise ConfigError(
            f"{path}: the table is {len(compact):,} characters; at most "
            f"{MAX_SELECTOR_TABLE_CHARS:,} fit in a configure message"
        )
    return compact


def browser_config(
    tabs: int | None, chat_mode: str | None, selectors: Path | None
) -> Configure | None:
    """The ``configure`` message for these settings, or None when there is nothing to say
    (the extensions keep their own options)."""
    if tabs is None and chat_mode is None and selectors is None:
        return None
    return Configure(
        tabs=tabs,
        chat_mode=ChatMode(chat_mode) if chat_mode is not None else None,
        selector_table=load_selector_table(selectors) if selectors is not None else None,
    )


__all__ = ["browser_config", "check_selector_table", "load_selector_table"]
