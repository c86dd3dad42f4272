"""Layering, sources, and the stable, weighted A/B assignment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from novelgen_desktop.flags import flagset as flagset_module
from novelgen_desktop.flags.document import FlagLayer, FlagSetting, Variant
from novelgen_desktop.flags.flagset import (
    FixedFlags,
    FlagSet,
    bucket,
    choose_variant,
    default_layer,
    resolve_shared,
    task_unit,
)
from novelgen_desktop.flags.registry import (
    FLAGS,
    REGISTRY,
    FlagDefinition,
    FlagKind,
    FlagUnit,
    browser_flag_names,
)

IDS = [task_unit("job-7f3a", n) for n in range(10_000)]
# With n = 10,000 ids and a uniform hash, the share of a variant of weight p has standard
# deviation sqrt(p(1-p)/n) ≤ 0.5 percentage points; ±2 points is ≥ 4 standard deviations, a
# false failure chance below 1e-4 per check (and the ids are fixed, so the outcome is too).
TOLERANCE = 0.02


def experiment(*weights: float, salt: str | None = None) -> FlagSetting:
    return FlagSetting(
        variants=tuple(Variant(f"v{i}", w, i % 2 == 1) for i, w in enumerate(weights)),
        salt=salt,
    )


def shares(flags: FlagSet, name: str, ids: list[str]) -> dict[str | None, float]:
    counts = Counter(flags.variant(name, unit) for unit in ids)
    return {variant: count / len(ids) for variant, count in counts.items()}


# --- layering -----------------------------------------------------------------------------


def test_defaults_only() -> None:
    layer, sources = resolve_shared(None, None)
    assert layer == default_layer()
    assert set(layer) == set(REGISTRY)
    assert all(source == "default" for source in sources.values())
    flags = FlagSet(shared=layer, sources=sources)
    for flag in FLAGS:
        assert flags.value(flag.name) == flag.default
        assert flags.source(flag.name) == "default"


def test_layers_default_local_remote_overrides() -> None:
    local: FlagLayer = {
        "multi_tab": FlagSetting(value=False),
        "memory_governor": FlagSetting(value=False),
        "selector_updates": FlagSetting(value=False),
    }
    remote: FlagLayer = {
        "memory_governor": FlagSetting(value=True),
        "selector_updates": FlagSetting(value=True),
    }
    layer, sources = resolve_shared(local, remote)
    flags = FlagSet(
        shared=layer,
        sources=sources,
        overrides={"selector_updates": FlagSetting(value=False)},
        override_sources={"selector_updates": "--flag"},
    )
    # default
    assert flags.value("chat_strategies") is True
    assert flags.source("chat_strategies") == "default"
    # local beats default
    assert flags.value("multi_tab") is False
    assert flags.source("multi_tab") == "local file"
    # remote beats local
    assert flags.value("memory_governor") is True
    assert flags.source("memory_governor") == "remote"
    # an override beats remote
    assert flags.value("selector_updates") is False
    assert flags.source("selector_updates") == "--flag"
    assert flags.sources["selector_updates"] == "remote"  # the shared part still says remote
    assert sources == {
        "multi_tab": "local file",
        "auto_single_tab": "default",
        "memory_governor": "remote",
        "selector_updates": "remote",
        "reference_images": "default",
        "chat_strategies": "default",
        "fresh_chat": "default",
    }


def test_override_of_a_false_value_is_not_skipped() -> None:
    layer, sources = resolve_shared(None, None)
    flags = FlagSet(
        shared=layer,
        sources=sources,
        overrides={"multi_tab": FlagSetting(value=False)},
        override_sources={"multi_tab": "environment NOVELGEN_FLAG_MULTI_TAB"},
    )
    assert flags.enabled("multi_tab") is False
    assert flags.source("multi_tab") == "environment NOVELGEN_FLAG_MULTI_TAB"


def test_an_unknown_flag_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="unknown flag 'multi_tabs'"):
        FlagSet().value("multi_tabs")


def test_a_flag_missing_from_shared_falls_back_to_its_default() -> None:
    flags = FlagSet(shared={})
    assert flags.value("fresh_chat") is False
    assert flags.value("multi_tab") is True


def test_fixed_flags_default() -> None:
    assert FixedFlags().current.value("multi_tab") is True


# --- stable assignment --------------------------------------------------------------------


def test_same_id_same_variant_across_fresh_flagsets() -> None:
    setting = experiment(50, 50, salt="stable")
    first = FlagSet(shared={**default_layer(), "fresh_chat": setting})
    second = FlagSet(shared={**default_layer(), "fresh_chat": setting})
    picks = [first.variant("fresh_chat", unit) for unit in IDS[:500]]
    assert picks == [second.variant("fresh_chat", unit) for unit in IDS[:500]]
    assert picks == [first.variant("fresh_chat", unit) for unit in IDS[:500]]
    assert set(picks) == {"v0", "v1"}
    for unit, pick in zip(IDS[:500], picks, strict=True):
        value = first.value("fresh_chat", unit)
        assert value is (pick == "v1")


def test_bucket_is_a_pure_function_in_range() -> None:
    points = [bucket("salt", unit) for unit in IDS[:1000]]
    assert points == [bucket("salt", unit) for unit in IDS[:1000]]
    assert all(0.0 <= p < 1.0 for p in points)
    # a fixed known value pins the hash itself: changing it would reshuffle every experiment
    assert bucket("fresh_chat", "job/1") == int.from_bytes(
        __import__("hashlib").sha256(b"fresh_chat\x00job/1").digest()[:8], "big"
    ) / float(1 << 64)


_CHILD = """
import json, sys
from novelgen_desktop.flags.document import FlagSetting, Variant
from novelgen_desktop.flags.flagset import FlagSet, default_layer
setting = FlagSetting(variants=(Variant("a", 1.0, False), Variant("b", 1.0, True),
                                Variant("c", 2.0, True)), salt=sys.argv[1])
