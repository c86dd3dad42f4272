"""Round trips of every message and every validation error, with its code and field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from novelgen_desktop.engine.model import ErrorKind
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.codes import CloseCode, ErrorCode, ProtocolError
from novelgen_desktop.protocol.examples import TOKEN, example_messages

EXAMPLES = example_messages()


def wire(type_name: str, **changes: Any) -> dict[str, Any]:
    """The wire object of the first example of ``type_name``; ``None`` in changes deletes."""
    example = next(x for x in EXAMPLES if x.type == type_name)
    obj = m.to_wire(example)
    for key, value in changes.items():
        if value is _DELETE:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


_DELETE = object()


def refuse(obj: Any, code: ErrorCode, field: str | None = None, **kw: Any) -> ProtocolError:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    with pytest.raises(ProtocolError) as info:
        m.decode(text, **kw)
    assert info.value.code is code, info.value
    if field is not None:
        assert info.value.field == field, info.value
        assert repr(field) in info.value.message, info.value.message
    return info.value


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda x: x.type)
def test_round_trip(message: m.Message) -> None:
    text = m.encode(message)
    assert m.decode(text) == message
    assert m.encode(m.decode(text)) == text
    obj = json.loads(text)
    assert obj["v"] == 1
    assert obj["type"] == message.type


def test_every_type_has_an_example_and_a_sender() -> None:
    assert {x.type for x in EXAMPLES} == set(m.MESSAGE_TYPES)
    for cls in m.MESSAGE_TYPES.values():
        assert cls.senders


def test_optional_none_is_omitted_and_null_accepted() -> None:
    text = m.encode(m.Heartbeat(ts=1.5))
    assert json.loads(text) == {"v": 1, "type": "heartbeat", "ts": 1.5}
    assert m.decode('{"v":1,"type":"heartbeat","ts":1.5,"seq":null}') == m.Heartbeat(ts=1.5)


def test_integers_are_accepted_for_floats() -> None:
    assert m.decode('{"v":1,"type":"heartbeat","ts":2}') == m.Heartbeat(ts=2.0)


def test_non_ascii_survives() -> None:
    message = m.Assign(task_id="1", attempt=1, prompt="灯台守 — ☂ café", deadline=10.0)
    text = m.encode(message)
    assert "灯台守" in text  # compact UTF-8, not \\u escapes
    assert m.decode(text) == message


# -- envelope ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "{", "nul", '{"v":1,"type":"heartbeat","ts":1}x', "\x00", "1" * 5000]
)
def test_bad_json(text: str) -> None:
    refuse(text, ErrorCode.BAD_JSON)


@pytest.mark.parametrize("text", ["[]", "1", '"hello"', "null", "true"])
def test_not_an_object(text: str) -> None:
    refuse(text, ErrorCode.BAD_JSON)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    refuse(f'{{"v":1,"type":"heartbeat","ts":{constant}}}', ErrorCode.BAD_JSON)


def test_overflowing_numbers_are_not_infinity() -> None:
    refuse('{"v":1,"type":"heartbeat","ts":1e999}', ErrorCode.BAD_FIELD, "ts")


def test_duplicate_keys_are_refused() -> None:
    error = refuse('{"v":1,"type":"heartbeat","ts":1,"ts":2}', ErrorCode.BAD_JSON)
    assert "'ts'" in error.message


def test_deep_nesting_is_bad_json_not_a_crash() -> None:
    refuse("[" * 100_000 + "]" * 100_000, ErrorCode.BAD_JSON)


def test_version() -> None:
    refuse(wire("heartbeat", v=_DELETE), ErrorCode.MISSING_FIELD, "v")
    for bad in (2, 0, "1", 1.0, True, None, [1]):
        refuse(wire("heartbeat", v=bad), ErrorCode.BAD_VERSION, "v")


def test_type() -> None:
    refuse(wire("heartbeat", type=_DELETE), ErrorCode.MISSING_FIELD, "type")
    for bad in ("nope", "Hello", 3, None, ["hello"], "__class__", "senders"):
        refuse(wire("heartbeat", type=bad), ErrorCode.UNKNOWN_TYPE, "type")


def test_unknown_field_is_named() -> None:
    error = refuse(wire("heartbeat", colour="blue"), ErrorCode.UNKNOWN_FIELD, "colour")
    assert "colour" in error.message


def test_unknown_nested_field_is_named_with_its_path() -> None:
    obj = wire("job_progress")
    obj["workers"][0]["mood"] = "happy"
    refuse(obj, ErrorCode.UNKNOWN_FIELD, "workers[0].mood")


def test_frame_size_limits() -> None:
    refuse(" " * 11, ErrorCode.TOO_LARGE, max_chars=10)
    padded = json.dumps(wire("heartbeat")) + " " * m.MAX_CONTROL_FRAME
    refuse(padded, ErrorCode.TOO_LARGE)
    # the same padding is fine in a submit, whose limit is larger
    m.decode(json.dumps(wire("submit")) + " " * m.MAX_CONTROL_FRAME)


def test_forbidden_role() -> None:
    assign = m.encode(next(x for x in EXAMPLES if x.type == "assign"))
    refuse(assign, ErrorCode.FORBIDDEN_ROLE, "type", sender=m.Role.WORKER)
    submit = m.encode(next(x for x in EXAMPLES if x.type == "submit"))
    refuse(submit, ErrorCode.FORBIDDEN_ROLE, "type", sender=m.Role.WORKER)
    result = m.encode(next(x for x in EXAMPLES if x.type == "result"))
    refuse(result, ErrorCode.FORBIDDEN_ROLE, "type", sender=m.Role.CLIENT)
    assert m.decode(result, sender=m.Role.WORKER).type == "result"
    assert m.decode(m.encode(m.Heartbeat(ts=1.0)), sender=m.Role.CLIENT).type == "heartbeat"


# -- fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "changes", "code", "field"),
    [
        ("hello", {"token": _DELETE}, ErrorCode.MISSING_FIELD, "token"),
        ("hello", {"token": "short"}, ErrorCode.BAD_FIELD, "token"),
        ("hello", {"token": "x" * 21}, ErrorCode.BAD_FIELD, "token"),  # < 128 bits
        ("hello", {"token": TOKEN[:-1] + "!"}, ErrorCode.BAD_FIELD, "token"),
        ("hello", {"token": "x" * 129}, ErrorCode.TOO_LARGE, "token"),
        ("hello", {"token": 123}, ErrorCode.BAD_FIELD, "token"),
        ("hello", {"role": "admin"}, ErrorCode.BAD_FIELD, "role"),
        ("hello", {"role": "hub"}, ErrorCode.BAD_FIELD, "role"),
        ("hello", {"versions": []}, ErrorCode.BAD_FIELD, "versions"),
        ("hello", {"versions": [1, "2"]}, ErrorCode.BAD_FIELD, "versions[1]"),
        ("hello", {"versions": list(range(1, 18))}, ErrorCode.TOO_LARGE, "versions"),
        ("hello", {"versions": 1}, ErrorCode.BAD_FIELD, "versions"),
        ("hello", {"worker_id": _DELETE}, ErrorCode.MISSING_FIELD, "worker_id"),
        ("hello", {"account_id": _DELETE}, ErrorCode.MISSING_FIELD, "account_id"),
        ("hello", {"worker_id": "has space"}, ErrorCode.BAD_FIELD, "worker_id"),
        ("hello", {"capabilities": ["ok", ""]}, ErrorCode.BAD_FIELD, "capabilities[1]"),
        ("welcome", {"heartbeat_interval": 20}, ErrorCode.BAD_FIELD, "heartbeat_interval"),
        ("welcome", {"version": 1.5}, ErrorCode.BAD_FIELD, "version"),
        ("heartbeat", {"ts": "now"}, ErrorCode.BAD_FIELD, "ts"),
        ("heartbeat", {"ts": -1}, ErrorCode.BAD_FIELD, "ts"),
        ("heartbeat", {"ts": True}, ErrorCode.BAD_FIELD, "ts"),
        ("heartbeat", {"ts": None}, ErrorCode.BAD_FIELD, "ts"),
        ("heartbeat", {"seq": 2**60}, ErrorCode.BAD_FIELD, "seq"),
        ("bye", {"reason": "bored"}, ErrorCode.BAD_FIELD, "reason"),
        ("error", {"code": "oops"}, ErrorCode.BAD_FIELD, "code"),
        ("ack", {"attempt": _DELETE}, ErrorCode.MISSING_FIELD, "attempt"),
        ("ack", {"re": "req-1"}, ErrorCode.BAD_FIELD, "re"),
        ("assign", {"task_id": 4812}, ErrorCode.BAD_FIELD, "task_id"),
        ("assign", {"task_id": "007"}, ErrorCode.BAD_FIELD, "task_id"),
        ("assign", {"attempt": 0}, ErrorCode.BAD_FIELD, "attempt"),
        ("assign", {"attempt": 2.0}, ErrorCode.BAD_FIELD, "attempt"),
        ("assign", {"prompt": ""}, ErrorCode.BAD_FIELD, "prompt"),
        ("assign", {"prompt": "x" * 32_001}, ErrorCode.TOO_LARGE, "prompt"),
        ("assign", {"prompt": "\ud800"}, ErrorCode.BAD_FIELD, "prompt"),
        ("assign", {"metadata": {"a": [1]}}, ErrorCode.BAD_FIELD, "metadata.a"),
        ("assign", {"metadata": {"": 1}}, ErrorCode.BAD_FIELD, "metadata key"),
        ("assign", {"metadata": {str(i): i for i in range(65)}}, ErrorCode.TOO_LARGE, "metadata"),
        ("progress", {"stage": "dreaming"}, ErrorCode.BAD_FIELD, "stage"),
        ("progress", {"percent": 101}, ErrorCode.BAD_FIELD, "percent"),
        (
            "progress",
            {"conversation_url": "javascript:alert(1)"},
            ErrorCode.BAD_FIELD,
            "conversation_url",
        ),
        ("result", {"sha256": "A" * 64}, ErrorCode.BAD_FIELD, "sha256"),
        ("result", {"size": 0}, ErrorCode.BAD_FIELD, "size"),
        ("result", {"size": m.MAX_IMAGE_BYTES + 1}, ErrorCode.BAD_FIELD, "size"),
        ("result", {"mime": "image/gif"}, ErrorCode.BAD_FIELD, "mime"),
        ("result", {"encoding": "hex"}, ErrorCode.BAD_FIELD, "encoding"),
        ("result", {"data": "AAAA"}, ErrorCode.BAD_FIELD, "data"),  # binary: no data
        ("result", {"encoding": "base64"}, ErrorCode.MISSING_FIELD, "data"),
        ("result", {"encoding": "base64", "data": "AAAA"}, ErrorCode.BAD_FIELD, "data"),
        ("task_error", {"kind": "lease_expired"}, ErrorCode.BAD_FIELD, "kind"),
        ("task_error", {"kind": "sleepy"}, ErrorCode.BAD_FIELD, "kind"),
        ("task_error", {"kind": "timeout"}, ErrorCode.BAD_FIELD, "retry_after"),
        ("task_error", {"retry_after": -5}, ErrorCode.BAD_FIELD, "retry_after"),
        ("status", {"tab_health": "meh"}, ErrorCode.BAD_FIELD, "tab_health"),
        ("status", {"busy": 1}, ErrorCode.BAD_FIELD, "busy"),
        ("submit", {"path": "/x.txt"}, ErrorCode.BAD_FIELD, "path"),  # both prompts and path
        ("submit", {"prompts": _DELETE}, ErrorCode.BAD_FIELD, "prompts"),  # neither
        ("submit", {"prompts": []}, ErrorCode.BAD_FIELD, "prompts"),
        ("submit", {"prompts": ["ok", 3]}, ErrorCode.BAD_FIELD, "prompts[1]"),
        ("submit", {"request_id": _DELETE}, ErrorCode.MISSING_FIELD, "request_id"),
        ("subscribe", {"interval": 0.01}, ErrorCode.BAD_FIELD, "interval"),
        ("subscribe", {"job_ids": ["a"] * 65}, ErrorCode.TOO_LARGE, "job_ids"),
        ("job_progress", {"state": "sleeping"}, ErrorCode.BAD_FIELD, "state"),
        ("job_progress", {"workers": [{}]}, ErrorCode.MISSING_FIELD, "workers[0].worker_id"),
        ("job_progress", {"workers": ["w1"]}, ErrorCode.BAD_FIELD, "workers[0]"),
        (
            "errors",
            {"groups": [{"kind": "timeout", "count": 0}]},
            ErrorCode.BAD_FIELD,
            "groups[0].count",
        ),
        ("control", {"action": "restart"}, ErrorCode.BAD_FIELD, "action"),
        ("list_jobs", {"states": ["done"]}, ErrorCode.BAD_FIELD, "states[0]"),
        ("list_jobs", {"limit": 0}, ErrorCode.BAD_FIELD, "limit"),
        ("jobs", {"jobs": {}}, ErrorCode.BAD_FIELD, "jobs"),
    ],
)
def test_field_errors(type_name: str, changes: dict[str, Any], code: ErrorCode, field: str) -> None:
    refuse(wire(type_name, **changes), code, field)


def test_client_hello_must_not_carry_worker_fields() -> None:
    obj = {"v": 1, "type": "hello", "token": TOKEN, "role": "client", "versions": [1]}
    assert m.decode(json.dumps(obj)).type == "hello"
    refuse({**obj, "tab_id": "3"}, ErrorCode.BAD_FIELD, "tab_id")
    refuse({**obj, "capabilities": ["x"]}, ErrorCode.BAD_FIELD, "capabilities")


def test_refusal_needs_text_and_worker_kinds_cover_the_issue() -> None:
    obj = wire("task_error", kind="refused", message="  ", retry_after=_DELETE)
    refuse(obj, ErrorCode.BAD_FIELD, "message")
    assert {k.value for k in m.WORKER_ERROR_KINDS} == {
        "rate_limited",
        "refused",
        "timeout",
        "page_error",
        "network",
        "login_required",
    }
    assert set(ErrorKind) >= m.WORKER_ERROR_KINDS


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(ProtocolError) as info:
        m.encode(m.Heartbeat(ts=float("nan")))
    assert info.value.field == "ts"
    with pytest.raises(ProtocolError):
        m.encode(m.Assign(task_id="1", attempt=0, prompt="p", deadline=1.0))


def test_negotiation() -> None:
    assert m.negotiate((1,)) == 1
    assert m.negotiate((3, 2, 1)) == 1
    assert m.negotiate((2, 3)) is None


def test_timing_and_close_codes_match_the_issue() -> None:
    assert m.HEARTBEAT_INTERVAL < 20 and m.IDLE_TIMEOUT == 45 and m.AUTH_TIMEOUT == 5
    assert CloseCode.UNAUTHORIZED == 4001 and CloseCode.AUTH_TIMEOUT == 4002
    assert CloseCode.FORBIDDEN_ORIGIN == 4003 and CloseCode.POLICY == 4008
    assert CloseCode.VERSION_UNSUPPORTED == 4009 and CloseCode.GOING_AWAY == 1001
