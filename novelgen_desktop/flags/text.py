"""Flag settings in words and as JSON, the same in the terminal (``novelgen flags``), the
window and a ``novelgen diagnose`` archive."""

from __future__ import annotations

from typing import Any

from novelgen_desktop.flags.document import FlagSetting
from novelgen_desktop.flags.flagset import FlagSet
from novelgen_desktop.flags.registry import FLAGS


def value_text(value: object) -> str:
    """``on``/``off`` for a switch, the value itself otherwise."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def setting_text(setting: FlagSetting) -> str:
    """``off``, or ``experiment: control=off (50 %), fresh=on (50 %)``."""
    if not setting.is_experiment:
        return value_text(setting.value)
    total = sum(v.weight for v in setting.variants)
    parts = [
        f"{v.name}={value_text(v.value)} ({100 * v.weight / total:.0f} %)" for v in setting.variants
    ]
    return "experiment: " + ", ".join(parts)


def differences(before: FlagSet, after: FlagSet) -> str:
    """``multi_tab off → on; …``: what changed value between two sets."""
    changed = [
        f"{flag.name} {setting_text(before.setting(flag.name))} → "
        f"{setting_text(after.setting(flag.name))}"
        for flag in FLAGS
        if before.setting(flag.name) != after.setting(flag.name)
    ]
    return "; ".join(changed) if changed else "no flag changed value"


def flagset_json(current: FlagSet, problems: list[str], *, details: bool = True) -> dict[str, Any]:
    """The set in force: each flag's setting and where it came from (``details``: also its
    definition, for ``novelgen flags show --json``)."""
    flags: dict[str, Any] = {}
    for flag in FLAGS:
        entry: dict[str, Any] = {
            "setting": current.setting(flag.name).to_json(),
            "source": current.source(flag.name),
        }
        if details:
            entry |= {
                "default": flag.default,
                "owner": flag.owner,
                "unit": flag.unit.value,
                "kill_switch": flag.kill_switch,
                "description": flag.description,
            }
        flags[flag.name] = entry
    return {
        "version": current.version,
        "pinned_to": current.pinned_to,
        "problems": list(problems),
        "flags": flags,
    }


__all__ = ["differences", "flagset_json", "setting_text", "value_text"]
