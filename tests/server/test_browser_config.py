"""``novelgen serve --selectors FILE``: the selector table is checked before any browser sees
it, and every mistake is reported with the file and line (bad JSON) or the key and index (a
bad entry); a good table travels as compact JSON text in ``configure``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.server.browser_config import (
    MAX_SELECTOR_CHARS,
    MAX_SELECTORS_PER_KEY,
    browser_config,
    check_selector_table,
    load_selector_table,
)

GOOD: dict[str, Any] = {
    "version": 8,
    "comment": "ChatGPT moved the send button — März 2026",
    "keys": {
        "sendButton": ['button[data-testid="send-button"]', "#composer-submit-button"],
        "multigenPick": [{"css": "button", "text": "^Image 1$"}, {"css": "[role=button]"}],
        "new_chat2": ["a[href='/']"],
    },
}


def write(tmp_path: Path, text: str, name: str = "selectors.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def table(**keys: Any) -> dict[str, Any]:
    return {"version": 3, "keys": keys}


def refused(tmp_path: Path, data: Any) -> str:
    """The message for ``data`` written (pretty-printed) to a file."""
    path = write(tmp_path, json.dumps(data, indent=2))
    with pytest.raises(ConfigError) as info:
        load_selector_table(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# -- a good table -----------------------------------------------------------------------------


def test_a_valid_table_comes_back_as_compact_equal_json(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(GOOD, indent=4, ensure_ascii=True) + "\n\n")
    text = load_selector_table(path)
    assert json.loads(text) == GOOD
    assert text == json.dumps(GOOD, ensure_ascii=False, separators=(",", ":"))
    assert "\n" not in text and ", " not in text.replace(GOOD["comment"], "")
    assert "März" in text, "non-ASCII stays as it is (the limit counts characters)"
    assert len(text) < len(path.read_text(encoding="utf-8"))


def test_browser_config_builds_a_configure_message_that_survives_the_wire(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, json.dumps(GOOD, indent=2))
    config = browser_config(3, "per_sequence", path)
    assert config == m.Configure(
        tabs=3, chat_mode=m.ChatMode.PER_SEQUENCE, selector_table=load_selector_table(path)
    )
    assert m.decode(m.encode(config), sender=m.Role.HUB) == config
    assert browser_config(None, None, None) is None, "nothing to say: no configure at all"
    assert browser_config(1, None, None) == m.Configure(tabs=1)
    assert browser_config(None, "per_task", None) == m.Configure(chat_mode=m.ChatMode.PER_TASK)


def test_configure_bounds_and_direction_on_the_wire() -> None:
    base = {"v": 1, "type": "configure"}
    for tabs in (0, 11, "3", 2.5, True):
        with pytest.raises(m.ProtocolError) as info:
            m.decode(json.dumps({**base, "tabs": tabs}), sender=m.Role.HUB)
        assert info.value.field == "tabs", (tabs, info.value)
    with pytest.raises(m.ProtocolError) as info:
        m.decode(json.dumps({**base, "chat_mode": "per_chapter"}), sender=m.Role.HUB)
    assert info.value.field == "chat_mode"
    too_long = "x" * (m.MAX_SELECTOR_TABLE_CHARS + 1)
    with pytest.raises(m.ProtocolError):
        m.decode(json.dumps({**base, "selector_table": too_long}), sender=m.Role.HUB)
    with pytest.raises(m.ProtocolError) as info:  # a worker may not send it
        m.decode(json.dumps({**base, "tabs": 2}), sender=m.Role.WORKER)
    assert info.value.code == "forbidden_role"
    assert m.decode(json.dumps(base), sender=m.Role.HUB) == m.Configure()


# -- unreadable, not JSON ---------------------------------------------------------------------


def test_missing_and_undecodable_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ConfigError, match=r"cannot read selector table .*nowhere\.json"):
        load_selector_table(missing)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"version": 2, "keys": {"a": ["März"]}}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"cannot read selector table .*latin1\.json"):
        load_selector_table(latin1)
    with pytest.raises(ConfigError, match="cannot read selector table"):
        load_selector_table(tmp_path)  # a directory


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('{\n  "version": 2,\n  "keys": {"a": ["x",]}\n}\n', 3, 22),  # trailing comma
        ('{\n  "version": 2\n  "keys": {}\n}', 3, 3),  # missing comma
        ("{'version': 2}", 1, 2),  # single quotes
        ("", 1, 1),  # empty file
        ('{"version": 2, "keys": {"a": ["x"]}}\n{}', 2, 1),  # two documents
    ],
)
def test_bad_json_names_the_file_line_and_column(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_selector_table(path)
    assert str(info.value).startswith(f"{path}, line {line}, column {column}: not valid JSON")


# -- the table's shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([GOOD], "expected a JSON object"),
        ("keys", "expected a JSON object"),
        ({**GOOD, "Version": 9}, "unknown field 'Version'"),
        ({"keys": GOOD["keys"]}, "'version' must be a whole number ≥ 1, got None"),
        ({**GOOD, "version": 0}, "'version' must be a whole number ≥ 1, got 0"),
        ({**GOOD, "version": "9"}, "'version' must be a whole number ≥ 1, got '9'"),
        ({**GOOD, "version": 9.0}, "'version' must be a whole number ≥ 1, got 9.0"),
        ({**GOOD, "version": True}, "'version' must be a whole number ≥ 1, got True"),
        ({"version": 2}, "'keys' must be a non-empty object"),
        ({"version": 2, "keys": {}}, "'keys' must be a non-empty object"),
        ({"version": 2, "keys": [["#send"]]}, "'keys' must be a non-empty object"),
    ],
)
def test_bad_top_level_is_named(tmp_path: Path, data: Any, expected: str) -> None:
    assert expected in refused(tmp_path, data)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"send-button": ["#send"]}, "key 'send-button': expected a name like 'sendButton'"),
        ({"2nd": ["#send"]}, "key '2nd'"),
        ({"": ["#send"]}, "key ''"),
        ({"k" * 65: ["#send"]}, f"key '{'k' * 65}'"),
        ({"ok": ["#a"], "sendButton": "#send"}, "keys.sendButton: expected a non-empty list"),
        ({"sendButton": []}, "keys.sendButton: expected a non-empty list"),
        (
            {"sendButton": ["#s"] * (MAX_SELECTORS_PER_KEY + 1)},
            f"keys.sendButton: at most {MAX_SELECTORS_PER_KEY} selectors",
        ),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, keys: dict[str, Any], expected: str) -> None:
    assert expected in refused(tmp_path, table(**keys))


@pytest.mark.parametrize(
    ("entry", "where", "expected"),
    [
        (7, "keys.sendButton[2]", "expected a CSS selector string or"),
        (None, "keys.sendButton[2]", "expected a CSS selector string or"),
        (["#x"], "keys.sendButton[2]", "expected a CSS selector string or"),
        ("", "keys.sendButton[2]", "expected a CSS selector of 1–1000 chars"),
        ("   ", "keys.sendButton[2]", "expected a CSS selector of 1–1000 chars"),
        ("a" * (MAX_SELECTOR_CHARS + 1), "keys.sendButton[2]", "1–1000 chars"),
        ({"css": "button", "txt": "^Send$"}, "keys.sendButton[2]", "unknown field 'txt'"),
        ({"text": "^Send$"}, "keys.sendButton[2].css", "expected a CSS selector"),
        ({"css": 5}, "keys.sendButton[2].css", "expected a CSS selector"),
        ({"css": " "}, "keys.sendButton[2].css", "expected a CSS selector"),
        ({"css": "b", "text": ""}, "keys.sendButton[2].text", "non-empty regular expression"),
        ({"css": "b", "text": 3}, "keys.sendButton[2].text", "non-empty regular expression"),
        ({"css": "b", "text": "^(Send$"}, "keys.sendButton[2].text", "not a regular expression"),
    ],
)
def test_bad_entries_are_named_by_key_and_index(
    tmp_path: Path, entry: Any, where: str, expected: str
) -> None:
    data = table(newChat=["a"], sendButton=["#ok", {"css": "button", "text": "Send"}, entry])
    message = refused(tmp_path, data)
    assert f": {where}: " in message, message
    assert expected in message, message


def test_the_longest_selector_is_accepted(tmp_path: Path) -> None:
    data = table(sendButton=["a" * MAX_SELECTOR_CHARS, {"css": "b" * MAX_SELECTOR_CHARS}])
    assert json.loads(load_selector_table(write(tmp_path, json.dumps(data)))) == data


def test_check_selector_table_names_its_source() -> None:
    check_selector_table(GOOD, "pushed table")  # no error
    with pytest.raises(ConfigError, match=r"^pushed table: keys\.a\[1\]: "):
        check_selector_table(table(a=["#x", 1]), "pushed table")


# -- size -------------------------------------------------------------------------------------


def _table_of_compact_size(size: int) -> dict[str, Any]:
    """A valid table whose compact JSON text is exactly ``size`` characters."""
    data: dict[str, Any] = {"version": 2, "comment": "", "keys": {}}
    index = 0
    while len(json.dumps(data, separators=(",", ":"))) < size - 1200:
        data["keys"][f"key{index}"] = ["x" * 900]
        index += 1
    data["comment"] = "c" * (size - len(json.dumps(data, separators=(",", ":"))))
    assert len(json.dumps(data, separators=(",", ":"))) == size
    return data


def test_size_limit_counts_the_compact_text(tmp_path: Path) -> None:
    limit = m.MAX_SELECTOR_TABLE_CHARS
    assert limit == 64 * 1024
    at_limit = _table_of_compact_size(limit)
    path = write(tmp_path, json.dumps(at_limit, indent=8))  # the file itself is larger
    assert len(path.read_text(encoding="utf-8")) > limit
    text = load_selector_table(path)
    assert len(text) == limit
    config = browser_config(None, None, path)
    assert config is not None
    assert m.decode(m.encode(config), sender=m.Role.HUB) == config  # still fits a frame

    over = _table_of_compact_size(limit + 1)
    message = refused(tmp_path, over)
    assert "65,537 characters" in message and "at most 65,536" in message
