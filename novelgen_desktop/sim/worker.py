"""A simulated ChatGPT tab: same interface as a real worker, real PNG images out.

It powers the demo without an account, the load tests and CI. Its behaviour is a seeded
random model of what real tabs do: a long-tailed latency (log-normal), transient failures,
content refusals, rate limits announced the way ChatGPT words them, broken image bytes, and
crashes after which it comes back. Seeded per worker, so a failing test run can be replayed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import os
import random
from dataclasses import dataclass

from novelgen_desktop.engine.model import (
    Assignment,
    ErrorKind,
    WorkerFailure,
    WorkerOutcome,
    WorkerResult,
)
from novelgen_desktop.engine.worker import WorkerCrashed
from novelgen_desktop.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SimBehaviour:
    """Probabilities are per attempt; latencies in seconds."""

    latency_median: float = 0.5
    latency_sigma: float = 0.5  # log-normal shape: 0 = constant latency
    latency_max: float = 60.0
    failure_rate: float = 0.0  # transient: page_error / network / timeout
    refusal_rate: float = 0.0
    rate_limit_rate: float = 0.0
    rate_limit_reset: float = 30.0  # announced reset, in seconds
    invalid_image_rate: float = 0.0
    crash_rate: float = 0.0
    restart_delay: float = 1.0
    image_size: int = 256
    seed: int = 0
    # Load tests only: serve a bank of this many pre-drawn images instead of drawing each
    # prompt, so a benchmark measures the engine, store and output, not Pillow. 0 = draw.
    reuse_images: int = 0
    # Deterministic fault injection for load tests: every N-th attempt of a worker (0 = off).
    rate_limit_every: int = 0
    crash_every: int = 0

    def __post_init__(self) -> None:
        rates = {
            "failure_rate": self.failure_rate,
            "refusal_rate": self.refusal_rate,
            "rate_limit_rate": self.rate_limit_rate,
            "invalid_image_rate": self.invalid_image_rate,
            "crash_rate": self.crash_rate,
        }
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"simulated {name} must be between 0 and 1, got {value}")
        if sum(rates.values()) > 1.0:
            raise ConfigError("simulated failure rates add up to more than 1")
        if self.latency_median < 0 or self.latency_sigma < 0 or self.latency_max < 0:
            raise ConfigError("simulated latencies must not be negative")
        for name in ("rate_limit_every", "crash_every", "reuse_images"):
            if getattr(self, name) < 0:
                raise ConfigError(f"simulated {name} must not be negative")
        if not 16 <= self.image_size <= 4096:
            raise ConfigError(f"simulated image size must be 16..4096, got {self.image_size}")


@functools.cache
def _image_bank(size: int, count: int) -> tuple[bytes, ...]:
    from novelgen_desktop.sim.render import render_panel_png  # noqa: PLC0415 - Pillow on demand

    return tuple(
        render_panel_png(f"load-test image {i}", width=size, height=size, seed=i)
        for i in range(count)
    )


def rate_limit_message(seconds: float) -> str:
    """Worded like ChatGPT's own message, so the same parser handles real and simulated."""
    # Rounded up: announcing a shorter rest than the real one would invite refusals.
    if seconds >= 120:
        amount, unit = math.ceil(seconds / 60), "minutes"
    else:
        amount, unit = max(1, math.ceil(seconds)), "seconds"
    return (
        "You've hit the plus plan limit for image generation requests. "
        f"You can create more images when the limit resets in {amount} {unit}."
    )


