"""``novelgen flags …``: see, change, roll back and compare feature flags (docs/flags.md).

Changes are written to the data folder's flag files, which every running NovelGen process
(the window, ``novelgen serve``, a ``novelgen run``) follows within a fraction of a second:
nothing has to be restarted, and a running job goes on with the new set at its next attempt.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from novelgen_desktop.cli import options
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import (
    FlagSetting,
    parse_document_text,
    parse_text_value,
    parse_variant_spec,
)
from novelgen_desktop.flags.history import FlagVersion
from novelgen_desktop.flags.registry import FLAGS, REGISTRY
from novelgen_desktop.flags.report import experiment_report, format_report
from novelgen_desktop.flags.service import FlagService, open_flags
from novelgen_desktop.flags.text import differences as _differences
from novelgen_desktop.flags.text import flagset_json
from novelgen_desktop.flags.text import setting_text as _setting_text
from novelgen_desktop.paths import DataPaths

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def add_flags_commands(commands: Any) -> None:
    """Register ``novelgen flags`` and its sub-commands."""
    flags = commands.add_parser(
        "flags",
        help="feature flags: show, set, roll back, compare experiment variants",
        description="Kill switches and experiments for NovelGen's subsystems. Running "
        "processes follow every change within a second, without a restart. See docs/flags.md.",
    )
    flags.add_argument("--flags-url", metavar="URL_OR_FILE", help="remote flag configuration")
    actions = flags.add_subparsers(dest="flags_command", metavar="ACTION")
    show = actions.add_parser("show", help="the flags in force, where each value comes from")
    show.add_argument("--json", action="store_true")
    change = actions.add_parser(
        "set",
        help="set a flag in the local flag file (ends a rollback)",
        description="Examples: novelgen flags set multi_tab off; novelgen flags set "
        "fresh_chat --variant control=off:50 --variant fresh=on:50",
    )
    change.add_argument("name", choices=sorted(REGISTRY), metavar="NAME")
    change.add_argument("value", nargs="?", help="on/off, a number or a choice")
    change.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE:WEIGHT",
        help="an experiment variant (give two or more instead of a value)",
    )
    change.add_argument("--salt", help="experiment salt (default: the flag's name)")
    unset = actions.add_parser("unset", help="remove a flag from the local file")
    unset.add_argument("name", choices=sorted(REGISTRY), metavar="NAME")
    rollback = actions.add_parser(
        "rollback", help="restore the previous flag set now (running jobs follow at once)"
    )
    rollback.add_argument("--to", type=int, metavar="VERSION", help="a given version instead")
    actions.add_parser("release", help="end a rollback: the files and the remote decide again")
    history = actions.add_parser("history", help="every version of the flag set")
    history.add_argument("--limit", type=options.positive_int, default=20)
    history.add_argument("--json", action="store_true")
    actions.add_parser("pull", help="fetch the remote configuration now")
    actions.add_parser(
        "forget-remote", help="stop following a remote: delete its last known good copy"
    )
    check = actions.add_parser("check", help="validate a flag file (before publishing it)")
    check.add_argument("file")
    report = actions.add_parser("report", help="compare experiment variants on a job's attempts")
    report.add_argument("job", nargs="?", help="job id or unique prefix (default: the latest)")
    report.add_argument("--json", action="store_true")


def _show(service: FlagService, as_json: bool) -> int:
    current = service.current
    if as_json:
        print(json.dumps(flagset_json(current, service.problems), indent=2))
        return EXIT_OK
    pinned = f", rolled back to v{current.pinned_to}" if current.pinned_to else ""
    print(f"feature flags v{current.version}{pinned}")
    for flag in FLAGS:
        setting = current.setting(flag.name)
        kill = " (kill switch)" if flag.kill_switch else ""
        print(f"  {flag.name:<18} {_setting_text(setting):<28} {current.source(flag.name)}{kill}")
    for problem in service.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return EXIT_OK


def _set(service: FlagService, args: argparse.Namespace) -> int:
    flag = REGISTRY[args.name]
    if args.variant and args.value is not None:
        raise ConfigError("give either a VALUE or --variant options, not both")
    try:
        if args.variant:
            setting = parse_variant_spec(flag, args.variant)
            if args.salt:
                setting = FlagSetting(variants=setting.variants, salt=args.salt)
        elif args.value is not None:
            setting = FlagSetting(value=parse_text_value(flag, args.value))
        else:
            raise ConfigError(f"flags set {flag.name}: give a value ({flag.expected()})")
    except ValueError as exc:
        raise ConfigError(f"flags set {flag.name}: {exc}") from exc
    before = service.current
    after = service.set_local(flag.name, setting)
    print(f"feature flags v{after.version}: {_differences(before, after)}")
    if after.source(flag.name) != "local file":
        print(
            f"note: {flag.name} is decided by {after.source(flag.name)}, above the local file",
            file=sys.stderr,
        )
    return EXIT_OK


def _rollback(service: FlagService, to: int | None) -> int:
    before = service.current
    started = time.perf_counter()
    version = service.rollback(to)
    elapsed = time.perf_counter() - started
    print(
        f"feature flags v{version.version}: {version.reason} "
        f"({_differences(before, service.current)}); recorded in {elapsed * 1000:.0f} ms, "
        "running processes follow within a second. `novelgen flags release` ends it."
    )
    return EXIT_OK


def _history_row(version: FlagVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "parent": version.parent,
        "created_at": version.created_at,
        "reason": version.reason,
        "flags": {name: setting.to_json() for name, setting in sorted(version.settings.items())},
    }


def _history(service: FlagService, limit: int, as_json: bool) -> int:
    versions = service.versions(limit)
    if as_json:
        print(json.dumps([_history_row(v) for v in versions], indent=2))
        return EXIT_OK
    pinned = service.current.pinned_to
    for version in versions:
        when = datetime.fromtimestamp(version.created_at).strftime("%Y-%m-%d %H:%M:%S")
        off = [
            name
            for name, setting in sorted(version.settings.items())
            if setting != FlagSetting(value=REGISTRY[name].default)
        ]
        marks = " (current)" if version.version == service.current.version else ""
        marks += " (restored)" if version.version == pinned else ""
        changed = ", ".join(f"{n}={_setting_text(version.settings[n])}" for n in off) or "defaults"
        print(f"v{version.version:<4} {when}  {version.reason}{marks}\n        {changed}")
    return EXIT_OK


def _check(path_text: str) -> int:
    from pathlib import Path  # noqa: PLC0415

    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    layer = parse_document_text(text, str(path))
    for name, setting in sorted(layer.items()):
        print(f"  {name:<18} {_setting_text(setting)}")
    print(f"{path}: valid, {len(layer)} flag(s)")
    return EXIT_OK


def _report(paths: DataPaths, args: argparse.Namespace) -> int:
    from novelgen_desktop.store.database import Store  # noqa: PLC0415

    if not paths.database.exists():
        raise ConfigError(f"no jobs yet in {paths.root}")
    store = Store(paths.database)
    try:
        job = store.find_job(args.job) if args.job else store.latest_job()
        if job is None:
            raise ConfigError(f"no jobs yet in {paths.root}")
        report = experiment_report(store.execute("SELECT 1").connection, job.id)
    finally:
        store.close()
    print(json.dumps(report.to_json(), indent=2) if args.json else format_report(report))
    return EXIT_OK


def cmd_flags(args: argparse.Namespace, paths: DataPaths) -> int:
    command = args.flags_command or "show"
    if command == "check":
        return _check(args.file)
    if command == "report":
        return _report(paths, args)
    service = open_flags(paths.root, remote=args.flags_url, strict=False)
    try:
        match command:
            case "show":
                return _show(service, getattr(args, "json", False))
            case "set":
                return _set(service, args)
            case "unset":
                before = service.current
                after = service.set_local(args.name, None)
                print(f"feature flags v{after.version}: {_differences(before, after)}")
                return EXIT_OK
            case "rollback":
                return _rollback(service, args.to)
            case "release":
                if not service.release():
                    print("no rollback in force")
                    return EXIT_OK
                print(f"feature flags v{service.current.version}: the files and remote decide")
                return EXIT_OK
            case "forget-remote":
                if not service.forget_remote():
                    print("no remote configuration was being followed")
                    return EXIT_OK
                print(f"feature flags v{service.current.version}: remote configuration forgotten")
                return EXIT_OK
            case "history":
                return _history(service, args.limit, args.json)
            case "pull":
                if service.remote is None:
                    raise ConfigError(
                        "no remote configuration: give --flags-url or set $NOVELGEN_FLAGS_URL"
                    )
                result = service.remote.fetch()
                service.apply_remote(result)
                print(f"{result.status}: {result.reason}")
                return EXIT_PROBLEM if result.status in ("rejected", "unreachable") else EXIT_OK
        raise ConfigError(f"unknown flags action {command!r}")
    finally:
        service.close()


COMMANDS: dict[str, Callable[[argparse.Namespace, DataPaths], int]] = {"flags": cmd_flags}
