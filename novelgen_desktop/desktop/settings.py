"""The desktop app's own settings: what the author chose in the Settings dialog.

Plain JSON in the data directory (platformdirs by default, ``NOVELGEN_DATA_DIR`` in tests), so
a second profile or a portable install keeps its own. A damaged or hand-edited file never
stops the app: each bad field is reported (file, field, what was expected) and falls back to
its default, and the rest of the file still counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from novelgen_desktop.engine.model import DEFAULT_MAX_CHAT_TURNS, MAX_CHAT_TURNS, ChatStrategy
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.memory.governor import GovernorSettings
from novelgen_desktop.memory.monitor import MonitorSettings
from novelgen_desktop.output.naming import DEFAULT_TEMPLATE, NamingTemplate, TemplateError
from novelgen_desktop.paths import DataPaths

SETTINGS_FILE = "desktop-settings.json"
DEFAULT_HUB_PORT = 8765


@dataclass(frozen=True, slots=True)
class DesktopSettings:
    """Everything the Settings dialog edits. Field names are the JSON keys."""

    output_dir: str = ""  # "" = DATA/output
    naming_template: str = DEFAULT_TEMPLATE
    default_workers: int = 3  # tabs asked of each browser; simulated tabs in demo mode
    memory_pause_percent: float = 80.0
    memory_resume_percent: float = 60.0
    memory_critical_percent: float = 90.0
    memory_governor: bool = True  # hold dispatch back and clean up under memory pressure
    checkpoint_interval: int = 50  # completions between JSON snapshots
    hub_port: int = DEFAULT_HUB_PORT
    simulate: bool = False  # start simulated tabs inside the app (the demo, no ChatGPT)
    sim_latency: float = 1.5  # seconds per simulated image
    minimize_to_tray: bool = True  # closing the window while a job runs keeps it running
    notifications: bool = True
    # The import dialog's last choices, offered again for the next job of the same book.
    style_bible: str = ""  # path of the style bible; "" = none
    chat_strategy: str = ChatStrategy.PANEL.value
    max_chat_turns: int = DEFAULT_MAX_CHAT_TURNS

    def validate(self) -> DesktopSettings:
        """Raise ConfigError naming the first bad field; return self when all are good."""
        for name in (f.name for f in fields(self)):
            problem = _field_problem(name, getattr(self, name), self)
            if problem is not None:
                raise ConfigError(f"setting {name}: {problem}")
        return self

    def memory_monitor(self) -> MonitorSettings:
        """The memory governor's settings from these (validated) fields."""
        return MonitorSettings(
            governor=GovernorSettings(
                pause_percent=self.memory_pause_percent,
                resume_percent=self.memory_resume_percent,
                critical_percent=self.memory_critical_percent,
            ),
            enabled=self.memory_governor,
        )

    def output_root(self, paths: DataPaths) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir else paths.default_output_dir


def _field_problem(name: str, value: Any, settings: DesktopSettings) -> str | None:
    if name == "naming_template":
        try:
            NamingTemplate(value)
        except TemplateError as exc:
            return f"naming template {value!r}: {exc}"
    elif name == "default_workers" and not 1 <= value <= 10:
        return f"expected 1 to 10 tabs, got {value}"
    elif (
        name in ("memory_pause_percent", "memory_resume_percent", "memory_critical_percent")
        and not 10 <= value <= 99
    ):
        return f"expected a percentage from 10 to 99, got {value}"
    elif name == "memory_critical_percent" and value <= settings.memory_pause_percent:
        return (
            f"critical at {value:g} % must be above the pause threshold "
            f"{settings.memory_pause_percent:g} %"
        )
    elif name == "memory_resume_percent" and value >= settings.memory_pause_percent:
        return (
            f"resume at {value:g} % must be below the pause threshold "
            f"{settings.memory_pause_percent:g} % (otherwise dispatch would flap)"
        )
    elif name == "checkpoint_interval" and not 1 <= value <= 100_000:
        return f"expected 1 to 100000 completions, got {value}"
    elif name == "hub_port" and not 0 <= value <= 65535:
        return f"expected a port from 0 to 65535, got {value}"
    elif name == "sim_latency" and not 0 <= value <= 600:
        return f"expected 0 to 600 seconds, got {value}"
    elif name == "chat_strategy" and value not in {s.value for s in ChatStrategy}:
        return f"expected one of {', '.join(s.value for s in ChatStrategy)}, got {value!r}"
    elif name == "max_chat_turns" and not 1 <= value <= MAX_CHAT_TURNS:
        return f"expected 1 to {MAX_CHAT_TURNS} turns, got {value}"
    return None


_TYPES: dict[str, tuple[type, ...]] = {
    "output_dir": (str,),
    "naming_template": (str,),
    "default_workers": (int,),
    "memory_pause_percent": (int, float),
    "memory_resume_percent": (int, float),
    "memory_critical_percent": (int, float),
    "memory_governor": (bool,),
    "checkpoint_interval": (int,),
    "hub_port": (int,),
    "simulate": (bool,),
    "sim_latency": (int, float),
    "minimize_to_tray": (bool,),
    "notifications": (bool,),
    "style_bible": (str,),
    "chat_strategy": (str,),
    "max_chat_turns": (int,),
}


def settings_path(paths: DataPaths) -> Path:
    return paths.root / SETTINGS_FILE


def load_settings(paths: DataPaths) -> tuple[DesktopSettings, list[str]]:
    """The saved settings and the problems found reading them (each a full sentence with
    the file and field). A missing file is not a problem: the defaults apply."""
    path = settings_path(paths)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return DesktopSettings(), []
    except OSError as exc:
        return DesktopSettings(), [f"{path}: cannot read it ({exc.strerror}); using defaults"]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return DesktopSettings(), [
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); using the default settings"
        ]
    if not isinstance(data, dict):
        return DesktopSettings(), [f"{path}: expected a JSON object; using the default settings"]
    problems: list[str] = []
    settings = DesktopSettings()
    known = {f.name for f in fields(DesktopSettings)}
    for key, value in data.items():
        if key not in known:
            problems.append(f"{path}: field {key!r} is unknown; ignored")
            continue
        types = _TYPES[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            problems.append(
                f"{path}: field {key!r}: expected {expected}, got {json.dumps(value)}; "
                "using the default"
            )
            continue
        changes: dict[str, Any] = {key: value}
        candidate = replace(settings, **changes)
        problem = _field_problem(key, value, candidate)
        if problem is not None:
            problems.append(f"{path}: field {key!r}: {problem}; using the default")
            continue
        settings = candidate
    # Two fields valid alone may still clash (resume above pause): keep the defaults.
    if not (
        settings.memory_resume_percent
        < settings.memory_pause_percent
        < settings.memory_critical_percent
    ):
        problems.append(
            f"{path}: memory_resume_percent < memory_pause_percent < "
            "memory_critical_percent does not hold; using the default thresholds"
        )
        defaults = DesktopSettings()
        settings = replace(
            settings,
            memory_pause_percent=defaults.memory_pause_percent,
            memory_resume_percent=defaults.memory_resume_percent,
            memory_critical_percent=defaults.memory_critical_percent,
        )
    return settings, problems


def save_settings(paths: DataPaths, settings: DesktopSettings) -> Path:
    """Validate, then write atomically (a crash mid-write keeps the old file)."""
    settings.validate()
    path = settings_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(asdict(settings), indent=2) + "\n", encoding="utf-8")
    with temp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)
    return path


__all__ = [
    "DEFAULT_HUB_PORT",
    "SETTINGS_FILE",
    "DesktopSettings",
    "load_settings",
    "save_settings",
    "settings_path",
]
