"""``novelgen recover`` and ``novelgen diagnose``: the manual recovery and bug-report tools.

Both keep the command line thin: the work is in :mod:`novelgen_desktop.engine.restore` and
:mod:`novelgen_desktop.support.diagnose`, which return what they found; this prints it.
Exit codes follow ``cli.main``: 0 done (or a dry run shown), 1 recovered but ``verify`` still
finds more than the stray files, 2 refused (nothing changed), 3 the store cannot be used.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from novelgen_desktop.engine.restore import RestorePlan, RestoreResult, recover_job
from novelgen_desktop.paths import DataPaths

EXIT_OK, EXIT_INCOMPLETE = 0, 1


def add_recovery_commands(commands: Any) -> None:
    """Register this module's sub-commands on the top-level ``commands`` subparsers."""
    recover = commands.add_parser(
        "recover",
        help="rebuild a job from a snapshot + its manifest + its files (dry run unless --apply)",
        description="Shows what rebuilding JOB from a snapshot would do: the snapshot used, "
        "tasks per state, done tasks the manifest adds, images missing or changed (drawn "
        "again), stray and temp files, unreadable snapshots, and the database now against "
        "afterwards. Nothing changes without --apply, which backs the database up first, "
        "replaces the job's rows in one transaction and verifies the result. Stray files "
        "are left in place and named (novelgen verify keeps naming them).",
    )
    recover.add_argument("job", help="job id or unique prefix (found by its snapshots when "
                         "the database is gone)")  # fmt: skip
    recover.add_argument(
        "--from-snapshot",
        nargs="?",
        const=-1,
        type=int,
        metavar="N",
        help="snapshot number N as in snapshot-00000N.json (default: the newest readable)",
    )
    recover.add_argument(
        "--apply", action="store_true", help="carry the plan out (default: only show it)"
    )
    recover.add_argument("--json", action="store_true", help="the report as JSON")

    diagnose = commands.add_parser(
        "diagnose",
        help="write one archive for a bug report (logs, state, memory, versions; no secrets)",
    )
    diagnose.add_argument("--out", metavar="FILE", help="archive path (.zip; default: ./…)")


def _changes(title: str, items: list[Any], limit: int = 20) -> list[str]:
    if not items:
        return []
    lines = [f"  {title}: {len(items)}"]
    for item in items[:limit]:
        text = item if isinstance(item, str) else (
            f"task {item.task_id} (#{item.seq}) {item.path or ''}: {item.detail}"
        )  # fmt: skip
        lines.append(f"    {text}")
    if len(items) > limit:
        lines.append(f"    … and {len(items) - limit} more (--json lists all)")
    return lines


def _format_counts(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "nothing"
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no tasks"


def format_plan(plan: RestorePlan) -> list[str]:
    lines = [
        f"job {plan.job_id}: restore from snapshot {plan.snapshot_seq} ({plan.snapshot_path})",
        f"  output folder: {plan.out_dir}",
        f"  the snapshot says: {_format_counts(plan.snapshot_counts)}",
    ]
    if plan.leases_requeued:
        lines.append(
            f"  {plan.leases_requeued} task(s) leased in the snapshot go back to the queue"
        )
    lines += _changes("done tasks the manifest adds", plan.from_manifest)
    lines += _changes("images adopted from disk", plan.from_disk)
    lines += _changes("missing images (drawn again)", plan.missing)
    lines += _changes("changed images (set aside, drawn again)", plan.changed)
    lines += _changes("manifest rows restored", plan.manifest_rows_restored)
    lines += _changes("stray files (left in place)", plan.stray)
    lines += _changes("temp files (removed)", plan.temp)
    lines += _changes("unreadable snapshots", [str(s.reason) for s in plan.unreadable])
    lines += _changes("notes", plan.notes)
    db = plan.database
    now = (
        f"{plan.current_state}, {_format_counts(plan.current_counts)}"
        if plan.current_counts is not None
        else {"missing": "no database file", "job missing": "the job is not in it"}.get(db, db)
    )
    lines.append(f"  the database now:   {now}")
    lines.append(f"  the database after: {plan.state}, {_format_counts(plan.counts)}")
    return lines


def format_result(result: RestoreResult) -> list[str]:
    lines = []
    if result.store_recovery:
        lines.append(f"  store: {result.store_recovery}")
    lines.append(
        f"  database backed up to {result.backup}"
        if result.backup
        else "  there was no database file to back up"
    )
    for moved in result.set_aside:
        lines.append(f"  changed image kept as {moved}")
    if result.temp_removed:
        lines.append(f"  {result.temp_removed} temp file(s) removed")
    assert result.verify is not None
    if result.ok:
        stray = len(result.plan.stray)
        extra = f" (except the {stray} stray file(s) named above)" if stray else ""
        lines.append(f"  restored; novelgen verify agrees{extra}")
        if result.plan.counts.get("queued"):
            lines.append(f"  continue with: novelgen resume {result.plan.job_id}")
    else:
        lines.append("  restored, but novelgen verify still finds:")
        lines += [f"    {finding}" for finding in result.remaining]
    return lines


def cmd_recover(args: argparse.Namespace, paths: DataPaths) -> int:
    seq = None if args.from_snapshot in (None, -1) else args.from_snapshot
    plan, result = recover_job(paths, args.job, seq, apply=args.apply)
    if args.json:
        report: dict[str, Any] = {"plan": plan.to_json(), "applied": result is not None}
        if result is not None:
            assert result.verify is not None
            report.update(
                backup=str(result.backup) if result.backup else None,
                set_aside=result.set_aside,
                temp_removed=result.temp_removed,
                store_recovery=result.store_recovery,
                verify_ok=result.ok,
                verify_findings=[str(f) for f in result.verify.findings],
            )
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(format_plan(plan)))
        if result is None:
            print(f"  dry run: nothing changed; to do it: novelgen recover {plan.job_id} "
                  f"--from-snapshot {plan.snapshot_seq} --apply")  # fmt: skip
        else:
            print("\n".join(format_result(result)))
    return EXIT_INCOMPLETE if result is not None and not result.ok else EXIT_OK


def cmd_diagnose(args: argparse.Namespace, paths: DataPaths) -> int:
    from novelgen_desktop.support.diagnose import write_diagnosis  # noqa: PLC0415

    archive = write_diagnosis(paths, args.out)
    print(f"{archive.path}  ({archive.size:,} bytes, {len(archive.members)} file(s))")
    for note in archive.redactions_summary():
        print(f"  {note}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, DataPaths], int]] = {
    "recover": cmd_recover,
    "diagnose": cmd_diagnose,
}
