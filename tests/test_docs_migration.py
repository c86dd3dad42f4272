"""docs/migration.md tells users what to type: every ``novelgen …`` command line in it must
parse with the real command-line parser, and every file it links to must exist."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "migration.md"


_PREFIX = re.compile(r"^(?:\$ )?(?:\.venv/bin/)?(novelgen(?: .*)?)$")


def command_lines() -> list[tuple[int, str]]:
    """(line number, command) of every novelgen command in code blocks and code spans."""
    found: list[tuple[int, str]] = []
    prose: list[str] = []  # the text outside code blocks, line for line
    in_code = False
    pending = ""
    for number, line in enumerate(GUIDE.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            prose.append("")
            continue
        if not in_code:
            prose.append(line)
            continue
        prose.append("")
        text = pending + stripped
        if text.endswith("\\"):  # continued on the next line
            pending = text[:-1] + " "
            continue
        pending = ""
        match = _PREFIX.match(text)
        if match:
            found.append((number, match.group(1)))
    # Code spans, which may wrap over a line break of the Markdown source.
    text = "\n".join(prose)
    for span in re.finditer(r"`([^`]+)`", text):
        match = _PREFIX.match(" ".join(span.group(1).split()))
        if match:
            found.append((text.count("\n", 0, span.start()) + 1, match.group(1)))
    return sorted(found)


COMMANDS = command_lines()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if a.dest == "command")
    return dict(action.choices or {})


def subcommand_names(parser: argparse.ArgumentParser) -> set[str]:
    return set(subcommands(parser))


def test_the_guide_has_many_commands() -> None:
    assert len(COMMANDS) >= 40
    assert {argv.split()[1] for _, argv in COMMANDS if " " in argv} >= {
        "run",
        "validate",
        "serve",
        "pair",
        "submit",
        "verify",
        "resume",
    }


@pytest.mark.parametrize(("number", "command"), COMMANDS, ids=[f"L{n}" for n, _ in COMMANDS])
def test_every_command_in_the_guide_parses(number: int, command: str) -> None:
    argv = shlex.split(command, comments=True)[1:]
    parser = build_parser()
    if len(argv) == 1 and not argv[0].startswith("-"):
        # The command named in a sentence ("`novelgen submit` takes one file"): it must exist.
        assert argv[0] in subcommand_names(parser), f"docs/migration.md:{number}: {command}"
        return
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        # --help and --version parse, print and exit 0.
        if exc.code != 0:
            pytest.fail(f"docs/migration.md:{number}: `{command}` does not parse (exit {exc.code})")


def test_every_linked_file_exists() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://")):
            continue
        if not (GUIDE.parent / target).exists():
            missing.append(target)
    assert missing == []


def test_the_options_it_names_exist() -> None:
    """Options written on their own (``--memory-pause``) belong to some command."""
    text = GUIDE.read_text(encoding="utf-8")
    named = set(re.findall(r"`(--[a-z][a-z-]*)", text))
    known: set[str] = set()
    parser = build_parser()
    for action in parser._actions:
        known.update(action.option_strings)
    for sub in subcommands(parser).values():
        for action in sub._actions:
            known.update(action.option_strings)
    midjourney = {"--ar", "--v", "--stylize", "--no", "--seed"}  # what NovelGen does not read
    assert named - known - midjourney == set()
