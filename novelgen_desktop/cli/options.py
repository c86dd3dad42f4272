"""Argument types and run settings shared by the ``novelgen`` commands (``run``/``resume``
and the hub's ``serve``/``sim-worker``), so that one option means one thing everywhere."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.writer import WriterSettings
from novelgen_desktop.errors import ConfigError

if TYPE_CHECKING:
    from novelgen_desktop.flags.service import FlagService
    from novelgen_desktop.memory.monitor import MonitorSettings
    from novelgen_desktop.paths import DataPaths

POLICY_KEYS = ("max_failures", "lease_seconds", "backoff_base", "min_cooldown")
"""Settings (and options of the same name) that tune ``SchedulerPolicy``."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def tab_count(text: str) -> int:
    """Tabs per browser: ChatGPT shares one quota per account, so more than 10 only adds
    memory pressure."""
    try:
        value = int(text)
    except ValueError:
        value = 0  # "abc": the same message as for 0 or 11, not "invalid tab_count value"
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"expected 1 to 10 tabs, got {text}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds ≥ 0, got {text}")
    return value


def rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate between 0 and 1, got {text}")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text}")
    return value


def synthetic_memory(text: str) -> tuple[int, int]:
    """``TOTAL_MIB,BASE_MIB`` → (total, base) in bytes."""
    try:
        total, base = (int(part) for part in text.split(","))
    except ValueError:
        total = base = -1
    if total <= 0 or not 0 <= base <= total:
        raise argparse.ArgumentTypeError(
            f"expected TOTAL_MIB,BASE_MIB with 0 ≤ BASE ≤ TOTAL (e.g. 8192,4096), got {text}"
        )
    return total * 2**20, base * 2**20


def memory_settings(
    pause: float, resume: float, critical: float, interval: float, *, governor: bool = True
) -> MonitorSettings:
    """The memory monitor's settings from the ``--memory-*`` options (ConfigError naming the
    option when they do not fit together)."""
    from novelgen_desktop.memory.governor import GovernorSettings  # noqa: PLC0415
    from novelgen_desktop.memory.monitor import MonitorSettings  # noqa: PLC0415

    options = {
        "pause_percent": "--memory-pause",
        "resume_percent": "--memory-resume",
        "critical_percent": "--memory-critical",
    }
    try:
        return MonitorSettings(
            interval=interval,
            browser_interval=max(30.0, interval),
            browser_interval_tight=max(3.0, interval),
            governor=GovernorSettings(
                pause_percent=pause, resume_percent=resume, critical_percent=critical
            ),
            enabled=governor,
        )
    except ValueError as exc:
        text = str(exc).replace("memory setting interval", "--memory-interval")
        for field, option in options.items():
            text = text.replace(f"memory setting {field}", option).replace(field, option)
        raise ConfigError(text) from exc


def run_settings(settings: dict[str, Any], *, wait_for_workers: bool = False) -> RunSettings:
    """Run settings from a job's saved settings (or options given by name)."""
    policy = SchedulerPolicy(**{k: settings[k] for k in POLICY_KEYS if k in settings})
    writer = WriterSettings()
    if "snapshot_every" in settings:
        writer = replace(writer, snapshot_every=settings["snapshot_every"])
    return RunSettings(policy=policy, writer=writer, wait_for_workers=wait_for_workers)


def add_flag_options(parser: argparse.ArgumentParser) -> None:
    """``--flag NAME=VALUE`` and ``--flags-url``: this process's feature-flag overrides."""
    group = parser.add_argument_group("feature flags (docs/flags.md)")
    group.add_argument(
        "--flag",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a feature flag for this run, e.g. --flag multi_tab=off "
        "(above every file and the remote; also NOVELGEN_FLAG_<NAME>=VALUE)",
    )
    group.add_argument(
        "--flags-url",
        metavar="URL_OR_FILE",
        help="remote flag configuration: an https:// URL or a file path, fetched every 5 "
        "minutes (default: $NOVELGEN_FLAGS_URL)",
    )


def open_process_flags(args: argparse.Namespace, paths: DataPaths) -> FlagService:
    """The live flag set for a command that runs work; ConfigError on a bad override or a
    bad local flag file, before anything starts."""
    from novelgen_desktop.flags.service import open_flags  # noqa: PLC0415

    return open_flags(
        paths.root,
        remote=getattr(args, "flags_url", None),
        cli_overrides=list(getattr(args, "flag", None) or ()),
    )
