"""The validated unit every importer produces: one panel to draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where a prompt came from, so every later message can point back at the script."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """One panel of a script, parsed and validated, ready to become one or more tasks.

    ``chapter`` is a label (``"1"``, ``"Prologue"``); ``page`` and ``panel`` are 1-based numbers
    when the source gives them and ``None`` when it does not (plain lists of prompts).
    ``images`` is how many images of this panel the author wants (1..8). ``metadata`` keeps what
    is part of the script but must not be drawn: captions, SFX, dialogue, free-form columns.
    """

    text: str
    source: SourceLocation
    chapter: str | None = None
    page: int | None = None
    panel: int | None = None
    priority: int = 0
    characters: tuple[str, ...] = ()
    style: str | None = None
    images: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
