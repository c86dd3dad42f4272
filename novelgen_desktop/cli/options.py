"""Argument types and run settings shared by the ``novelgen`` commands (``run``/``resume``
and the hub's ``serve``/``sim-worker``), so that one option means one thing everywhere."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.engine.scheduler import SchedulerPolicy
from novelgen_desktop.engine.writer import WriterSettings

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


def run_settings(settings: dict[str, Any], *, wait_for_workers: bool = False) -> RunSettings:
    """Run settings from a job's saved settings (or options given by name)."""
    policy = SchedulerPolicy(**{k: settings[k] for k in POLICY_KEYS if k in settings})
    writer = WriterSettings()
    if "snapshot_every" in settings:
        writer = replace(writer, snapshot_every=settings["snapshot_every"])
    return RunSettings(policy=policy, writer=writer, wait_for_workers=wait_for_workers)
