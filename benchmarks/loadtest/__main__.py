"""Command line of the load tests: ``python -m benchmarks.loadtest COMMAND``.

Each run writes its JSON report to ``--out`` (a fresh temporary folder by default) and the
command prints a JSON summary of all its runs; the exit status is 1 when any run failed its
invariants (lost or duplicated work, a job that did not finish, a process that did not exit
cleanly) or, for ``acceptance`` and ``efficiency``, when a target was missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, scratch
from benchmarks.loadtest import scenarios
from benchmarks.loadtest.harness import run_scenario
from benchmarks.loadtest.scenarios import FAULT_KINDS, Scenario

THROUGHPUT_TARGETS = {3000: 5.0, 10000: 15.0}
"""Tasks → seconds from first assignment to last completion (issue 4's acceptance)."""
EFFICIENCY_TARGET = 0.95
NAMES = ("throughput", "efficiency", "memory-storm", *FAULT_KINDS)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _log(quiet: bool) -> Any:
    def log(message: str) -> None:
        if not quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    return log


def _brief(report: dict[str, Any]) -> dict[str, Any]:
    """The headline of one run, for the summary printed at the end."""
    return {
        "scenario": report["scenario"],
        "ok": report["ok"],
        **report["result"],
        "hub_peak_rss_mib": report["hub"]["peak_rss_mib"],
        "seconds_submit_to_end": report["client"]["seconds_submit_to_end"],
        "hub_kills": len(report["hub"]["kills"]),
        "problems": report["problems"],
        "report_file": report.get("report_file"),
    }


def _run_all(runs: list[Scenario], args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    log = _log(args.quiet)
    reports = []
    for scenario in runs:
        log(f"{scenario.name}: {scenario.description}")
        report = run_scenario(scenario, report_dir=out, keep=args.keep, log=log)
        log(
            f"{scenario.name}: ok={report['ok']} "
            f"throughput={report['result'].get('throughput_per_s')}/s "
            f"lost={report['result'].get('lost')} dup={report['result'].get('duplicated')} "
            f"{'; '.join(report['problems'])}"
        )
        reports.append(report)
    return reports


def _in_process(tasks: int, workers: int) -> dict[str, Any]:
    """``benchmarks.bench_throughput``'s in-process engine figure with the settings ``serve``
    uses (its default file threads, fsync on)."""
    from benchmarks.bench_throughput import run_once
    from novelgen_desktop.engine.runner import RunSettings

    return run_once(tasks, workers, RunSettings().file_threads, fsync=True)


def cmd_acceptance(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], bool]:
    """(a): N zero-latency workers over WebSocket, against the in-process engine."""
    rows = []
    ok = True
    for tasks in args.tasks:
        for repeat in range(args.repeat):
            scenario = scenarios.throughput(
                tasks,
                args.workers,
                image_size=args.image_size,
                processes=args.processes,
                name=f"acceptance-{tasks}x{args.workers}-{args.image_size}px-{repeat + 1}",
            )
            report = _run_all([scenario], args, out)[0]
            row: dict[str, Any] = _brief(report)
            target = THROUGHPUT_TARGETS.get(tasks)
            span = report["result"].get("seconds_first_assign_to_last_done")
            if target is not None:
                row["target_seconds"] = target
                row["target_met"] = span is not None and span < target
            if not args.no_in_process:
                engine = _in_process(tasks, args.workers)
                row["in_process"] = engine
                if report["result"].get("throughput_per_s"):
                    row["ratio_to_in_process"] = round(
                        report["result"]["throughput_per_s"] / engine["completions_per_second"], 3
                    )
            ok = ok and report["ok"] and row.get("target_met", True)
            rows.append(row)
    return {"benchmark": "loadtest-acceptance", "machine": machine(), "runs": rows}, ok


def cmd_efficiency(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], bool]:
    """(b): N workers at a fixed latency against N × one worker's steady rate."""
    rates: dict[int, float | None] = {}
    rows = []
    ok = True
    for workers in args.workers:
        scenario = scenarios.efficiency(workers, latency=args.latency, seconds=args.seconds)
        report = _run_all([scenario], args, out)[0]
        rates[workers] = report["result"].get("steady_rate_per_s")
        rows.append(_brief(report))
        ok = ok and report["ok"]
    one = rates.get(1)
    for row, workers in zip(rows, args.workers, strict=True):
        rate = rates[workers]
        row["ideal_rate_per_s"] = round(1 / args.latency * workers, 2)
        if one and rate:
            row["efficiency"] = round(rate / (workers * one), 3)
            if workers > 1:
                row["target_met"] = row["efficiency"] >= EFFICIENCY_TARGET
                ok = ok and row["target_met"]
    return {
        "benchmark": "loadtest-efficiency",
        "machine": machine(),
        "latency": args.latency,
        "target": EFFICIENCY_TARGET,
        "runs": rows,
    }, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__)
    parser.add_argument("--out", type=Path, help="folder for the JSON reports (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep each run's data dir and logs")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="list the scenarios")

    run = commands.add_parser("run", help="run scenarios by name (see list)")
    run.add_argument("names", nargs="+", metavar="NAME", choices=NAMES)
    run.add_argument("--tasks", type=int)
    run.add_argument("--workers", type=int)

    faults = commands.add_parser("faults", help="every fault kind")
    faults.add_argument("--tasks", type=int, default=100)
    faults.add_argument("--workers", type=int, default=5)

    matrix = commands.add_parser("matrix", help="throughput for tasks × workers")
    matrix.add_argument("--tasks", type=_ints, default=scenarios.MATRIX_TASKS)
    matrix.add_argument("--workers", type=_ints, default=scenarios.MATRIX_WORKERS)

    acceptance = commands.add_parser(
        "acceptance", help="(a) zero-latency throughput over WebSocket vs the in-process engine"
    )
    acceptance.add_argument("--tasks", type=_ints, default=(3000, 10000))
    acceptance.add_argument("--workers", type=int, default=10)
    acceptance.add_argument(
        "--image-size",
        type=int,
        default=256,
        help="pixels; 256 matches benchmarks.bench_throughput (default)",
    )
    acceptance.add_argument("--processes", type=int, default=1, help="sim-worker processes")
    acceptance.add_argument("--repeat", type=int, default=1)
    acceptance.add_argument("--no-in-process", action="store_true")

    eff = commands.add_parser("efficiency", help="(b) parallel efficiency at a fixed latency")
    eff.add_argument("--workers", type=_ints, default=(1, 5, 10))
    eff.add_argument("--latency", type=float, default=0.2)
    eff.add_argument("--seconds", type=float, default=12.0, help="length of each run")

    args = parser.parse_args(argv)
    if args.command == "list":
        for name in NAMES:
            scenario = scenarios.named(name)
            print(f"{name:12} {scenario.tasks:>6} × {scenario.workers:<3} {scenario.description}")
        return 0
    out = args.out or scratch("ng-load-reports-")
    ok = True
    if args.command == "acceptance":
        summary, ok = cmd_acceptance(args, out)
    elif args.command == "efficiency":
        summary, ok = cmd_efficiency(args, out)
    else:
        if args.command == "run":
            runs = [scenarios.named(n, args.tasks, args.workers) for n in args.names]
        elif args.command == "faults":
            runs = [scenarios.fault(kind, args.tasks, args.workers) for kind in FAULT_KINDS]
        else:
            runs = scenarios.matrix(args.tasks, args.workers)
        reports = _run_all(runs, args, out)
        ok = all(r["ok"] for r in reports)
        summary = {
            "benchmark": f"loadtest-{args.command}",
            "machine": machine(),
            "runs": [_brief(r) for r in reports],
        }
    summary["reports"] = str(out)
    print(json.dumps(summary, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
