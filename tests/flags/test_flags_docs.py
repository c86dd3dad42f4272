"""docs/flags.md says what the code does: its flag table, file example, error example and
command lines are checked against the registry, the parser and the command line."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from novelgen_desktop.cli.main import build_parser
from novelgen_desktop.flags.document import FlagConfigError, parse_document_text
from novelgen_desktop.flags.registry import FLAGS, FlagUnit

DOC = (Path(__file__).resolve().parents[2] / "docs" / "flags.md").read_text(encoding="utf-8")
UNIT_WORDS = {FlagUnit.GLOBAL: "hub", FlagUnit.TASK: "task", FlagUnit.WORKER: "tab"}


def code_blocks(language: str) -> list[str]:
    """The fenced blocks opened with ```<language> (fences paired in order)."""
    blocks: list[str] = []
    opened: str | None = None
    lines: list[str] = []
    for line in DOC.splitlines():
        if line.startswith("```"):
            if opened is None:
                opened, lines = line[3:].strip(), []
            else:
                if opened == language:
                    blocks.append("\n".join(lines) + "\n")
                opened = None
        elif opened is not None:
            lines.append(line)
    return blocks


def test_the_flag_table_is_the_registry() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (on|off) \| (\w+) \|", DOC, flags=re.M)
    assert [name for name, _, _ in rows] == [flag.name for flag in FLAGS]
    for (name, default, unit), flag in zip(rows, FLAGS, strict=True):
        assert default == ("on" if flag.default else "off"), name
        assert unit == UNIT_WORDS[flag.unit], name


def test_the_file_example_is_valid() -> None:
    (example,) = code_blocks("json")
    layer = parse_document_text(example, "docs/flags.md")
    assert layer["multi_tab"].value is False
    assert [v.name for v in layer["fresh_chat"].variants] == ["control", "fresh"]


def test_the_error_example_is_what_the_checker_says() -> None:
    block = next(b for b in code_blocks("") if "nothing applied" in b)
    text = (
        '{\n  "schema": 1,\n  "flags": {\n'
        '    "multi_tabs": false,\n    "memory_governor": "no"\n  }\n}\n'
    )
    try:
        parse_document_text(text, "flags.json")
    except FlagConfigError as exc:
        assert str(exc).strip() == block.strip()
    else:
        raise AssertionError("the example file was accepted")


def test_every_command_line_parses() -> None:
    parser = build_parser()
    lines = [
        line.split("#")[0].strip()
        for block in code_blocks("")
        for line in block.splitlines()
        if "novelgen " in line and not line.lstrip().startswith(("job ", "feature"))
    ]
    assert len(lines) >= 6
    for line in lines:
        words = shlex.split(line)
        words = words[words.index("novelgen") + 1 :]
        parser.parse_args(words)  # SystemExit (a failed test) on an unknown option


def test_show_output_shape_matches_the_doc(capsys: object) -> None:
    from novelgen_desktop.cli.main import main

    assert main(["flags", "show"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out.startswith("feature flags v1\n")
    shown = re.findall(r"^  (\w+) ", out, flags=re.M)
    assert shown == [flag.name for flag in FLAGS]
    assert json.loads(json.dumps(shown))  # (plain names)
