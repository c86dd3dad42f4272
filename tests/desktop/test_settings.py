"""The desktop settings file: round trip, and every kind of bad content reported precisely."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from novelgen_desktop.desktop.settings import (
    DesktopSettings,
    load_settings,
    save_settings,
    settings_path,
)
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.paths import DataPaths, resolve_data_dir


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return resolve_data_dir(tmp_path / "data").ensure()


def test_round_trip_and_defaults_when_missing(paths: DataPaths) -> None:
    assert load_settings(paths) == (DesktopSettings(), [])
    chosen = replace(DesktopSettings(), default_workers=7, output_dir="/tmp/x", hub_port=9000)
    save_settings(paths, chosen)
    assert load_settings(paths) == (chosen, [])


def test_save_refuses_a_bad_value_and_keeps_the_old_file(paths: DataPaths) -> None:
    save_settings(paths, replace(DesktopSettings(), default_workers=4))
    with pytest.raises(ConfigError, match="default_workers: expected 1 to 10 tabs, got 11"):
        save_settings(paths, replace(DesktopSettings(), default_workers=11))
    with pytest.raises(ConfigError, match="must be below the pause threshold"):
        save_settings(paths, replace(DesktopSettings(), memory_resume_percent=85.0))
    assert load_settings(paths)[0].default_workers == 4


def test_each_bad_field_is_named_and_the_good_ones_still_count(paths: DataPaths) -> None:
    settings_path(paths).write_text(
        json.dumps(
            {
                "default_workers": "three",
                "hub_port": 70000,
                "naming_template": "{nope}",
                "checkpoint_interval": 25,
                "colour": "blue",
            }
        ),
        encoding="utf-8",
    )
    settings, problems = load_settings(paths)
    assert settings.checkpoint_interval == 25
    assert settings.default_workers == DesktopSettings().default_workers
    text = "\n".join(problems)
    assert "field 'default_workers': expected int, got \"three\"" in text
    assert "field 'hub_port': expected a port from 0 to 65535, got 70000" in text
    assert "field 'naming_template'" in text
    assert "field 'colour' is unknown" in text
    assert all(str(settings_path(paths)) in p for p in problems)


def test_broken_json_names_the_line_and_falls_back(paths: DataPaths) -> None:
    settings_path(paths).write_text('{\n  "hub_port": 1,\n  oops\n}', encoding="utf-8")
    settings, problems = load_settings(paths)
    assert settings == DesktopSettings()
    assert problems and f"{settings_path(paths)}:3: not valid JSON" in problems[0]


def test_a_bool_is_not_taken_for_a_number(paths: DataPaths) -> None:
    settings_path(paths).write_text('{"default_workers": true}', encoding="utf-8")
    settings, problems = load_settings(paths)
    assert settings.default_workers == DesktopSettings().default_workers
    assert "expected int, got true" in problems[0]


def test_the_remembered_chat_choices_are_checked(paths: DataPaths) -> None:
    settings_path(paths).write_text(
        json.dumps({"chat_strategy": "scene", "max_chat_turns": 0, "style_bible": "/b.toml"}),
        encoding="utf-8",
    )
    settings, problems = load_settings(paths)
    assert settings.style_bible == "/b.toml"
    assert (settings.chat_strategy, settings.max_chat_turns) == ("panel", 12)
    text = "\n".join(problems)
    assert "field 'chat_strategy': expected one of panel, page, chapter, got 'scene'" in text
    assert "field 'max_chat_turns': expected 1 to 200 turns, got 0" in text
