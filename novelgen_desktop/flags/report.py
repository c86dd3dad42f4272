"""``novelgen flags report JOB``: how each experiment's variants did, from recorded attempts.

Every attempt records the variants it ran under (``attempts.variants``), so the comparison is
over the job's real work, not a sample. Per flag and variant: tasks, attempts, success rate
(done / finished attempts, with a 95 % Wilson interval so a small difference on few attempts
is not mistaken for a result), mean and p95 latency of successful attempts, retries (attempts
beyond a task's first) and refusals. Attempts the variant cannot be blamed for (called back
for memory, cancelled, interrupted by a stop, or still running) are counted apart.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

NOT_THE_VARIANTS_DOING = frozenset({"recalled", "cancelled", "interrupted", "duplicate"})


@dataclass(frozen=True, slots=True)
class VariantStats:
    flag: str
    variant: str
    tasks: int
    attempts: int
    finished: int  # attempts with an outcome the variant answers for
    done: int
    failed: int
    refused: int
    rate_limited: int
    retries: int
    not_counted: int  # recalled, cancelled, interrupted, unfinished
    success_rate: float | None
    success_low: float | None  # 95 % Wilson interval
    success_high: float | None
    latency_mean: float | None
    latency_p95: float | None


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    job_id: str
    attempts: int  # all attempts of the job
    attempts_without_variants: int
    variants: list[VariantStats] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float] | None:
    if total == 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (the value at or above which 1 − q of them lie)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class _Tally:
    tasks: set[int] = field(default_factory=set)
    attempts: int = 0
    done: int = 0
    failed: int = 0
    refused: int = 0
    rate_limited: int = 0
    not_counted: int = 0
    latencies: list[float] = field(default_factory=list)


def experiment_report(conn: sqlite3.Connection, job_id: str) -> ExperimentReport:
    """The report for one job, read from the store's database connection."""
    rows = conn.execute(
        "SELECT a.task_id, a.started_at, a.ended_at, a.outcome, a.variants "
        "FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.job_id = ?",
        (job_id,),
    ).fetchall()
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    without = 0
    for task_id, started, ended, outcome, variants_text in rows:
        try:
            variants = json.loads(variants_text) if variants_text else {}
        except ValueError:
            variants = {}
        if not isinstance(variants, dict) or not variants:
            without += 1
            continue
        for flag, variant in variants.items():
            tally = tallies[(str(flag), str(variant))]
            tally.tasks.add(task_id)
            tally.attempts += 1
            if outcome is None or outcome in NOT_THE_VARIANTS_DOING:
                tally.not_counted += 1
            elif outcome == "done":
                tally.done += 1
                if ended is not None and started is not None and ended >= started:
                    tally.latencies.append(ended - started)
            elif outcome == "refused":
                tally.refused += 1
            elif outcome == "rate_limited":
                tally.rate_limited += 1
            else:
                tally.failed += 1
    stats: list[VariantStats] = []
    for (flag, variant), tally in sorted(tallies.items()):
        finished = tally.done + tally.failed + tally.refused + tally.rate_limited
        interval = wilson(tally.done, finished)
        latencies = tally.latencies
        stats.append(
            VariantStats(
                flag=flag,
                variant=variant,
                tasks=len(tally.tasks),
                attempts=tally.attempts,
                finished=finished,
                done=tally.done,
                failed=tally.failed,
                refused=tally.refused,
                rate_limited=tally.rate_limited,
                retries=tally.attempts - len(tally.tasks),
                not_counted=tally.not_counted,
                success_rate=tally.done / finished if finished else None,
                success_low=interval[0] if interval else None,
                success_high=interval[1] if interval else None,
                latency_mean=sum(latencies) / len(latencies) if latencies else None,
                latency_p95=percentile(latencies, 0.95),
            )
        )
    return ExperimentReport(job_id, len(rows), without, stats)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def format_report(report: ExperimentReport) -> str:
    """The report as the terminal shows it: one table per flag."""
    lines = [f"job {report.job_id}: {report.attempts} attempt(s)"]
    if not report.variants:
        lines.append(
            "  no attempt ran under an experiment (no flag with variants was in force "
            "while this job ran; see novelgen flags set NAME --variant …)"
        )
        return "\n".join(lines)
    if report.attempts_without_variants:
        lines.append(f"  {report.attempts_without_variants} attempt(s) ran with no experiment")
    header = (
        f"  {'variant':<12} {'tasks':>6} {'attempts':>8} {'success':>8} {'95 % interval':>17} "
        f"{'mean':>8} {'p95':>8} {'retries':>7} {'refusals':>8} {'other':>6}"
    )
    flag = None
    for row in report.variants:
        if row.flag != flag:
            flag = row.flag
            lines += ["", f"{flag}:", header]
        interval = (
            "-"
            if row.success_low is None
            else f"{_percent(row.success_low)}–{_percent(row.success_high)}"
        )
        lines.append(
            f"  {row.variant:<12} {row.tasks:>6} {row.attempts:>8} "
            f"{_percent(row.success_rate):>8} {interval:>17} {_seconds(row.latency_mean):>8} "
            f"{_seconds(row.latency_p95):>8} {row.retries:>7} {row.refused:>8} "
            f"{row.not_counted:>6}"
        )
    lines += [
        "",
        "success = done / finished attempts; latency of successful attempts; other = called "
        "back, cancelled, interrupted or unfinished (not counted against the variant)",
    ]
    return "\n".join(lines)


__all__ = ["ExperimentReport", "VariantStats", "experiment_report", "format_report", "wilson"]
