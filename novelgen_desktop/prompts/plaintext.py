"""Plain text: the format of someone who just wants 200 images from a list.

One prompt per line, unless blank lines separate the file into blocks and any block has more
than one (non-comment) line: then the whole file is in block mode and each block, joined with
spaces, is a prompt. Deciding per file rather than per block keeps a long prompt wrapped over
two lines from being silently split into two images. A file without any blank-line
separation (a single block) is always one prompt per line — that is what a plain list looks
like. Lines whose first non-blank character is ``#`` are comments. Line numbers point at the
first line of each prompt.
"""

from __future__ import annotations

from typing import Any

from novelgen_desktop.prompts.fields import make_spec
from novelgen_desktop.prompts.issues import IssueSink
from novelgen_desktop.prompts.model import PromptSpec


def _blocks(text: str) -> list[list[tuple[int, str]]]:
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped:
            if current:
                blocks.append(current)
                current = []
            continue
        if stripped.startswith("#"):
            continue
        current.append((lineno, stripped))
    if current:
        blocks.append(current)
    return blocks


def parse_plaintext(
    text: str, sink: IssueSink, specs: list[PromptSpec], job: dict[str, Any]
) -> None:
    blocks = _blocks(text)
    block_mode = len(blocks) > 1 and any(len(block) > 1 for block in blocks)
    if block_mode:
        items = [(block[0][0], " ".join(line for _, line in block)) for block in blocks]
    else:
        items = [line for block in blocks for line in block]
    for lineno, prompt in items:
        spec = make_spec(sink, lineno, prompt, text_field=None)
        if spec is not None:
            specs.append(spec)
