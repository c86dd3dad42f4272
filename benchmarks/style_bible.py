"""The style bible's costs: composing a 10,000-panel script, dispatch with chat sequences.

Composition happens once, when a job is created, so its cost is paid before the first image;
chat sequences add work to every dispatch decision (the owner's own queue, skipped entries of
other owners' sequences). Both are measured against the plain path in the same run, so the
figures are ratios on a shared, noisy machine rather than absolute promises.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine
from novelgen_desktop.engine.model import ChatStrategy, ErrorKind
from novelgen_desktop.engine.scheduler import Scheduler, SchedulerPolicy, TaskSlot
from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.style import Composer, StyleBible, parse_style_bible
from novelgen_desktop.style.composer import panel_of

CAST = ["Maren", "Old Tobias", "Isak", "Mrs. Aalto", "Captain Voss", "Brigid", "Hal", "Nils"]
PLACES = ["lamp room", "oil store", "causeway", "harbour", "chapel", "kitchen"]
PROPS = ["storm lantern", "ship's bell", "logbook", "brass telescope"]


def bible_text(max_chars: int) -> str:
    lines = [
        "[bible]",
        'name = "Benchmark"',
        f"max_prompt_chars = {max_chars}",
        "[style]",
        'medium = "ink and watercolour graphic-novel panel, loose brushwork, visible paper grain"',
        'palette = "cold slate, teal and bone white; warm amber only indoors by lamplight"',
        'line_work = "confident brush ink, heavy blacks, varied line weight"',
        'lighting = "low-key, lamplight against storm dark, rim light on wet surfaces"',
        'aspect = "square 1:1 image, 1024 x 1024"',
        'extra = "consistent character design from panel to panel"',
        'negative = ["lettering", "speech balloons", "watermarks", "signatures", "photo-realism"]',
    ]
    for name in CAST:
        lines += [
            f'[characters."{name}"]',
            f'aliases = ["{name.split()[-1]}x"]',
            f'description = "{name}: a weathered face, grey eyes, a heavy wool coat patched at '
            'the elbows, boots caked with salt. Moves slowly and deliberately. Never smiles."',
            'short = "weathered face, wool coat"',
        ]
    for place in PLACES:
        lines += [
            f'[locations."{place.title()}"]',
            f'aliases = ["{place}"]',
            f'description = "the {place} of Hallow Point lighthouse: stone walls, salt stains, '
            'iron fittings rusted orange, one small window onto the sea"',
        ]
    for prop in PROPS:
        lines += [
            f'[props."{prop.title()}"]',
            f'aliases = ["{prop}"]',
            f'description = "a {prop}, old brass, dented and polished by use"',
        ]
    for chapter in range(1, 11, 3):
        lines += [f'[chapters."{chapter}".style]', f'lighting = "chapter {chapter} lighting"']
    return "\n".join(lines) + "\n"


def panels(count: int, seed: int = 7) -> list[PromptSpec]:
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        who = rng.sample(CAST, rng.randint(1, 3))
        text = (
            f"Panel {i}: @{{{who[0]}}} stands in the {rng.choice(PLACES)} holding the "
            f"{rng.choice(PROPS)}; " + ", ".join(who[1:]) + " watches from the door. "
            "Rain streaks the glass; the great lens turns overhead."
        )
        specs.append(
            PromptSpec(
                text=text,
                source=SourceLocation("bench.script", i + 1),
                chapter=str(i // 1000 + 1),
                page=i // 6 + 1,
                panel=i % 6 + 1,
                characters=tuple(who[1:]),
            )
        )
    return specs


def compose_all(bible: StyleBible, specs: list[PromptSpec]) -> dict[str, Any]:
    composer = Composer(bible)
    per_panel = []
    lengths = []
    trimmed = 0
    started = time.perf_counter()
    for spec in specs:
        t0 = time.perf_counter()
        composed = composer.compose(panel_of(spec))
        per_panel.append(time.perf_counter() - t0)
        lengths.append(len(composed.text))
        trimmed += bool(composed.trimmed)
        assert len(composed.text) <= bible.max_prompt_chars
    elapsed = time.perf_counter() - started
    per_panel.sort()
    return {
        "panels": len(specs),
        "max_prompt_chars": bible.max_prompt_chars,
        "seconds": round(elapsed, 3),
        "panels_per_second": round(len(specs) / elapsed),
        "p50_us": round(per_panel[len(per_panel) // 2] * 1e6, 1),
        "p99_us": round(per_panel[int(len(per_panel) * 0.99)] * 1e6, 1),
        "mean_chars": round(statistics.fmean(lengths)),
        "panels_trimmed": trimmed,
    }


def dispatch(specs: list[PromptSpec], strategy: ChatStrategy, workers: int) -> dict[str, Any]:
    """Lease and finish every task with ``workers`` workers taking turns (one in five fails
    once), timing only the scheduler's decisions."""
    rng = random.Random(3)
    scheduler = Scheduler(SchedulerPolicy(backoff_base=0.0, backoff_cap=0.0), rng=rng)
    scheduler.load(
        TaskSlot(id=i, seq=i, sequence=strategy.sequence_of(s.chapter, s.page))
        for i, s in enumerate(specs, 1)
    )
    names = [f"w{n}" for n in range(workers)]
    for name in names:
        scheduler.add_worker(name, f"acc-{name}")
    held: dict[str, Any] = {}
    failed: set[int] = set()
    decisions = 0
    idle = 0
    now = 1.0
    spent = 0.0
    new_chats = 0
    while not scheduler.is_finished():
        now += 0.001
        name = names[rng.randrange(workers)]
        t0 = time.perf_counter()
        lease = held.pop(name, None)
        if lease is not None:
            if lease.task_id % 5 == 0 and lease.task_id not in failed:
                failed.add(lease.task_id)
                scheduler.report_failure(lease.task_id, lease.attempt, ErrorKind.TIMEOUT, now)
            else:
                scheduler.offer_result(lease.task_id, lease.attempt)
                scheduler.confirm_done(lease.task_id, lease.attempt)
        else:
            got = scheduler.next_assignment(name, now)
            decisions += 1
            if got is None:
                idle += 1
            else:
                held[name] = got
                new_chats += got.new_chat
        spent += time.perf_counter() - t0
    return {
        "strategy": strategy.value,
        "tasks": len(specs),
        "workers": workers,
        "dispatch_decisions": decisions,
        "idle_answers": idle,
        "new_chats": new_chats,
        "seconds_in_scheduler": round(spent, 3),
        "us_per_decision": round(spent / max(1, decisions) * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--panels", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()
    specs = panels(args.panels)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        roomy = parse_style_bible(bible_text(4000), file="bench.toml", base_dir=Path(folder))
        load_ms = (time.perf_counter() - started) * 1000
        tight = parse_style_bible(bible_text(600), file="bench.toml", base_dir=Path(folder))
    compose_runs = [compose_all(roomy, specs), compose_all(tight, specs)]
    dispatch_runs = [
        dispatch(specs, strategy, args.workers)
        for strategy in (ChatStrategy.PANEL, ChatStrategy.PAGE, ChatStrategy.CHAPTER)
    ]
    base = dispatch_runs[0]["us_per_decision"]
    for run in dispatch_runs:
        run["ratio_to_panel"] = round(run["us_per_decision"] / base, 2)
    print(
        json.dumps(
            {
                "benchmark": "style_bible",
                "machine": machine(),
                "bible_load_ms": round(load_ms, 2),
                "compose": compose_runs,
                "dispatch": dispatch_runs,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
