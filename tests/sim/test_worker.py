"""The simulated worker: validated settings, seeded determinism, honest proportions, real images."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import pytest

from novelgen_desktop.engine.model import Assignment, ErrorKind, WorkerResult
from novelgen_desktop.engine.ratelimit import parse_reset_after
from novelgen_desktop.engine.worker import WorkerCrashed
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.output.imagecheck import InvalidImageError, inspect_image
from novelgen_desktop.sim.worker import (
    SimBehaviour,
    SimulatedWorker,
    make_simulated_workers,
    rate_limit_message,
)

FAST = SimBehaviour(latency_median=0.0, image_size=32, restart_delay=0.0)


def assignment(task_id: int, attempt: int = 1, prompt: str = "a lighthouse at dusk") -> Assignment:
    return Assignment(
        task_id=task_id,
        attempt=attempt,
        prompt=prompt,
        deadline=0.0,
        metadata={"chapter": "1", "page": 1, "panel": task_id},
    )


def outcome_key(outcome: object) -> tuple[object, ...]:
    """A comparable summary of one execute(): crash, failure kind, or image digest."""
    if isinstance(outcome, WorkerCrashed):
        return ("crash",)
    if isinstance(outcome, WorkerResult):
        try:
            inspect_image(outcome.image)
            valid = True
        except InvalidImageError:
            valid = False
        return ("image", valid, hash(outcome.image))
    return ("failure", outcome.kind, outcome.message)  # type: ignore[attr-defined]


async def run_many(worker: SimulatedWorker, count: int, first_task: int = 1) -> list[object]:
    outcomes: list[object] = []
    for task_id in range(first_task, first_task + count):
        try:
            outcomes.append(await worker.execute(assignment(task_id)))
        except WorkerCrashed as exc:
            outcomes.append(exc)
    return outcomes


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["failure_rate", "refusal_rate", "rate_limit_rate", "invalid_image_rate", "crash_rate"],
)
@pytest.mark.parametrize("value", [-0.01, 1.01, 5.0])
def test_rate_out_of_range_is_rejected(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        SimBehaviour(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field",
    ["failure_rate", "refusal_rate", "rate_limit_rate", "invalid_image_rate", "crash_rate"],
)
def test_each_rate_may_be_one(field: str) -> None:
    assert getattr(SimBehaviour(**{field: 1.0}), field) == 1.0  # type: ignore[arg-type]


def test_rates_adding_up_to_more_than_one_are_rejected() -> None:
    with pytest.raises(ConfigError, match="more than 1"):
        SimBehaviour(failure_rate=0.6, refusal_rate=0.3, crash_rate=0.2)


def test_rates_adding_up_to_exactly_one_are_accepted() -> None:
    b = SimBehaviour(failure_rate=0.5, refusal_rate=0.25, rate_limit_rate=0.25)
    assert b.failure_rate + b.refusal_rate + b.rate_limit_rate == 1.0


@pytest.mark.parametrize("size", [0, 15, 4097, -1])
def test_bad_image_size_is_rejected(size: int) -> None:
    with pytest.raises(ConfigError, match="image size"):
        SimBehaviour(image_size=size)


@pytest.mark.parametrize("size", [16, 4096])
def test_image_size_bounds_are_inclusive(size: int) -> None:
    assert SimBehaviour(image_size=size).image_size == size


@pytest.mark.parametrize("field", ["latency_median", "latency_sigma", "latency_max"])
def test_negative_latency_is_rejected(field: str) -> None:
    with pytest.raises(ConfigError, match="negative"):
        SimBehaviour(**{field: -0.1})  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [0, 65, -3])
def test_worker_count_out_of_range(count: int) -> None:
    with pytest.raises(ConfigError, match="--workers"):
        make_simulated_workers(count, FAST)


def test_workers_are_spread_round_robin_over_accounts() -> None:
    workers = make_simulated_workers(5, FAST, accounts=2)
    assert [w.worker_id for w in workers] == ["sim-1", "sim-2", "sim-3", "sim-4", "sim-5"]
    assert [w.account_id for w in workers] == [
        "sim-account-1",
        "sim-account-2",
        "sim-account-1",
        "sim-account-2",
        "sim-account-1",
    ]
    assert len({w.account_id for w in make_simulated_workers(4, FAST)}) == 4


# --- determinism ----------------------------------------------------------------------------

MIXED = replace(
    FAST,
    failure_rate=0.2,
    refusal_rate=0.1,
    rate_limit_rate=0.1,
    invalid_image_rate=0.1,
    crash_rate=0.05,
    image_size=16,
    reuse_images=3,
    latency_sigma=0.5,
)


def test_same_seed_gives_the_same_sequence() -> None:
    first = asyncio.run(run_many(SimulatedWorker("w1", "a", replace(MIXED, seed=7)), 300))
    second = asyncio.run(run_many(SimulatedWorker("w1", "a", replace(MIXED, seed=7)), 300))
    assert [outcome_key(o) for o in first] == [outcome_key(o) for o in second]
    # The sequence is mixed, not trivially constant.
    assert len({outcome_key(o)[0] for o in first}) == 3


def test_different_seeds_or_workers_give_different_sequences() -> None:
    base = [
        outcome_key(o)
        for o in asyncio.run(run_many(SimulatedWorker("w1", "a", replace(MIXED, seed=7)), 200))
    ]
    other_seed = [
        outcome_key(o)
        for o in asyncio.run(run_many(SimulatedWorker("w1", "a", replace(MIXED, seed=8)), 200))
    ]
    other_worker = [
        outcome_key(o)
        for o in asyncio.run(run_many(SimulatedWorker("w2", "a", replace(MIXED, seed=7)), 200))
    ]
    assert base != other_seed
    assert base != other_worker


def test_latency_is_seeded_and_bounded() -> None:
    b = SimBehaviour(latency_median=2.0, latency_sigma=1.0, latency_max=3.0, seed=3)
    one = SimulatedWorker("w", "a", b)
    two = SimulatedWorker("w", "a", b)
    first = [one._latency() for _ in range(500)]
    assert first == [two._latency() for _ in range(500)]
    assert all(0 < v <= 3.0 for v in first)
    assert max(first) == 3.0  # sigma 1 over 500 draws must hit the cap
    constant = SimulatedWorker("w", "a", replace(b, latency_sigma=0.0))
    assert {constant._latency() for _ in range(20)} == {2.0}
    assert SimulatedWorker("w", "a", replace(b, latency_median=0.0))._latency() == 0.0


# --- proportions ----------------------------------------------------------------------------


def classify(outcome: object) -> str:
    if isinstance(outcome, WorkerCrashed):
        return "crash"
    if isinstance(outcome, WorkerResult):
        try:
            inspect_image(outcome.image)
        except InvalidImageError:
            return "invalid"
        return "ok"
    kind = outcome.kind  # type: ignore[attr-defined]
    if kind in (ErrorKind.PAGE_ERROR, ErrorKind.NETWORK, ErrorKind.TIMEOUT):
        return "transient"
    return str(kind)


def test_observed_proportions_match_the_configuration() -> None:
    n = 2000
    rates = {
        "transient": 0.2,
        "refused": 0.1,
        "rate_limited": 0.05,
        "invalid": 0.1,
        "crash": 0.05,
    }
    b = replace(
        FAST,
        failure_rate=rates["transient"],
        refusal_rate=rates["refused"],
        rate_limit_rate=rates["rate_limited"],
        invalid_image_rate=rates["invalid"],
        crash_rate=rates["crash"],
        image_size=16,
        reuse_images=4,
        seed=11,
    )
    worker = SimulatedWorker("sim-1", "acct", b)
    outcomes = asyncio.run(run_many(worker, n))
    assert worker.executed == n
    seen = Counter(classify(o) for o in outcomes)
    expected = {**rates, "ok": 1.0 - sum(rates.values())}
    assert set(seen) == set(expected)
    for name, rate in expected.items():
        # Binomial standard deviation is at most ~0.011 at n=2000; 0.035 is > 3 sigma.
        assert abs(seen[name] / n - rate) < 0.035, (name, seen[name] / n, rate)
    # Transient failures come in all three kinds.
    kinds = Counter(
        o.kind  # type: ignore[attr-defined]
        for o in outcomes
        if classify(o) == "transient"
    )
    assert set(kinds) == {ErrorKind.PAGE_ERROR, ErrorKind.NETWORK, ErrorKind.TIMEOUT}


def test_zero_rates_always_succeed() -> None:
    outcomes = asyncio.run(run_many(SimulatedWorker("w", "a", replace(FAST, reuse_images=2)), 200))
    assert {classify(o) for o in outcomes} == {"ok"}


def test_refusal_rate_one_always_refuses() -> None:
    worker = SimulatedWorker("w", "a", replace(FAST, refusal_rate=1.0))
    outcomes = asyncio.run(run_many(worker, 50))
    assert {classify(o) for o in outcomes} == {"refused"}
    assert all("content polic" in o.message for o in outcomes)  # type: ignore[attr-defined]


def test_outcomes_answer_the_assignment() -> None:
    worker = SimulatedWorker("w", "a", replace(MIXED, crash_rate=0.0))

    async def go() -> list[tuple[int, int, object]]:
        seen = []
        for task_id in range(1, 100):
            attempt = task_id % 4 + 1
            seen.append((task_id, attempt, await worker.execute(assignment(task_id, attempt))))
        return seen

    for task_id, attempt, outcome in asyncio.run(go()):
        assert outcome.task_id == task_id  # type: ignore[attr-defined]
        assert outcome.attempt == attempt  # type: ignore[attr-defined]
        if isinstance(outcome, WorkerResult):
            assert outcome.conversation_url and str(task_id) in outcome.conversation_url
            assert outcome.image_id


# --- rate-limit wording ---------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [30, 90, 600, 3600])
def test_rate_limit_message_parses_back(seconds: float) -> None:
    assert parse_reset_after(rate_limit_message(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("seconds", [30, 90, 600, 3600])
def test_rate_limited_outcome_carries_the_configured_reset(seconds: float) -> None:
    worker = SimulatedWorker("w", "a", replace(FAST, rate_limit_rate=1.0, rate_limit_reset=seconds))
    (outcome,) = asyncio.run(run_many(worker, 1))
    assert outcome.kind is ErrorKind.RATE_LIMITED  # type: ignore[attr-defined]
    assert outcome.retry_after is None  # type: ignore[attr-defined]  # only the wording says it
    assert parse_reset_after(outcome.message) == pytest.approx(seconds)  # type: ignore[attr-defined]


def test_rate_limit_message_never_announces_zero() -> None:
    assert parse_reset_after(rate_limit_message(0.2)) == 1


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 64])
def test_images_are_valid_pngs_of_the_configured_size(size: int) -> None:
    worker = SimulatedWorker("w", "a", replace(FAST, image_size=size))
    outcomes = asyncio.run(run_many(worker, 5))
    for outcome in outcomes:
        assert isinstance(outcome, WorkerResult)
        info = inspect_image(outcome.image)
        assert (info.format, info.width, info.height) == ("png", size, size)
        assert outcome.mime == "image/png"
    if size >= 32:  # big enough for the drawing to differ per task
        assert len({o.image for o in outcomes}) == 5  # type: ignore[attr-defined]


def test_reuse_images_serves_valid_images_from_a_bank() -> None:
    worker = SimulatedWorker("w", "a", replace(FAST, image_size=24, reuse_images=3))
    outcomes = asyncio.run(run_many(worker, 9))
    images = [o.image for o in outcomes]  # type: ignore[attr-defined]
    for image in images:
        info = inspect_image(image)
        assert (info.width, info.height) == (24, 24)
    assert len(set(images)) == 3
    # Task i gets bank image i % 3.
    assert images[0] == images[3] == images[6]
    assert images[0] != images[1]


def test_invalid_image_rate_one_gives_bytes_the_engine_rejects() -> None:
    worker = SimulatedWorker("w", "a", replace(FAST, invalid_image_rate=1.0, reuse_images=2))
    outcomes = asyncio.run(run_many(worker, 30))
    for outcome in outcomes:
        assert isinstance(outcome, WorkerResult)
        with pytest.raises(InvalidImageError):
            inspect_image(outcome.image)


def test_crash_rate_one_crashes_and_restart_comes_back() -> None:
    worker = SimulatedWorker("w", "a", replace(FAST, crash_rate=1.0))
    with pytest.raises(WorkerCrashed):
        asyncio.run(worker.execute(assignment(1)))
    assert asyncio.run(worker.restart()) is True
