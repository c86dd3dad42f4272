"""Throw random and mutated frames at ``decode``: only ProtocolError may ever come out.

16,000 frames in all: 3,000 random texts, 1,000 random JSON values and message-shaped
objects, 10,000 mutated valid frames (every example message, 1-3 mutations each, a quarter
also damaged as text) and 2,000 random binary frames. Whatever ``decode`` accepts must
encode and decode back to itself.
"""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.codes import ErrorCode, ProtocolError
from novelgen_desktop.protocol.examples import example_messages
from novelgen_desktop.protocol.framing import ImageReceiver, parse_image_frame

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
WIRES = [m.to_wire(x) for x in example_messages()]
FIELD_NAMES = sorted({key for wire in WIRES for key in wire} | {"v", "type", ""})

ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT
    | st.sampled_from(["1", "4812", "007", "-1", "image/png", "binary", "base64", "worker"])
    | st.sampled_from(["rate_limited", "refused", "running", "pause", "a" * 64, "x" * 5000])
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | ANY_TEXT, children, max_size=5)
    ),
    max_leaves=8,
)


def check(text: str) -> None:
    try:
        message = m.decode(text)
    except ProtocolError as err:
        assert isinstance(err.code, ErrorCode)
        assert isinstance(err.message, str)
        assert err.message
        return
    again = m.encode(message)
    assert m.decode(again) == message


def dumps(obj: Any) -> str:
    # ensure_ascii so lone surrogates travel as \\udxxx escapes, as a hostile peer would send
    return json.dumps(obj, allow_nan=True)


@settings(FUZZ, max_examples=3000)
@given(ANY_TEXT | st.text(alphabet='{}[]":,0123456789.eE+-truefalsn \\v', max_size=60))
def test_random_text(text: str) -> None:
    check(text)


@settings(FUZZ, max_examples=1000)
@given(
    JSON
    | st.builds(
        lambda type_name, body: {**body, "v": 1, "type": type_name},
        st.sampled_from(sorted(m.MESSAGE_TYPES)),
        st.dictionaries(st.sampled_from(FIELD_NAMES), JSON, max_size=8),
    )
)
def test_random_json(obj: Any) -> None:
    check(dumps(obj))


_LEAVES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    1000,
    1001,
    2**31,
    2**53 + 1,
    10**30,
    0.5,
    -0.0,
    1e11,
    1e300,
    "",
    "1",
    "4812",
    "007",
    "-1",
    "a" * 64,
    "x" * 5000,
    "\ud800",
    "é☂",
    "image/png",
    "binary",
    "base64",
    "worker",
    "client",
    "hub",
    "rate_limited",
    "refused",
    "lease_expired",
    "running",
    "pause",
    "https://chatgpt.com/c/x",
    "javascript:alert(1)",
    [],
    {},
]


def _random_json(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 3 or roll < 0.6:
        return rnd.choice(_LEAVES)
    if roll < 0.8:
        return [_random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    keys = [*FIELD_NAMES, "\ud800", "x" * 100]
    return {rnd.choice(keys): _random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 4))}


def _mutate(value: Any, rnd: random.Random, depth: int = 0) -> Any:
    """One mutation somewhere inside ``value`` (a JSON object, array or scalar)."""
    if isinstance(value, dict) and value and depth < 4:
        key = rnd.choice(sorted(value))
        action = rnd.choice(["replace", "delete", "add", "recurse", "recurse"])
        out = dict(value)
        if action == "replace":
            out[key] = _random_json(rnd)
        elif action == "delete":
            del out[key]
        elif action == "add":
            out[rnd.choice([*FIELD_NAMES, "extra", "\u00e9"])] = _random_json(rnd)
        else:
            out[key] = _mutate(value[key], rnd, depth + 1)
        return out
    if isinstance(value, list) and value and depth < 4:
        index = rnd.randrange(len(value))
        out_list = list(value)
        action = rnd.choice(["replace", "delete", "recurse", "grow"])
        if action == "replace":
            out_list[index] = _random_json(rnd)
        elif action == "delete":
            del out_list[index]
        elif action == "grow":
            out_list.extend(out_list * rnd.randint(1, 40))
        else:
            out_list[index] = _mutate(value[index], rnd, depth + 1)
        return out_list
    return _random_json(rnd)


def _damage(text: str, rnd: random.Random) -> str:
    at = rnd.randint(0, len(text))
    action = rnd.choice(["truncate", "insert", "drop", "swap"])
    if action == "truncate":
        return text[:at]
    if action == "insert":
        return (
            text[:at]
            + rnd.choice(['"', "{", "}", "[", ",", ":", "\\", "\x00", "é", "1e9"])
            + text[at:]
        )
    if action == "drop":
        return text[:at] + text[at + 1 :]
    return text.replace(rnd.choice(['"', ":", ",", "1"]), rnd.choice(["'", "=", ";", "-"]), 1)


FRAMES_PER_EXAMPLE = 5


@settings(FUZZ, max_examples=2000)
@given(st.sampled_from(WIRES), st.randoms(use_true_random=False))
def test_mutated_frames(wire: dict[str, Any], rnd: random.Random) -> None:
    """2,000 examples x 5 frames: 10,000 mutated valid frames, a quarter of them also
    damaged as text. The mutations come from Hypothesis's seeded Random, so a failure
    replays and shrinks to its seed."""
    for _ in range(FRAMES_PER_EXAMPLE):
        obj: Any = wire
        for _ in range(rnd.randint(1, 3)):
            obj = _mutate(obj, rnd)
        text = dumps(obj)
        if rnd.random() < 0.25:
            text = _damage(text, rnd)
        check(text)


@settings(FUZZ, max_examples=2000)
@given(st.binary(max_size=64) | st.builds(lambda b: b"NGI1" + b, st.binary(max_size=40)))
def test_random_binary_frames(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_image_frame(frame)
    receiver = ImageReceiver()
    result = next(x for x in example_messages() if isinstance(x, m.Result))
    receiver.announce(result)
    with contextlib.suppress(ProtocolError):
        receiver.binary_frame(frame)
    assert receiver.pending is None


def test_mutations_reach_every_layer() -> None:
    """The mutator is not just producing bad JSON: frames fail at every check, some pass."""
    rnd = random.Random(20261123)
    codes: dict[str, int] = {}
    accepted = 0
    for i in range(3000):
        text = dumps(_mutate(WIRES[i % len(WIRES)], rnd))
        if rnd.random() < 0.25:
            text = _damage(text, rnd)
        try:
            m.decode(text)
            accepted += 1
        except ProtocolError as err:
            codes[err.code] = codes.get(err.code, 0) + 1
    assert accepted > 50
    assert {"bad_json", "bad_version", "unknown_type", "missing_field", "bad_field"} <= set(codes)
    assert {"unknown_field", "too_large"} <= set(codes)
