"""``novelgen``: the headless command line.

Exit codes: 0 every task done; 1 the job ended with dead, refused or cancelled tasks (they are
listed); 2 bad input or usage (nothing was started or changed); 3 the store could not be used;
130 stopped by Ctrl-C (the job can be resumed).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novelgen_desktop import __version__
from novelgen_desktop.cli import flags_commands, options, recovery_commands, style_commands
from novelgen_desktop.cli.display import ProgressDisplay, format_duration
from novelgen_desktop.cli.hub_commands import (
    add_hub_commands,
    cmd_pair,
    cmd_serve,
    cmd_sim_worker,
)
from novelgen_desktop.cli.submit_command import add_submit_commands, cmd_follow, cmd_submit
from novelgen_desktop.engine.composition import COMPOSITION_KEY
from novelgen_desktop.engine.joblock import JobLock
from novelgen_desktop.engine.jobs import JobOptions, create_job
from novelgen_desktop.engine.model import (
    DEFAULT_MAX_CHAT_TURNS,
    ChatStrategy,
    JobState,
    TaskState,
)
from novelgen_desktop.engine.orchestration import OrchestrationTrip
from novelgen_desktop.engine.recovery import open_store, reconcile_job
from novelgen_desktop.engine.runner import JobRunner, RunSummary
from novelgen_desktop.engine.verify import verify_job
from novelgen_desktop.engine.worker import Worker
from novelgen_desktop.errors import ConfigError, JobNotFoundError, NovelGenError, StoreError
from novelgen_desktop.flags.service import FlagService, open_flags
from novelgen_desktop.output.naming import DEFAULT_TEMPLATE, NamingTemplate
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.sim.worker import SimBehaviour, make_simulated_workers
from novelgen_desktop.store.database import Store
from novelgen_desktop.store.records import JobRecord, TaskRecord

if TYPE_CHECKING:
    from novelgen_desktop.prompts.model import PromptSpec
    from novelgen_desktop.style.apply import StyledJob

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workers")
    group.add_argument(
        "--simulate",
        action="store_true",
        help="use simulated workers (real PNGs, no ChatGPT account needed)",
    )
    group.add_argument("--workers", type=options.positive_int, help="number of workers (default 3)")
    group.add_argument(
        "--accounts",
        type=options.positive_int,
        help="simulated accounts the workers are spread over (default: one each)",
    )
    sim = parser.add_argument_group("simulation (with --simulate)")
    sim.add_argument(
        "--sim-latency",
        type=float,
        metavar="SECONDS",
        help="median seconds per image (default 0.5)",
    )
    sim.add_argument("--sim-latency-sigma", type=float, help="log-normal spread (default 0.5)")
    sim.add_argument("--sim-failure-rate", type=options.rate, help="transient failures per attempt")
    sim.add_argument("--sim-refusal-rate", type=options.rate, help="content refusals per attempt")
    sim.add_argument("--sim-rate-limit-rate", type=options.rate, help="rate limits per attempt")
    sim.add_argument(
        "--sim-rate-limit-reset",
        type=float,
        metavar="SECONDS",
        help="announced rate-limit reset (default 30)",
    )
    sim.add_argument(
        "--sim-invalid-image-rate", type=options.rate, help="broken images per attempt"
    )
    sim.add_argument("--sim-crash-rate", type=options.rate, help="worker crashes per attempt")
    sim.add_argument("--sim-image-size", type=int, help="image width/height in pixels (256)")
    group.add_argument(
        "--via-hub",
        action="store_true",
        help="(the default) simulated workers connect over WebSocket through the hub, "
        "the path extension tabs use",
    )
    group.add_argument(
        "--in-process",
        action="store_true",
        help="simulated workers called directly, without the hub (engine benchmarks)",
    )
    sim.add_argument("--sim-seed", type=int, help="random seed of the simulation")
    sim.add_argument(
        "--sim-reuse-images",
        type=int,
        metavar="N",
        help="load tests: serve N pre-drawn images instead of drawing each prompt",
    )
    tuning = parser.add_argument_group("engine")
    tuning.add_argument(
        "--max-failures",
        type=options.positive_int,
        help="failed attempts before a task is dead (default 5)",
    )
    tuning.add_argument(
        "--lease-seconds", type=float, help="seconds a worker may hold a task (default 600)"
    )
    tuning.add_argument("--backoff-base", type=float, help="first retry delay ceiling (5 s)")
    tuning.add_argument(
        "--snapshot-every",
        type=options.positive_int,
        help="completions between JSON snapshots (default 50)",
    )
    tuning.add_argument("--no-progress", action="store_true", help="no live progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novelgen",
        description="Turn a graphic-novel script into images, durably.",
    )
    parser.add_argument("--version", action="version", version=f"novelgen {__version__}")
    parser.add_argument(
        "--data-dir", help="state folder (default: platform data dir, or $NOVELGEN_DATA_DIR)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="import prompt files and run a new job to the end")
    run.add_argument("files", nargs="+", metavar="FILE")
    options.add_flag_options(run)
    run.add_argument("--out", help="output folder; images go to OUT/<job>/")
    run.add_argument("--name", help="job name (default: first file's name)")
    run.add_argument(
        "--format", help="force the input format (text, csv, json, jsonl, markdown, fullscript)"
    )
    run.add_argument(
        "--template",
        default=DEFAULT_TEMPLATE,
        help=f"file naming template (default {DEFAULT_TEMPLATE})",
    )
    _add_worker_options(run)
    style_commands.add_style_options(run)

    resume = commands.add_parser("resume", help="continue a job (default: the latest unfinished)")
    resume.add_argument("job", nargs="?")
    _add_worker_options(resume)
    options.add_flag_options(resume)

    status = commands.add_parser("status", help="show a job's state (default: the latest)")
    status.add_argument("job", nargs="?")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    commands.add_parser("jobs", help="list jobs")

    retry = commands.add_parser("retry-dead", help="requeue a job's dead tasks")
    retry.add_argument("job")
    retry.add_argument(
        "--include-refused",
        action="store_true",
        help="also requeue refused tasks (edit their prompts first)",
    )

    cancel = commands.add_parser("cancel", help="cancel a job that is not running")
    cancel.add_argument("job")

    validate = commands.add_parser("validate", help="parse prompt files and report, run nothing")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--format")

    verify = commands.add_parser(
        "verify",
        help="check that a job's files, database and manifest agree (reads only)",
        description="Every finished task must have its file with the recorded size and "
        "SHA-256, every file in the job's folder must belong to one, and the manifest must say "
        "the same as the database. Exit status 0 when all agree, 1 when something does not.",
    )
    verify.add_argument("job", nargs="?", help="job id or unique prefix (default: the latest)")
    verify.add_argument("--json", action="store_true", help="the report as JSON")
    verify.add_argument(
        "--no-hashes", action="store_true", help="compare sizes only (faster on big jobs)"
    )

    export = commands.add_parser("export", help="export a job's tasks as CSV or JSON")
    export.add_argument("job")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    gui = commands.add_parser(
        "gui", help="open the desktop window (the default when no command is given)"
    )
    gui.add_argument(
        "--simulate",
        action="store_true",
        default=None,
        help="start simulated tabs in the window (the demo without a ChatGPT account)",
    )
    gui.add_argument(
        "--port", type=options.port, help="hub port for the extension (default: from Settings)"
    )
    gui.add_argument(
        "--workers", type=options.tab_count, help="tabs per browser / simulated tabs (1-10)"
    )
    options.add_flag_options(gui)
    add_hub_commands(commands)
    add_submit_commands(commands)
    style_commands.add_compose_command(commands)
    recovery_commands.add_recovery_commands(commands)
    flags_commands.add_flags_commands(commands)
    return parser


# --- helpers ------------------------------------------------------------------------------


def _err(message: str) -> None:
    print(f"novelgen: error: {message}", file=sys.stderr)


def _open(paths: DataPaths) -> Store:
    store, recovery = open_store(paths)
    if recovery is not None:
        print(f"novelgen: recovery: {recovery.describe()}", file=sys.stderr)
    return store


def _settings_from_args(args: argparse.Namespace, saved: dict[str, Any]) -> dict[str, Any]:
    """Command-line options override what the job was started with."""
    settings = dict(saved)
    mapping = {
        "workers": "workers",
        "accounts": "accounts",
        "sim_latency": "latency_median",
        "sim_latency_sigma": "latency_sigma",
        "sim_failure_rate": "failure_rate",
        "sim_refusal_rate": "refusal_rate",
        "sim_rate_limit_rate": "rate_limit_rate",
        "sim_rate_limit_reset": "rate_limit_reset",
        "sim_invalid_image_rate": "invalid_image_rate",
        "sim_crash_rate": "crash_rate",
        "sim_image_size": "image_size",
        "sim_seed": "seed",
        "sim_reuse_images": "reuse_images",
        "max_failures": "max_failures",
        "lease_seconds": "lease_seconds",
        "backoff_base": "backoff_base",
        "snapshot_every": "snapshot_every",
    }
    for option, key in mapping.items():
        value = getattr(args, option, None)
        if value is not None:
            settings[key] = value
    if getattr(args, "simulate", False):
        settings["simulate"] = True
    if getattr(args, "via_hub", False) and getattr(args, "in_process", False):
        raise ConfigError("--via-hub and --in-process exclude each other")
    if getattr(args, "via_hub", False):
        settings["via_hub"] = True
    if getattr(args, "in_process", False):
        settings["via_hub"] = False
    return settings


def _require_simulate(settings: dict[str, Any]) -> None:
    if not settings.get("simulate"):
        raise ConfigError(
            "without --simulate, images come from ChatGPT through the browser extension: "
            "start `novelgen serve`, pair the extension (docs/extension.md), then "
            "`novelgen submit FILE`"
        )


def _behaviour(settings: dict[str, Any]) -> SimBehaviour:
    fields = SimBehaviour.__dataclass_fields__
    return SimBehaviour(**{k: v for k, v in settings.items() if k in fields})


def _run_job(
    paths: DataPaths,
    store: Store,
    job: JobRecord,
    settings: dict[str, Any],
    flags: FlagService,
    *,
    show: bool,
) -> RunSummary:
    """Run under the job's lock: reconciling or running a job another process is running
    would dispatch its tasks twice. The flags are followed while it runs: `novelgen flags
    rollback` in another terminal, an edited flags.json or the remote take effect at the
    next attempt."""
    try:
        with JobLock(paths.job_lock(job.id), job.id):
            return asyncio.run(
                flags.following(_run_job_locked(paths, store, job, settings, flags, show=show))
            )
    finally:
        flags.close()


async def _run_job_locked(
    paths: DataPaths,
    store: Store,
    job: JobRecord,
    settings: dict[str, Any],
    flags: FlagService,
    *,
    show: bool,
) -> RunSummary:
    report = reconcile_job(store, job)
    if report.changed:
        print(f"novelgen: {job.id}: {report.describe()}", file=sys.stderr)
    job = store.find_job(job.id)
    tasks = report.tasks
    cooldowns = store.cooldowns(time.time())
    _require_simulate(settings)
    count, behaviour = int(settings.get("workers", 3)), _behaviour(settings)
    if settings.get("via_hub", True):
        # The simulated tabs as WebSocket peers of a real hub: the extension's path.
        from novelgen_desktop.server.local import (  # noqa: PLC0415 - only on this path
            LateOutcomeRelay,
            simulated_workers_over_hub,
        )

        relay = LateOutcomeRelay()
        async with simulated_workers_over_hub(
            count, behaviour, accounts=settings.get("accounts"), relay=relay
        ) as remote:
            return await _drive(
                paths,
                job,
                tasks,
                list(remote),
                settings=settings,
                cooldowns=cooldowns,
                show=show,
                relay=relay,
                flags=flags,
            )
    workers = make_simulated_workers(count, behaviour, accounts=settings.get("accounts"))
    return await _drive(
        paths,
        job,
        tasks,
        list(workers),
        settings=settings,
        cooldowns=cooldowns,
        show=show,
        relay=None,
        flags=flags,
    )


async def _drive(
    paths: DataPaths,
    job: JobRecord,
    tasks: list[TaskRecord],
    workers: list[Worker],
    *,
    settings: dict[str, Any],
    cooldowns: dict[str, float],
    show: bool,
    relay: Any,
    flags: FlagService,
) -> RunSummary:
    """Run the job with these workers, with progress display and Ctrl-C handling."""
    display = ProgressDisplay() if show else None

    def report_first_dispatch() -> None:
        """``NOVELGEN_TIMINGS=1``: how long start-up took, for the resume benchmark."""
        if os.environ.get("NOVELGEN_TIMINGS"):
            import psutil  # noqa: PLC0415 - only for this diagnostic

            started = psutil.Process().create_time()
            print(
                f"novelgen: timing: first dispatch {time.time() - started:.3f} s after "
                "process start",
                file=sys.stderr,
                flush=True,
            )

    runner = JobRunner(
        paths,
        job,
        tasks,
        workers,
        options.run_settings(settings),
        cooldowns=cooldowns,
        on_progress=display.update if display else None,
        on_first_dispatch=report_first_dispatch,
        flags=flags,
    )
    unsubscribe = flags.subscribe(lambda _flags, _reason: runner.poke())

    def fall_back(trip: OrchestrationTrip) -> str:
        why = trip.describe()
        what = flags.fall_back_to_single_tab(why)
        print(f"\nnovelgen: tab orchestration failing: {why}; {what}", file=sys.stderr)
        return what

    runner.on_orchestration_failing = fall_back
    if relay is not None:
        relay.target = runner.deliver_late
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print(
                "\nnovelgen: stopping: finishing in-flight images (Ctrl-C again to stop now)",
                file=sys.stderr,
            )
            runner.request_stop()
        else:
            print(
                "novelgen: stopping now; unfinished attempts are requeued on resume",
                file=sys.stderr,
            )
            runner.request_stop(now=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        if display is not None:
            with display:
                return await runner.run()
        return await runner.run()
    finally:
        unsubscribe()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _print_summary(store: Store, summary: RunSummary) -> int:
    job = store.find_job(summary.job_id)
    counts = store.count_by_state(job.id)
    total = sum(counts.values())
    print(f"job {job.id}: {job.state.value}", file=sys.stderr)
    print(
        f"  {counts[TaskState.DONE]}/{total} images done in {format_duration(summary.elapsed)}"
        f" → {job.out_dir}",
        file=sys.stderr,
    )
    for stats in summary.workers:
        rate = f"{100 * stats.success_rate:.0f}%" if stats.success_rate is not None else "-"
        mean = f"{stats.mean_latency:.2f} s" if stats.mean_latency is not None else "-"
        p95 = f"{stats.p95_latency:.2f} s" if stats.p95_latency is not None else "-"
        limited = f", {stats.rate_limited} rate-limited" if stats.rate_limited else ""
        print(
            f"  {stats.worker_id} ({stats.account_id}): {stats.done} done, {rate} success"
            f"{limited}, latency mean {mean}, p95 {p95}",
            file=sys.stderr,
        )
    if summary.duplicates_dropped:
        print(f"  {summary.duplicates_dropped} duplicate result(s) dropped", file=sys.stderr)
    bad = [
        t
        for t in store.load_tasks(job.id)
        if t.state in (TaskState.DEAD, TaskState.REFUSED, TaskState.CANCELLED)
    ]
    for task in bad[:50]:
        where = f" ({task.source})" if task.source else ""
        print(
            f"  {task.state.value}: task {task.seq}{where}: {task.last_error_kind}: "
            f"{task.last_error}",
            file=sys.stderr,
        )
    if len(bad) > 50:
        print(f"  … and {len(bad) - 50} more", file=sys.stderr)
    if summary.stopped_early:
        reason = f" because {summary.stop_reason}" if summary.stop_reason else ""
        print(f"  stopped{reason}; continue with: novelgen resume {job.id}", file=sys.stderr)
        return EXIT_INCOMPLETE if summary.stop_reason else EXIT_INTERRUPTED
    if job.state is JobState.FINISHED:
        return EXIT_OK
    if bad:
        dead = sum(t.state is TaskState.DEAD for t in bad)
        refused = sum(t.state is TaskState.REFUSED for t in bad)
        print(f"  {len(bad)} task(s) not done", file=sys.stderr)
        if dead:
            print(f"  retry the {dead} dead task(s): novelgen retry-dead {job.id}", file=sys.stderr)
        if refused:
            print(
                f"  {refused} refused by the content policy: rephrase those panels (listed "
                "above with their script lines) and import them again, or retry them as they "
                f"are: novelgen retry-dead {job.id} --include-refused",
                file=sys.stderr,
            )
    return EXIT_INCOMPLETE


# --- commands -----------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, paths: DataPaths) -> int:
    from novelgen_desktop.prompts import (  # noqa: PLC0415 - parsers only when importing
        format_validation_report,
        load_prompt_files,
    )

    result = load_prompt_files(args.files, format=args.format)
    print(format_validation_report(result))
    return EXIT_USAGE if result.errors or not result.specs else EXIT_OK


def cmd_run(args: argparse.Namespace, paths: DataPaths) -> int:
    NamingTemplate(args.template)  # a bad template fails before anything is imported
    from novelgen_desktop.prompts import (  # noqa: PLC0415 - parsers only when importing
        PromptImportError,
        require_prompts,
    )

    try:
        specs = require_prompts(args.files, format=args.format)
    except PromptImportError as exc:
        _err(f"the prompt files have errors; nothing was started:\n{exc}")
        return EXIT_USAGE
    settings = _settings_from_args(args, {})
    _behaviour(settings)  # validate simulation settings before creating the job
    _require_simulate(settings)
    flags = options.open_process_flags(args, paths)  # a bad --flag starts nothing
    styled = _styled(args, specs)
    settings.update(styled.settings)
    out_root = Path(args.out).expanduser() if args.out else paths.default_output_dir
    name = args.name or Path(args.files[0]).stem
    with _open(paths) as store:
        job, tasks = create_job(
            store,
            paths,
            styled.specs,
            JobOptions(
                name=name,
                out_root=out_root,
                naming_template=args.template,
                sources=tuple(str(Path(f).resolve()) for f in args.files),
                settings=settings,
                references=styled.references,
            ),
        )
        print(
            f"novelgen: job {job.id}: {len(tasks)} image(s) from {len(specs)} prompt(s) → "
            f"{job.out_dir}",
            file=sys.stderr,
        )
        summary = _run_job(paths, store, job, settings, flags, show=not args.no_progress)
        return _print_summary(store, summary)


def _styled(args: argparse.Namespace, specs: Sequence[PromptSpec]) -> StyledJob:
    """Compose the prompts with ``--style`` and check the chat options, before any job
    exists: a bible with errors or a panel that cannot be composed starts nothing."""
    from novelgen_desktop.prompts import PromptImportError  # noqa: PLC0415 - parsers
    from novelgen_desktop.style import style_job  # noqa: PLC0415

    bible = style_commands.load_bible(args.style) if args.style else None
    strategy = ChatStrategy(args.chat_strategy or ChatStrategy.PANEL.value)
    turns = args.max_chat_turns or DEFAULT_MAX_CHAT_TURNS
    try:
        styled = style_job(specs, bible, strategy, turns)
    except PromptImportError as exc:
        raise ConfigError(
            f"{len(exc.issues)} panel(s) cannot be composed with style bible {args.style}; "
            "nothing was started:\n" + "\n".join(f"  {issue}" for issue in exc.issues[:50])
        ) from None
    if bible is not None and styled.report is not None:
        style_commands.summarise_warnings(styled.report.issues)
        print(
            f"novelgen: style bible {bible.name} {bible.version}: {len(styled.specs)} prompt(s) "
            f"composed, {len(styled.references)} reference image(s)",
            file=sys.stderr,
        )
    note = style_commands.parallelism_note(
        styled.specs, strategy, int(getattr(args, "workers", None) or 3)
    )
    if note is not None:
        print(f"novelgen: {note}", file=sys.stderr)
    return styled


def _job_or_latest(store: Store, ref: str | None, *, unfinished: bool) -> JobRecord:
    if ref:
        return store.find_job(ref)
    job = store.latest_job(unfinished=unfinished)
    if job is None:
        what = "unfinished job" if unfinished else "job"
        raise JobNotFoundError(f"there is no {what} to choose; name one (see: novelgen jobs)")
    return job


def cmd_resume(args: argparse.Namespace, paths: DataPaths) -> int:
    with _open(paths) as store:
        if not args.job and store.latest_job(unfinished=True) is None:
            latest = store.latest_job()
            if latest is not None:
                print(
                    f"novelgen: nothing to resume: the latest job {latest.id} is "
                    f"{latest.state.value}",
                    file=sys.stderr,
                )
                return EXIT_OK if latest.state is JobState.FINISHED else EXIT_INCOMPLETE
        job = _job_or_latest(store, args.job, unfinished=True)
        if job.state is JobState.CANCELLED:
            raise ConfigError(f"job {job.id} was cancelled")
        settings = _settings_from_args(args, job.settings)
        _behaviour(settings)
        flags = options.open_process_flags(args, paths)
        print(f"novelgen: resuming {job.id}", file=sys.stderr)
        summary = _run_job(paths, store, job, settings, flags, show=not args.no_progress)
        return _print_summary(store, summary)


def _status_dict(store: Store, job: JobRecord) -> dict[str, Any]:
    counts = store.count_by_state(job.id)
    total = sum(counts.values())
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "created_at": job.created_at,
        "out_dir": job.out_dir,
        "total": total,
        "counts": {k.value: v for k, v in counts.items()},
        "percent": round(100.0 * counts[TaskState.DONE] / total, 2) if total else 100.0,
        "errors": [
            {"kind": kind, "message": message, "count": count}
            for kind, message, count in store.error_summary(job.id)
        ],
        "cooldowns": store.cooldowns(time.time()),
    }


def cmd_status(args: argparse.Namespace, paths: DataPaths) -> int:
    with _open(paths) as store:
        job = _job_or_latest(store, args.job, unfinished=False)
        info = _status_dict(store, job)
        if args.json:
            print(json.dumps(info, indent=2))
            return EXIT_OK
        counts = info["counts"]
        print(f"{job.id}  ({job.name})  {job.state.value}")
        others = [f"{v} {k}" for k, v in counts.items() if v and k != "done"]
        print(
            " · ".join(
                [f"  {counts['done']}/{info['total']} done ({info['percent']:.1f}%)", *others]
            )
        )
        print(f"  output: {job.out_dir}")
        for error in info["errors"][:10]:
            print(f"  {error['count']:>5} × {error['kind']}: {error['message']}")
        for account, until in info["cooldowns"].items():
            print(
                f"  account {account} cooling down until "
                f"{time.strftime('%H:%M:%S', time.localtime(until))}"
            )
        return EXIT_OK


def cmd_jobs(args: argparse.Namespace, paths: DataPaths) -> int:
    with _open(paths) as store:
        jobs = store.list_jobs()
        if not jobs:
            print(
                "no jobs yet; start one with: novelgen run FILE --simulate, "
                "or through ChatGPT: novelgen serve, then novelgen submit FILE"
            )
        for job in jobs:
            counts = store.count_by_state(job.id)
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
            print(
                f"{job.id:<44} {job.state.value:<10} {counts[TaskState.DONE]:>6}/"
                f"{sum(counts.values()):<6} {created}  {job.name}"
            )
    return EXIT_OK


def cmd_retry_dead(args: argparse.Namespace, paths: DataPaths) -> int:
    with _open(paths) as store:
        job = store.find_job(args.job)
        if job.state is JobState.CANCELLED:
            raise ConfigError(f"job {job.id} was cancelled; its tasks cannot be retried")
        count = store.retry_dead(job.id, include_refused=args.include_refused)
        print(
            f"requeued {count} task(s) of {job.id}"
            + (f"; continue with: novelgen resume {job.id}" if count else "")
        )
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, paths: DataPaths) -> int:
    with _open(paths) as store:
        job = store.find_job(args.job)
        if job.state in (JobState.FINISHED, JobState.INCOMPLETE, JobState.CANCELLED):
            print(f"job {job.id} is already {job.state.value}; nothing to cancel")
            return EXIT_OK
        with JobLock(paths.job_lock(job.id), job.id):
            count = store.cancel_job(job.id)
        print(f"cancelled {job.id}: {count} unfinished task(s) cancelled; finished images kept")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, paths: DataPaths) -> int:
    with _open(paths) as store:
        job = _job_or_latest(store, args.job, unfinished=False)
        tasks = store.load_tasks(job.id)
    report = verify_job(job, tasks, hashes=not args.no_hashes)
    if args.json:
        print(
            json.dumps(
                {
                    "job": report.job_id,
                    "out_dir": report.out_dir,
                    "done": report.done,
                    "files_checked": report.files_checked,
                    "hashes_checked": report.hashes_checked,
                    "ok": report.ok,
                    "manifest_unreconciled": report.manifest_unreconciled,
                    "findings": [asdict(f) for f in report.findings],
                },
                indent=1,
            )
        )
    else:
        how = "sizes and SHA-256" if report.hashes_checked else "sizes"
        print(
            f"job {report.job_id}: {report.done} done, {report.files_checked} file(s) checked "
            f"({how}) in {report.out_dir}"
        )
        for finding in report.findings:
            print(f"  {finding}")
        print("  all agree" if report.ok else f"  {len(report.findings)} problem(s)")
        hint = report.hint()
        if hint is not None:
            print(f"  note: {hint}")
    return EXIT_OK if report.ok else EXIT_INCOMPLETE


def cmd_export(args: argparse.Namespace, paths: DataPaths) -> int:
    columns = [
        "seq",
        "state",
        "chapter",
        "page",
        "panel",
        "variant",
        "prompt",
        "description",
        "characters",
        "style_version",
        "output_path",
        "sha256",
        "size",
        "attempts",
        "failures",
        "last_error_kind",
        "last_error",
        "finished_at",
        "worker_id",
        "source",
    ]
    with _open(paths) as store:
        job = store.find_job(args.job)
        rows = []
        for task in store.iter_tasks(job.id):
            row = asdict(task)
            composition = row["metadata"].get(COMPOSITION_KEY) or {}
            row["description"] = composition.get("description", task.prompt)
            row["style_version"] = composition.get("version")
            row["characters"] = "; ".join(task.characters)
            rows.append({c: row[c] for c in columns})
    for row in rows:
        row["state"] = str(row["state"])
    handle = (
        open(args.output, "w", newline="", encoding="utf-8")  # noqa: SIM115 - or stdout
        if args.output
        else sys.stdout
    )
    try:
        if args.format == "json":
            json.dump(
                {"job": job.id, "name": job.name, "out_dir": job.out_dir, "tasks": rows},
                handle,
                ensure_ascii=False,
                indent=1,
            )
            handle.write("\n")
        else:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    finally:
        if handle is not sys.stdout:
            handle.close()
    return EXIT_OK


def cmd_gui(args: argparse.Namespace, paths: DataPaths) -> int:
    from novelgen_desktop.gui.app import run_gui  # noqa: PLC0415 - Qt only for the window

    # A bad --flag stops here; a bad flags.json does not keep the window from opening (it is
    # ignored with its reason, shown in the log and the Feature flags window).
    flags = open_flags(
        paths.root,
        remote=getattr(args, "flags_url", None),
        cli_overrides=list(getattr(args, "flag", None) or ()),
        strict=False,
    )
    try:
        return run_gui(
            paths, simulate=args.simulate, port=args.port, workers=args.workers, flags=flags
        )
    finally:
        flags.close()


COMMANDS = {
    "run": cmd_run,
    "resume": cmd_resume,
    "status": cmd_status,
    "jobs": cmd_jobs,
    "retry-dead": cmd_retry_dead,
    "cancel": cmd_cancel,
    "validate": cmd_validate,
    "export": cmd_export,
    "verify": cmd_verify,
    "serve": cmd_serve,
    "pair": cmd_pair,
    "sim-worker": cmd_sim_worker,
    "submit": cmd_submit,
    "gui": cmd_gui,
    "follow": cmd_follow,
    "compose": style_commands.cmd_compose,
    **recovery_commands.COMMANDS,
    **flags_commands.COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        paths = resolve_data_dir(args.data_dir)
        if args.command is None:  # plain `novelgen`: the window
            return cmd_gui(argparse.Namespace(simulate=None, port=None, workers=None), paths)
        return COMMANDS[args.command](args, paths)
    except (ConfigError, JobNotFoundError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except StoreError as exc:
        _err(str(exc))
        return EXIT_STORE
    except NovelGenError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