class SimulatedWorker:
    kind = "simulated"

    def __init__(self, worker_id: str, account_id: str, behaviour: SimBehaviour) -> None:
        self.worker_id = worker_id
        self.account_id = account_id
        self.behaviour = behaviour
        digest = hashlib.sha256(f"{behaviour.seed}:{worker_id}".encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))
        self.executed = 0

    def _latency(self) -> float:
        b = self.behaviour
        if b.latency_median == 0:
            return 0.0
        value = b.latency_median * math.exp(self._rng.gauss(0.0, b.latency_sigma))
        return min(value, b.latency_max)

    async def execute(self, assignment: Assignment) -> WorkerOutcome:
        self.executed += 1
        b = self.behaviour
        latency = self._latency()
        if latency > 0:
            await asyncio.sleep(latency)
        roll = self._rng.random()
        task, attempt = assignment.task_id, assignment.attempt
        missing = [r.name for r in assignment.references if r.path and not os.path.isfile(r.path)]
        if missing:  # as a browser: no prompt without its reference images
            return WorkerFailure(
                task,
                attempt,
                ErrorKind.PAGE_ERROR,
                "reference image missing: " + ", ".join(missing),
            )
        if b.crash_every and self.executed % b.crash_every == 0:
            raise WorkerCrashed(f"simulated crash of {self.worker_id} (every {b.crash_every})")
        if b.rate_limit_every and self.executed % b.rate_limit_every == 0:
            return WorkerFailure(
                task, attempt, ErrorKind.RATE_LIMITED, rate_limit_message(b.rate_limit_reset)
            )
        edge = b.crash_rate
        if roll < edge:
            raise WorkerCrashed(f"simulated crash of {self.worker_id}")
        edge += b.rate_limit_rate
        if roll < edge:
            return WorkerFailure(
                task, attempt, ErrorKind.RATE_LIMITED, rate_limit_message(b.rate_limit_reset)
            )
        edge += b.refusal_rate
        if roll < edge:
            return WorkerFailure(
                task,
                attempt,
                ErrorKind.REFUSED,
                "I can't create that image because the request violates our content policies.",
            )
        edge += b.failure_rate
        if roll < edge:
            kind = self._rng.choice([ErrorKind.PAGE_ERROR, ErrorKind.NETWORK, ErrorKind.TIMEOUT])
            messages = {
                ErrorKind.PAGE_ERROR: "Something went wrong while generating the response.",
                ErrorKind.NETWORK: "Network error",
                ErrorKind.TIMEOUT: "no image after the deadline",
            }
            return WorkerFailure(task, attempt, kind, messages[kind])
        if b.reuse_images:
            image = _image_bank(b.image_size, b.reuse_images)[assignment.task_id % b.reuse_images]
        else:
            image = await asyncio.to_thread(self._render, assignment)
        edge += b.invalid_image_rate
        if roll < edge:
            from novelgen_desktop.sim.render import corrupt_image  # noqa: PLC0415

            image = corrupt_image(image, self._rng.choice(["truncate", "html", "empty"]))
        conversation = f"https://chatgpt.com/c/sim-{task}-{attempt}"
        return WorkerResult(
            task,
            attempt,
            image,
            conversation_url=conversation,
            image_id=f"file_sim{task:08d}a{attempt}",
            mime="image/png",
        )

    def _render(self, assignment: Assignment) -> bytes:
        meta = assignment.metadata
        parts = []
        if meta.get("chapter"):
            parts.append(f"Ch {meta['chapter']}")
        if meta.get("page"):
            parts.append(f"p{meta['page']}")
        if meta.get("panel"):
            parts.append(f"panel {meta['panel']}")
        label = " · ".join(parts) or f"task {assignment.task_id}"
        size = self.behaviour.image_size
        from novelgen_desktop.sim.render import render_panel_png  # noqa: PLC0415 - Pillow on demand

        return render_panel_png(
            assignment.prompt, width=size, height=size, seed=assignment.task_id, label=label
        )

    async def restart(self) -> bool:
        await asyncio.sleep(self.behaviour.restart_delay)
        return True


def make_simulated_workers(
    count: int, behaviour: SimBehaviour, *, accounts: int | None = None, prefix: str = "sim"
) -> list[SimulatedWorker]:
    """``count`` workers (``{prefix}-1``…) spread round-robin over ``accounts`` accounts
    (default: one each; ``{prefix}-account-1``…), like tabs of several ChatGPT logins."""
    if not 1 <= count <= 64:
        raise ConfigError(f"--workers must be between 1 and 64, got {count}")
    accounts = accounts or count
    return [
        SimulatedWorker(f"{prefix}-{i + 1}", f"{prefix}-account-{i % accounts + 1}", behaviour)
        for i in range(count)
    ]
