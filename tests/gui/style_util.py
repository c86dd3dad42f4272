"""A style bible and a script for the GUI's style tests: written to disk with a real PNG
reference image, so the editor, the import dialog and the engine read them as an author's."""

from __future__ import annotations

from pathlib import Path

from novelgen_desktop.gui.qt import QtGui

BIBLE = """\
[bible]
name = "Lighthouse"
version = "3"

[style]
medium = "ink and watercolour graphic-novel panel"
palette = "cold slate and teal"
negative = ["text or lettering", "speech balloons"]

[characters.Maren]
aliases = ["Mar"]
description = "a tall woman of 40 in a red wool coat. Grey braid."
short = "tall woman, red coat"
references = ["refs/maren.png"]

[characters."Old Tobias"]
aliases = ["Tobias"]
description = "the last keeper, 70, white beard, scarred hands"

[locations."Lamp room"]
description = "the glass lantern room at the top of the tower"

[props."Storm lantern"]
description = "a dented tin storm lantern"

[chapters.2.characters.Maren]
description = "Maren with a bandaged left hand"
"""

SCRIPT_CSV = (
    "prompt,chapter,page,panel\n"
    "Wide shot of the lighthouse at dusk,1,1,1\n"
    "Maren climbs to the lamp room,1,1,2\n"
    "Tobias lights the storm lantern,2,1,1\n"
    "@Maren and @Tobias argue by the window,2,2,1\n"
)


def write_png(path: Path, colour: str = "#c0392b", size: int = 16) -> Path:
    """A real PNG of one colour (a reference image's thumbnail is drawn from it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = QtGui.QImage(size, size, QtGui.QImage.Format.Format_RGB32)
    image.fill(QtGui.QColor(colour))
    assert image.save(str(path), "PNG")
    return path


def write_bible(folder: Path, text: str = BIBLE, name: str = "bible.toml") -> Path:
    """The bible (and its reference image, beside it under refs/)."""
    write_png(folder / "refs" / "maren.png")
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def write_script(folder: Path, text: str = SCRIPT_CSV, name: str = "script.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``text`` that holds ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")
