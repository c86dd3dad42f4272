"""docs/migration.md: its example files import as it says, and its field mapping is true.

The examples under ``examples/migration/`` are what a user coming from a bulk-prompt tool
tries first; the mapping table tells them which of their columns NovelGen reads and which it
only keeps. Both must stay true as the importers change.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from novelgen_desktop.prompts import load_prompt_files, parse_text
from novelgen_desktop.prompts.fields import OPTIONAL_FIELDS, TEXT_FIELDS
from novelgen_desktop.prompts.issues import WARNING

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "migration"
GUIDE = ROOT / "docs" / "migration.md"

ACCEPTED = {*TEXT_FIELDS, *OPTIONAL_FIELDS}
ALIASES = {"character": "characters"}  # the CSV and JSON importers' own alias

# file → (format, prompts, images wanted, unknown columns/keys warned about)
EXPECTED: dict[str, tuple[str, int, int, set[str]]] = {
    "one-per-line.txt": ("text", 6, 6, set()),
    "blank-line-separated.txt": ("text", 4, 4, set()),
    "midjourney.txt": ("text", 4, 4, set()),
    "bulk-tool.csv": ("csv", 4, 4, {"negative_prompt", "seed", "filename", "aspect_ratio"}),
    "bulk-tool-mapped.csv": ("csv", 4, 5, {"negative_prompt", "seed"}),
    "strings.json": ("json", 5, 5, set()),
    "objects.json": ("json", 4, 5, {"negative_prompt", "seed", "filename", "count"}),
    "objects.jsonl": ("jsonl", 3, 3, {"seed", "filename"}),
}


def warned_names(messages: list[str]) -> set[str]:
    names = set()
    for message in messages:
        match = re.search(r"unknown (?:column|key) '([^']+)' is kept as metadata", message)
        assert match, f"unexpected warning: {message}"
        names.add(match.group(1))
    return names


def test_every_example_file_is_listed_here() -> None:
    assert {path.name for path in EXAMPLES.iterdir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_imports_with_the_expected_prompts_and_no_errors(name: str) -> None:
    fmt, prompts, images, unknown = EXPECTED[name]
    path = EXAMPLES / name
    result = load_prompt_files([path])
    errors = [str(issue) for issue in result.issues if issue.severity != WARNING]
    assert errors == []
    assert result.format_by_file == {str(path): fmt}
    assert len(result.specs) == prompts
    assert sum(spec.images for spec in result.specs) == images
    warnings = [issue.message for issue in result.issues if issue.severity == WARNING]
    assert warned_names(warnings) == unknown
    for spec in result.specs:  # the extras are kept with each prompt, never in its text
        assert set(spec.metadata) <= unknown
        for key in spec.metadata:
            assert str(spec.metadata[key]) not in spec.text


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_example_is_linked_from_the_guide(name: str) -> None:
    assert f"(../examples/migration/{name})" in GUIDE.read_text(encoding="utf-8")


def test_blank_line_blocks_wrap_prompts() -> None:
    specs = load_prompt_files([EXAMPLES / "blank-line-separated.txt"]).specs
    assert specs[0].text == (
        "A lighthouse on a black rock at dusk, waves breaking white against its base, "
        "ink and watercolour."
    )


def test_midjourney_parameters_stay_in_the_prompt_as_the_guide_says() -> None:
    specs = load_prompt_files([EXAMPLES / "midjourney.txt"]).specs
    assert all("--ar " in spec.text for spec in specs)
    assert specs[-1].text.startswith("/imagine prompt:")


def test_seed_and_filename_are_only_metadata() -> None:
    specs = load_prompt_files([EXAMPLES / "bulk-tool.csv"]).specs
    assert specs[0].metadata == {
        "negative_prompt": "blurry, text",
        "seed": "1234",
        "filename": "lighthouse_dusk",
        "aspect_ratio": "2:3",
    }
    assert specs[0].text.startswith("A lighthouse") and "1234" not in specs[0].text


def test_one_stray_blank_line_turns_a_list_into_blocks_as_the_guide_warns() -> None:
    lines = [f"prompt number {n}" for n in range(1, 21)]
    text = "\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n"
    result = parse_text(text, filename="list.txt", format="text")
    assert len(result.specs) == 2
    assert "two** prompts" in GUIDE.read_text(encoding="utf-8")


# --- the mapping table ------------------------------------------------------------------


def mapping_rows() -> list[tuple[list[str], list[str], str]]:
    """(their names, NovelGen names or ["metadata"], notes) of the guide's mapping table."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("### Field mapping", 1)[1].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 3, line
        theirs = re.findall(r"`([^`]+)`", cells[0])
        ours = re.findall(r"`([^`]+)`", cells[1]) or [cells[1]]
        rows.append((theirs, ours, cells[2]))
    return rows


def canonical(name: str) -> str:
    key = " ".join(name.strip().lower().split())
    return ALIASES.get(key, key)


VALUES = {"chapter": "2", "page": "3", "panel": "4", "priority": "7", "images": "2"}
VALUES |= {"characters": "Maren; Isak", "style": "ink and watercolour"}


def test_the_mapping_table_is_there() -> None:
    rows = mapping_rows()
    assert len(rows) >= 10
    assert any(ours == ["metadata"] for _, ours, _ in rows)


@pytest.mark.parametrize("name", sorted({n for _, ours, _ in mapping_rows() for n in ours}))
def test_every_novelgen_name_in_the_table_is_read_by_csv_and_json(name: str) -> None:
    if name == "metadata":
        return
    assert name in ACCEPTED
    if name in TEXT_FIELDS:
        csv_text, json_text = f"{name}\nA lighthouse at dusk\n", f'[{{"{name}": "A lighthouse"}}]'
    else:
        value = VALUES[name]
        csv_text = f'prompt,{name}\nA lighthouse at dusk,"{value}"\n'
        json_text = f'[{{"prompt": "A lighthouse", "{name}": "{value}"}}]'
    for text, fmt in ((csv_text, "csv"), (json_text, "json")):
        result = parse_text(text, filename=f"t.{fmt}", format=fmt)
        assert result.issues == [], (fmt, [str(i) for i in result.issues])
        (spec,) = result.specs
        assert spec.metadata == {}
        if name not in TEXT_FIELDS:
            assert getattr(spec, name) not in (None, 0, 1, ()), (fmt, name)


@pytest.mark.parametrize(
    ("theirs", "ours", "notes"), mapping_rows(), ids=[row[0][0] for row in mapping_rows()]
)
def test_their_names_do_what_the_table_says(theirs: list[str], ours: list[str], notes: str) -> None:
    for name in theirs:
        header = f"prompt,{name}" if canonical(name) not in TEXT_FIELDS else name
        row = "A lighthouse at dusk,x" if "," in header else "A lighthouse at dusk"
        result = parse_text(f"{header}\n{row}\n", filename="t.csv", format="csv")
        warnings = [issue.message for issue in result.issues if issue.severity == WARNING]
        if ours == ["metadata"]:
            # Not a field NovelGen reads: kept as metadata, with a warning, never sent.
            assert canonical(name) not in ACCEPTED, name
            assert warned_names(warnings) == {name}
            assert result.specs[0].metadata == {name: "x"}
            assert "not" in notes
        elif canonical(name) in ACCEPTED:
            # Read as it is: it must be the field the table names.
            assert canonical(name) in {canonical(n) for n in ours}, name
        else:
            # Read only once renamed: the table must say so.
            assert "rename" in notes, (name, notes)
