"""``novelgen recovery …`` commands (being written)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from novelgen_desktop.paths import DataPaths


def add_recovery_commands(commands: Any) -> None:
    """Register this module's sub-commands on the top-level ``commands`` subparsers."""


COMMANDS: dict[str, Callable[[argparse.Namespace, DataPaths], int]] = {}
