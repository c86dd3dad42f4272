"""Helpers for the style bible tests: real PNG files, bibles written to disk, panels."""

from __future__ import annotations

import struct
import textwrap
import zlib
from pathlib import Path

from novelgen_desktop.prompts.issues import ImportIssue
from novelgen_desktop.style import StyleBible, StyleBibleError, parse_style_bible


def png_bytes(width: int = 4, height: int = 4, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real (tiny) truecolour PNG of one flat colour."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_png(path: Path, rgb: tuple[int, int, int] = (200, 40, 40), size: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(size, size, rgb))
    return path


def bible_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def parse(text: str, base_dir: Path, *, file: str = "book.toml") -> StyleBible:
    """Parse dedented ``text`` as a bible read from ``file`` in ``base_dir``."""
    return parse_style_bible(bible_text(text), file=file, base_dir=base_dir)


def issues_of(text: str, base_dir: Path, *, file: str = "book.toml") -> list[ImportIssue]:
    """The issues a broken bible reports (fails the test if it loads)."""
    try:
        parse(text, base_dir, file=file)
    except StyleBibleError as exc:
        return exc.issues
    raise AssertionError("the bible loaded without errors")


def rendered(issues: list[ImportIssue]) -> list[str]:
    return [str(issue) for issue in issues]


MINIMAL = """\
[style]
medium = "ink drawing"
"""
