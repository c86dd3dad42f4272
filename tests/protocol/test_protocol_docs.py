"""docs/protocol.md and the code cannot drift: examples decode, field tables match, codes listed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.codes import CloseCode, ErrorCode
from novelgen_desktop.protocol.schema import schema_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TEXT = DOC.read_text(encoding="utf-8")
JSON_BLOCKS = re.findall(r"^```json\n(.*?)^```", TEXT, flags=re.DOTALL | re.MULTILINE)
NESTED = {
    "ReferenceRef": m.ReferenceRef,
    "WorkerStat": m.WorkerStat,
    "ErrorGroup": m.ErrorGroup,
    "JobSummary": m.JobSummary,
}


def sections() -> dict[str, str]:
    """``### `type``` and ``#### object `Name``` headings → their text up to the next heading."""
    parts = re.split(r"^(#{3,4} .*)$", TEXT, flags=re.MULTILINE)
    out: dict[str, str] = {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        match = re.fullmatch(r"#{3,4} (?:object )?`([a-zA-Z_]+)`", heading.strip())
        if match:
            out[match.group(1)] = body
    return out


SECTIONS = sections()


def test_there_are_examples() -> None:
    assert len(JSON_BLOCKS) >= len(m.MESSAGE_TYPES)


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=lambda b: json.loads(b).get("type", "?"))
def test_every_json_example_decodes(block: str) -> None:
    message = m.decode(block)
    # and it says what the code would say: same fields, same values
    assert m.to_wire(message) == {k: v for k, v in json.loads(block).items() if v is not None} | {
        k: v for k, v in m.to_wire(message).items() if k not in json.loads(block)
    }


def test_every_message_type_has_an_example() -> None:
    types = {json.loads(block)["type"] for block in JSON_BLOCKS}
    assert types == set(m.MESSAGE_TYPES)


@pytest.mark.parametrize("name", [*m.MESSAGE_TYPES, *NESTED])
def test_field_table_lists_exactly_the_fields(name: str) -> None:
    assert name in SECTIONS, f"docs/protocol.md has no section for {name!r}"
    documented = re.findall(r"^\| `([a-z_0-9]+)` \|", SECTIONS[name], flags=re.MULTILINE)
    cls = m.MESSAGE_TYPES.get(name) or NESTED[name]
    assert documented == [f.name for f in schema_for(cls).fields]


@pytest.mark.parametrize("name", list(m.MESSAGE_TYPES))
def test_direction_is_stated(name: str) -> None:
    arrows = {
        m.Role.WORKER: "W→H",
        m.Role.CLIENT: "C→H",
    }
    body = SECTIONS[name]
    first = body.strip().splitlines()[0]
    senders = m.MESSAGE_TYPES[name].senders
    if senders == frozenset(m.Role):
        assert first.startswith("**any**")
    elif senders == {m.Role.HUB}:
        assert "H→" in first and "→H" not in first.split("—")[0]
    else:
        for role in senders:
            assert arrows[role] in first


def test_every_error_code_and_close_code_is_listed() -> None:
    for code in ErrorCode:
        assert f"| `{code.value}` |" in TEXT, code
    for close in CloseCode:
        assert f"| {close.value} | `{close.name.lower()}` |" in TEXT, close


def test_measured_choice_is_recorded() -> None:
    assert "**Choice: binary frames.**" in TEXT
    assert "What was measured" in TEXT and "Not measured" in TEXT
