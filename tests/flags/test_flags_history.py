"""Every version of the shared set, rollback without flip-flop, shared between processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import FlagLayer, FlagSetting, Variant
from novelgen_desktop.flags.flagset import default_layer, settings_digest
from novelgen_desktop.flags.history import FlagHistory


def layer_with(**values: bool) -> FlagLayer:
    layer = default_layer()
    for name, value in values.items():
        layer[name] = FlagSetting(value=value)
    return layer


A = layer_with()
B = layer_with(multi_tab=False)
C = layer_with(multi_tab=False, memory_governor=False)
D = layer_with(selector_updates=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def history(tmp_path: Path) -> Iterator[FlagHistory]:
    h = FlagHistory(tmp_path / "flags" / "history.sqlite3", clock=Clock())
    yield h
    h.close()


def sources_of(layer: FlagLayer, source: str = "local file") -> dict[str, str]:
    return dict.fromkeys(layer, source)


def test_record_adds_a_version_only_when_content_changes(history: FlagHistory) -> None:
    assert history.latest() is None
    v1 = history.record(A, sources_of(A), "started")
    assert (v1.version, v1.parent, v1.reason) == (1, None, "started")
    assert v1.settings == A
    assert v1.digest == settings_digest(A)
    assert v1.created_at == 1001.0
    # same content (another order, another reason): the same version
    again = history.record(dict(reversed(list(A.items()))), sources_of(A, "remote"), "again")
    assert again == v1
    v2 = history.record(B, sources_of(B), "flags.json changed")
    assert (v2.version, v2.parent) == (2, 1)
    v3 = history.record(C, sources_of(C), "remote")
    assert (v3.version, v3.parent) == (3, 2)
    assert history.record(C, sources_of(C), "remote") == v3
    assert [v.version for v in history.versions()] == [3, 2, 1]
    assert [v.version for v in history.versions(limit=2)] == [3, 2]
    assert history.get(2) == v2
    assert history.get(99) is None
    assert history.latest() == v3


def test_experiments_survive_the_round_trip(history: FlagHistory) -> None:
    layer = {
        **A,
        "fresh_chat": FlagSetting(
            variants=(Variant("control", 90.0, False), Variant("fresh", 10.0, True)),
            salt="fc-1",
        ),
    }
    recorded = history.record(layer, sources_of(layer), "experiment")
    assert history.get(recorded.version) == recorded
    assert recorded.settings == layer
    assert recorded.sources == sources_of(layer)


def test_rollback_goes_to_the_parent_then_further_back(history: FlagHistory) -> None:
    history.record(A, sources_of(A, "default"), "a")
    history.record(B, sources_of(B), "b")
    history.record(C, sources_of(C, "remote"), "c")
    first = history.rollback()
    assert first.settings == B
    assert (first.version, first.parent, first.reason) == (4, 1, "rollback to v2")
    assert first.sources == sources_of(B)  # where each value first came from
    assert history.pinned() is not None
    assert history.pinned().version == 2  # type: ignore[union-attr]
    second = history.rollback()  # not back to C: one step further, to A
    assert second.settings == A
    assert (second.version, second.parent) == (5, None)
    assert history.pinned().version == 1  # type: ignore[union-attr]
    first_set = r"the set in force, v5 \(rollback to v1\), is the first recorded flag set"
    with pytest.raises(ConfigError, match=first_set):
        history.rollback()
    # a failed rollback changes nothing
    assert history.latest() == second
    assert history.pinned().version == 1  # type: ignore[union-attr]


def test_rollback_to_an_explicit_version(history: FlagHistory) -> None:
    for layer, why in ((A, "a"), (B, "b"), (C, "c"), (D, "d")):
        history.record(layer, {}, why)
    restored = history.rollback(to=2)
    assert restored.settings == B
    assert (restored.version, restored.parent, restored.reason) == (5, 1, "rollback to v2")
    assert history.pinned().version == 2  # type: ignore[union-attr]
    forward = history.rollback(to=4)  # "rolling back" to a later version is allowed
    assert forward.settings == D
    assert history.pinned().version == 4  # type: ignore[union-attr]


def test_rollback_with_nothing_recorded(history: FlagHistory) -> None:
    with pytest.raises(ConfigError, match="no flag set has been recorded yet"):
        history.rollback()
    assert history.pinned() is None


def test_rollback_of_the_first_version(history: FlagHistory) -> None:
    history.record(A, {}, "a")
    with pytest.raises(ConfigError, match="the set in force, v1, is the first recorded flag set"):
        history.rollback()
    assert history.pinned() is None


@pytest.mark.parametrize("to", [0, 4, 99, -1])
def test_rollback_to_an_unknown_version_names_the_range(history: FlagHistory, to: int) -> None:
    history.record(A, {}, "a")
    history.record(B, {}, "b")
    history.record(C, {}, "c")
    with pytest.raises(ConfigError) as caught:
        history.rollback(to=to)
    assert str(caught.value) == f"there is no flag set version {to} (versions 1–3)"
    assert history.pinned() is None
    assert history.latest().version == 3  # type: ignore[union-attr]


def test_release(history: FlagHistory) -> None:
    assert history.release() is False
    history.record(A, {}, "a")
    history.record(B, {}, "b")
    history.rollback()
    assert history.release() is True
    assert history.pinned() is None
    assert history.release() is False
    # after a release the next different set is recorded on top of the rollback's version
    v = history.record(C, {}, "c")
    assert (v.version, v.parent) == (4, 3)


def test_two_histories_on_one_file_see_each_others_changes(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    one, two = FlagHistory(path), FlagHistory(path)
    try:
        one.record(A, {}, "a")
        assert two.latest() is not None
        before = one.data_version()
        assert one.data_version() == before  # nothing happened: no change
        two.record(B, {}, "b")
        after_record = one.data_version()
        assert after_record != before
        assert one.latest().settings == B  # type: ignore[union-attr]
        # the same content recorded from the other side is not a second version
        assert one.record(B, {}, "b again").version == 2
        two.rollback()
        assert one.data_version() != after_record
        assert one.pinned().version == 1  # type: ignore[union-attr]
        own = two.data_version()
        two.release()
        assert two.data_version() == own  # a connection's own commits do not count
        assert one.pinned() is None
    finally:
        one.close()
        two.close()


def test_a_corrupt_history_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="cannot open the flag history"):
        FlagHistory(path)


def test_unknown_flags_in_an_old_row_are_ignored(history: FlagHistory) -> None:
    history.record(A, {}, "a")
    history._conn.execute(
        "UPDATE versions SET settings = ? WHERE version = 1",
        ('{"multi_tab": false, "flag_from_the_future": 3}',),
    )
    assert history.get(1).settings == {"multi_tab": FlagSetting(value=False)}  # type: ignore[union-attr]
