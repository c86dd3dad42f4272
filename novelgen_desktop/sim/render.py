"""Real, recognisable images for the simulated worker.

The simulator exists to exercise the whole pipeline (validation, naming, atomic writes, the
gallery) without a browser or an account. Placeholder bytes would skip the parts that break in
practice, so the simulator draws genuine PNG/JPEG panels: each shows its prompt and label, so a
human looking at the output folder can check that panel 3 of page 7 really holds the prompt of
panel 3 of page 7. Rendering is deterministic (same inputs, same bytes) so tests can compare
files, and takes a few milliseconds (mostly PNG compression), so simulated runs of thousands
of panels stay quick; use 256-pixel panels or JPEG when a benchmark must not be bound by it.

:func:`corrupt_image` produces the broken outputs a real service sends now and then, so tests
can feed them through the same path.
"""

from __future__ import annotations

import functools
import hashlib
import io
import random
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageDraw, ImageFont, features

__all__ = ["CORRUPTIONS", "corrupt_image", "render_panel_jpeg", "render_panel_png"]

_FontT = ImageFont.ImageFont | ImageFont.FreeTypeFont

# Level 1 encodes ~1.7x faster than the default 6 for ~15% more bytes; level 0 is no faster
# (filtering dominates) and 30x larger.
_PNG_COMPRESS_LEVEL: Final = 1
_JPEG_QUALITY: Final = 85
_MIN_SIDE: Final = 16
_MAX_SIDE: Final = 4096

CORRUPTIONS: Final = ("truncate", "html", "empty", "flip_crc", "json", "zero_tail")
"""The ways :func:`corrupt_image` can break an image, each seen from real image services."""

_HTML_ERROR_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_JSON_ERROR: Final = (
    b'{"error":{"message":"Your request was rejected as a result of our safety system.",'
    b'"type":"invalid_request_error","code":"content_policy_violation"}}'
)