flags = FlagSet(shared={**default_layer(), "fresh_chat": setting})
ids = json.loads(sys.stdin.read())
print(json.dumps([flags.variant("fresh_chat", unit) for unit in ids]))
"""


def test_same_variants_in_another_process() -> None:
    ids = [*IDS[:300], "", "ünïcode/1", "job/0"]
    setting = FlagSetting(
        variants=(Variant("a", 1.0, False), Variant("b", 1.0, True), Variant("c", 2.0, True)),
        salt="cross-process",
    )
    here = FlagSet(shared={**default_layer(), "fresh_chat": setting})
    expected = [here.variant("fresh_chat", unit) for unit in ids]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # str hash differs; ours must not
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, "cross-process"],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    assert json.loads(out.stdout) == expected
    assert set(expected) == {"a", "b", "c"}


# --- weights ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights",
    [(50, 50), (90, 10), (1, 1, 2), (10, 0, 30, 60), (0.25, 0.75)],
    ids=["50-50", "90-10", "1-1-2", "10-0-30-60", "fractions"],
)
def test_weights_are_respected(weights: tuple[float, ...]) -> None:
    flags = FlagSet(shared={**default_layer(), "fresh_chat": experiment(*weights)})
    got = shares(flags, "fresh_chat", IDS)
    total = sum(weights)
    for index, weight in enumerate(weights):
        share = got.get(f"v{index}", 0.0)
        assert abs(share - weight / total) <= TOLERANCE, (weights, got)


def test_a_weight_zero_variant_is_never_chosen() -> None:
    for position in range(3):
        weights = [1.0, 1.0, 1.0]
        weights[position] = 0.0
        setting = experiment(*weights)
        chosen = {choose_variant("fresh_chat", setting, unit).name for unit in IDS}
        assert f"v{position}" not in chosen
        assert len(chosen) == 2


def test_only_one_nonzero_weight_always_chosen() -> None:
    setting = experiment(0, 0, 5, 0)
    assert {choose_variant("fresh_chat", setting, unit).name for unit in IDS} == {"v2"}


def test_different_salts_give_independent_assignments() -> None:
    one = FlagSet(shared={**default_layer(), "fresh_chat": experiment(50, 50, salt="one")})
    two = FlagSet(shared={**default_layer(), "fresh_chat": experiment(50, 50, salt="two")})
    agree = sum(
        one.variant("fresh_chat", unit) == two.variant("fresh_chat", unit) for unit in IDS
    ) / len(IDS)
    # independent 50/50 assignments agree on half the ids (same ±2-point bound as above)
    assert abs(agree - 0.5) <= TOLERANCE, agree


def test_salt_defaults_to_the_flag_name() -> None:
    unsalted = experiment(50, 50)
    named = experiment(50, 50, salt="fresh_chat")
    for unit in IDS[:500]:
        assert choose_variant("fresh_chat", unsalted, unit) == choose_variant(
            "fresh_chat", named, unit
        )
    # two flags split without a salt are not in lock-step
    both = FlagSet(shared={**default_layer(), "fresh_chat": unsalted, "reference_images": unsalted})
    agree = sum(
        both.variant("fresh_chat", unit) == both.variant("reference_images", unit) for unit in IDS
    ) / len(IDS)
    assert abs(agree - 0.5) <= TOLERANCE, agree


def test_changing_a_weight_moves_only_the_needed_ids() -> None:
    """Going from 10/90 to 20/80 keeps everyone already in v0 in v0 (the buckets are fixed)."""
    before = experiment(10, 90, salt="ramp")
    after = experiment(20, 80, salt="ramp")
    for unit in IDS:
        if choose_variant("fresh_chat", before, unit).name == "v0":
            assert choose_variant("fresh_chat", after, unit).name == "v0"


# --- the FlagSet's answers ------------------------------------------------------------------


def test_value_of_an_experiment_without_a_unit_is_the_default() -> None:
    always_on = FlagSetting(variants=(Variant("a", 0, False), Variant("b", 1, True)))
    flags = FlagSet(shared={**default_layer(), "fresh_chat": always_on})
    assert flags.value("fresh_chat") is REGISTRY["fresh_chat"].default is False
    assert flags.value("fresh_chat", "job/1") is True
    always_off = FlagSetting(variants=(Variant("a", 1, False), Variant("b", 0, True)))
    flags = FlagSet(shared={**default_layer(), "reference_images": always_off})
    assert flags.value("reference_images") is True
    assert flags.enabled("reference_images", "job/1") is False


def test_variant_of_a_plain_flag_is_none() -> None:
    assert FlagSet().variant("fresh_chat", "job/1") is None


def test_variants_for_uses_task_and_worker_units(monkeypatch: pytest.MonkeyPatch) -> None:
    worker_flag = FlagDefinition(
        "tab_trial", "test-only", FlagKind.BOOL, False, owner="tests", unit=FlagUnit.WORKER
    )
    monkeypatch.setitem(REGISTRY, worker_flag.name, worker_flag)
    monkeypatch.setattr(flagset_module, "FLAGS", (*FLAGS, worker_flag))
    task_split = experiment(50, 50, salt="t")
    worker_split = experiment(50, 50, salt="w")
    flags = FlagSet(shared={**default_layer(), "fresh_chat": task_split, "tab_trial": worker_split})
    for n in range(200):
        task, worker = task_unit("job", n), f"worker-{n % 7}"
        chosen = flags.variants_for(task, worker)
        assert chosen == {
            "fresh_chat": choose_variant("fresh_chat", task_split, task).name,
            "tab_trial": choose_variant("tab_trial", worker_split, worker).name,
        }
    # same task on a different worker: the task flag keeps its variant
    a = flags.variants_for("job/1", "worker-a")
    b = flags.variants_for("job/1", "worker-b")
    assert a["fresh_chat"] == b["fresh_chat"]
    # over many workers each variant of the worker flag shows up, independent of the task
    assert {flags.variants_for("job/1", f"w{n}")["tab_trial"] for n in range(50)} == {"v0", "v1"}


def test_variants_for_lists_only_experiments() -> None:
    assert FlagSet().variants_for("job/1", "worker-1") == {}
    flags = FlagSet(shared={**default_layer(), "reference_images": experiment(1, 1)})
    assert set(flags.variants_for("job/1", "w")) == {"reference_images"}


def test_browser_flags() -> None:
    assert FlagSet().browser_flags() == {
        "multi_tab": True,
        "reference_images": True,
        "selector_updates": True,
    }
    assert tuple(FlagSet().browser_flags()) == browser_flag_names()
    layer, sources = resolve_shared(
        {
            "multi_tab": FlagSetting(value=False),
            "memory_governor": FlagSetting(value=False),
            "reference_images": FlagSetting(
                variants=(Variant("a", 1, False), Variant("b", 0, True))
            ),
        },
        None,
    )
    flags = FlagSet(
        shared=layer,
        sources=sources,
        overrides={"selector_updates": FlagSetting(value=False)},
    )
    # an experiment is sent as its default: the hub decides per task itself
    assert flags.browser_flags() == {
        "multi_tab": False,
        "reference_images": True,
        "selector_updates": False,
    }


def test_digest_follows_content_only() -> None:
    a = FlagSet(shared=default_layer())
    b = FlagSet(shared=dict(reversed(list(default_layer().items()))), version=9)
    assert a.digest() == b.digest()
    c = FlagSet(shared={**default_layer(), "multi_tab": FlagSetting(value=False)})
    assert c.digest() != a.digest()
    # overrides are not part of the shared, versioned set
    d = FlagSet(shared=default_layer(), overrides={"multi_tab": FlagSetting(value=False)})
    assert d.digest() == a.digest()