def render_panel_png(
    prompt: str,
    *,
    width: int = 512,
    height: int = 512,
    seed: int | str = 0,
    label: str | None = None,
) -> bytes:
    """PNG bytes of a panel showing ``prompt`` and ``label``; ``seed`` picks the colours, so
    panels of one job can share a look while each prompt still gets its own shapes."""
    image = _render(prompt, width, height, seed, label)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def render_panel_jpeg(
    prompt: str,
    *,
    width: int = 512,
    height: int = 512,
    seed: int | str = 0,
    label: str | None = None,
    quality: int = _JPEG_QUALITY,
) -> bytes:
    """As :func:`render_panel_png`, in JPEG: some services answer in JPEG, and the pipeline
    must then name the file ``.jpg``."""
    image = _render(prompt, width, height, seed, label)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def corrupt_image(data: bytes, how: str) -> bytes:
    """Break ``data`` the way real transfers and services break images.

    ``truncate``: the connection dropped halfway. ``html``: a proxy error page instead of the
    image. ``json``: an API error body. ``empty``: a zero-byte body. ``flip_crc``: a PNG whose
    header checksum is wrong (bit rot, a bad copy). ``zero_tail``: the second half overwritten
    with zeros, as after a crash on a filesystem that allocated but never wrote the blocks.
    """
    if how == "truncate":
        return data[: len(data) // 2]
    if how == "html":
        return _HTML_ERROR_PAGE
    if how == "json":
        return _JSON_ERROR
    if how == "empty":
        return b""
    if how == "flip_crc":
        if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 33:
            raise ValueError("flip_crc needs PNG data: only PNG has a header checksum")
        broken = bytearray(data)
        broken[32] ^= 0x01  # last byte of the IHDR CRC
        return bytes(broken)
    if how == "zero_tail":
        half = len(data) // 2
        return data[:half] + bytes(len(data) - half)
    raise ValueError(f"unknown corruption {how!r}; choose one of {', '.join(CORRUPTIONS)}")


# --- drawing --------------------------------------------------------------------------------


def _render(
    prompt: str, width: int, height: int, seed: int | str, label: str | None
) -> Image.Image:
    if not (_MIN_SIDE <= width <= _MAX_SIDE and _MIN_SIDE <= height <= _MAX_SIDE):
        raise ValueError(
            f"panel size must be {_MIN_SIDE}..{_MAX_SIDE} pixels, got {width}x{height}"
        )
    seed_rng = random.Random(_digest("seed", seed))
    shape_rng = random.Random(_digest("shapes", seed, prompt))
    background = _colour(seed_rng, 70, 200)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)

    short = min(width, height)
    for _ in range(shape_rng.randint(3, 6)):
        colour = _colour(shape_rng, 40, 230)
        x0 = shape_rng.randrange(0, width)
        y0 = shape_rng.randrange(0, height)
        x1 = min(width, x0 + shape_rng.randrange(short // 8, short // 2 + 1))
        y1 = min(height, y0 + shape_rng.randrange(short // 8, short // 2 + 1))
        if shape_rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)

    border = max(2, short // 64)
    margin = max(4, short // 24)
    font_size = max(10, short // 26)
    line_height = _line_height(font_size)

    top = border + margin
    if label:
        band = line_height + 2 * (margin // 2)
        draw.rectangle((0, 0, width, border + band), fill=(20, 20, 20))
        for label_line in _wrap(_drawable(label), font_size, width - 2 * (border + margin), 1):
            origin = (border + margin, border + margin // 2)
            _draw_line(draw, origin, label_line, font_size, (255, 255, 255))
        top = border + band + margin

    text_width = width - 2 * (border + 2 * margin)
    max_lines = max(1, (height - top - border - 3 * margin) // line_height)
    lines = _wrap(_drawable(prompt), font_size, text_width, max_lines)
    if lines:
        box_height = len(lines) * line_height + 2 * margin
        box_top = top + max(0, (height - top - border - margin - box_height) // 2)
        draw.rectangle(
            (border + margin, box_top, width - border - margin, box_top + box_height),
            fill=(250, 248, 240),
            outline=(0, 0, 0),
        )
        y = box_top + margin
        for line in lines:
            _draw_line(draw, (border + 2 * margin, y), line, font_size, (10, 10, 10))
            y += line_height

    draw.rectangle((0, 0, width - 1, height - 1), outline=(0, 0, 0), width=border)
    return image


def _digest(*parts: object) -> int:
    """A seed for :class:`random.Random` that is stable across processes and Python runs
    (``hash()`` of a str is salted per process, which would break determinism)."""
    text = "\x1f".join(f"{type(p).__name__}:{p}" for p in parts)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def _colour(rng: random.Random, low: int, high: int) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


# --- text -----------------------------------------------------------------------------------
# Pillow rasterises every glyph of every ``draw.text`` call anew (~15 µs a glyph), which made
# text the most expensive part of a panel. Glyphs are rendered once per (size, character) and
# stamped as masks instead: about five times faster, and visually the same for this purpose
# (no kerning or shaping, which a placeholder panel does not need).


@dataclass(frozen=True, slots=True)
class _Glyph:
    mask: Image.Image | None  # None for blanks
    left: int
    top: int
    advance: float


@functools.lru_cache(maxsize=16)
def _font(size: int) -> _FontT:
    """Pillow's built-in font, scaled when FreeType is available; never a file on disk, so the
    simulator runs offline on a bare machine."""
    if features.check("freetype2"):
        try:
            return ImageFont.load_default(size=size)
        except (OSError, ValueError):  # pragma: no cover - a Pillow built oddly
            pass
    return ImageFont.load_default()  # pragma: no cover - Pillow without FreeType


@functools.lru_cache(maxsize=8192)
def _glyph(size: int, char: str) -> _Glyph:
    font = _font(size)
    advance = float(font.getlength(char))
    if char.isspace():
        return _Glyph(None, 0, 0, advance)
    left, top, right, bottom = (int(v) for v in font.getbbox(char))
    if right <= left or bottom <= top:
        return _Glyph(None, 0, 0, advance)
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), char, font=font, fill=255)
    return _Glyph(mask, left, top, advance)


@functools.lru_cache(maxsize=16)
def _line_height(size: int) -> int:
    _left, top, _right, bottom = _font(size).getbbox("Ag")
    glyph_height = int(bottom - top)
    return glyph_height + max(2, glyph_height // 3)


def _text_width(text: str, size: int) -> float:
    return sum(_glyph(size, ch).advance for ch in text)


def _draw_line(
    draw: ImageDraw.ImageDraw,
    origin: tuple[int, int],
    text: str,
    size: int,
    fill: tuple[int, int, int],
) -> None:
    x, y = float(origin[0]), origin[1]
    for ch in text:
        glyph = _glyph(size, ch)
        if glyph.mask is not None:
            draw.bitmap((round(x) + glyph.left, y + glyph.top), glyph.mask, fill=fill)
        x += glyph.advance


def _drawable(text: str) -> str:
    """Replace what cannot be drawn on one line (control characters, newlines, lone
    surrogates) so odd prompts render instead of raising."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return cleaned.encode("utf-8", "replace").decode("utf-8")


def _wrap(text: str, size: int, max_width: int, max_lines: int) -> list[str]:
    """Greedy word wrap that also breaks words longer than a line (and scripts without
    spaces, such as Chinese or Japanese) character by character; an ellipsis marks text that
    did not fit."""
    space = _text_width(" ", size)
    lines: list[str] = []
    current, current_width = "", 0.0
    for word in text.split():
        word_width = _text_width(word, size)
        if current and current_width + space + word_width <= max_width:
            current, current_width = f"{current} {word}", current_width + space + word_width
            continue
        if current:
            lines.append(current)
        rest = word
        while word_width > max_width and len(rest) > 1:
            cut = _fit_prefix(rest, size, max_width)
            lines.append(rest[:cut])
            rest = rest[cut:]
            word_width = _text_width(rest, size)
        current, current_width = rest, word_width
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and _text_width(last + "…", size) > max_width:
            last = last[:-1]
        lines[-1] = last + "…"
    return lines


def _fit_prefix(word: str, size: int, max_width: int) -> int:
    """Length of the longest prefix of ``word`` that fits, at least one character."""
    width = 0.0
    for index, ch in enumerate(word):
        width += _glyph(size, ch).advance
        if width > max_width:
            return max(1, index)
    return len(word)
