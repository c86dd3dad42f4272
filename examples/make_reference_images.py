"""Generate ``examples/references/*.png``: the sample style bible's character sheets.

They are placeholders for the sheets an artist would draw: flat-colour silhouettes of each
character, front and profile, on a neutral ground with a strip of the character's colours
along the bottom. Small (a few KB each) but real PNG files, distinct per character, so the
example bible shows how reference images are attached and how a chapter replaces one
(Maren's bandaged hand in chapter two).

Pure Python (zlib and struct): run ``python examples/make_reference_images.py`` to rewrite
the files; the output is the same bytes every time.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

WIDTH, HEIGHT = 240, 320
Colour = tuple[int, int, int]
Point = tuple[float, float]


class Canvas:
    def __init__(self, width: int, height: int, background: Colour) -> None:
        self.width = width
        self.height = height
        self.pixels = [[background] * width for _ in range(height)]

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
        for y in range(max(0, round(y0)), min(self.height, round(y1))):
            row = self.pixels[y]
            for x in range(max(0, round(x0)), min(self.width, round(x1))):
                row[x] = colour

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, colour: Colour) -> None:
        for y in range(max(0, int(cy - ry)), min(self.height, int(cy + ry) + 1)):
            for x in range(max(0, int(cx - rx)), min(self.width, int(cx + rx) + 1)):
                if ((x + 0.5 - cx) / rx) ** 2 + ((y + 0.5 - cy) / ry) ** 2 <= 1:
                    self.pixels[y][x] = colour

    def polygon(self, points: Sequence[Point], colour: Colour) -> None:
        ys = [p[1] for p in points]
        for y in range(max(0, int(min(ys))), min(self.height, int(max(ys)) + 1)):
            yc = y + 0.5
            crossings: list[float] = []
            for (x0, y0), (x1, y1) in zip(points, [*points[1:], points[0]], strict=True):
                if (y0 <= yc < y1) or (y1 <= yc < y0):
                    crossings.append(x0 + (yc - y0) * (x1 - x0) / (y1 - y0))
            crossings.sort()
            for left, right in zip(crossings[::2], crossings[1::2], strict=False):
                for x in range(max(0, round(left)), min(self.width, round(right))):
                    self.pixels[y][x] = colour

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + b"".join(bytes(px) for px in row) for row in self.pixels)

        def chunk(kind: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(kind + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


@dataclass(frozen=True)
class Figure:
    """What tells one character from another at a glance."""

    height: float  # of the figure, in pixels
    stoop: float  # how far the head leans forward
    skin: Colour
    hair: Colour
    coat: Colour
    trousers: Colour
    accent: Colour  # scarf, cap band, bandage...
    long_coat: bool = False
    beard: bool = False
    cap: bool = False
    scarf: bool = False
    bandage: bool = False
    ponytail: bool = False


GROUND: Colour = (226, 224, 216)
FLOOR: Colour = (184, 182, 174)


def draw_figure(canvas: Canvas, cx: float, figure: Figure, *, profile: bool) -> None:
    feet = HEIGHT - 52
    top = feet - figure.height
    head_r = figure.height * 0.075
    head_cx = cx + (figure.stoop if profile else 0)
    head_cy = top + head_r
    shoulders = head_cy + head_r * 1.6
    hips = top + figure.height * 0.55
    hem = top + figure.height * (0.8 if figure.long_coat else 0.6)
    half = figure.height * (0.12 if profile else 0.16)
    # legs
    leg_w = half * 0.45
    if profile:
        canvas.rect(cx - leg_w / 2, hips, cx + leg_w / 2, feet, figure.trousers)
        canvas.rect(cx - leg_w / 2, feet - 6, cx + leg_w * 1.3, feet, (40, 34, 30))
    else:
        canvas.rect(cx - half * 0.6, hips, cx - half * 0.6 + leg_w, feet, figure.trousers)
        canvas.rect(cx + half * 0.6 - leg_w, hips, cx + half * 0.6, feet, figure.trousers)
        canvas.rect(cx - half * 0.7, feet - 6, cx - half * 0.6 + leg_w, feet, (40, 34, 30))
        canvas.rect(cx + half * 0.6 - leg_w, feet - 6, cx + half * 0.7, feet, (40, 34, 30))
    # coat: shoulders to hem, flaring a little
    lean = figure.stoop * 0.5 if profile else 0
    canvas.polygon(
        [
            (cx - half + lean, shoulders),
            (cx + half + lean, shoulders),
            (cx + half * 1.15, hem),
            (cx - half * 1.15, hem),
        ],
        figure.coat,
    )
    # arms and hands
    arm_w = half * 0.32
    hand_y = hips + figure.height * 0.05
    sides = [cx + lean * 0.5] if profile else [cx - half - arm_w * 0.6, cx + half + arm_w * 0.6]
    for n, ax in enumerate(sides):
        canvas.rect(ax - arm_w / 2, shoulders + 2, ax + arm_w / 2, hand_y, figure.coat)
        hand = figure.accent if figure.bandage and (profile or n == 0) else figure.skin
        canvas.ellipse(ax, hand_y + arm_w * 0.5, arm_w * 0.7, arm_w * 0.8, hand)
    if figure.scarf:
        canvas.rect(
            head_cx - head_r * 1.1,
            shoulders - 4,
            head_cx + head_r * 1.1,
            shoulders + 6,
            figure.accent,
        )
        if not profile:
            canvas.rect(head_cx + 2, shoulders, head_cx + 10, shoulders + 30, figure.accent)
    # head
    if figure.ponytail and profile:  # hidden behind the head from the front
        tail_x = head_cx - head_r * 1.2
        canvas.ellipse(tail_x, head_cy + head_r * 0.6, head_r * 0.5, head_r * 1.1, figure.hair)
    canvas.ellipse(head_cx, head_cy, head_r, head_r * 1.12, figure.skin)
    canvas.ellipse(head_cx, head_cy - head_r * 0.45, head_r * 1.02, head_r * 0.7, figure.hair)
    if profile:
        canvas.ellipse(
            head_cx + head_r * 0.9, head_cy + 2, head_r * 0.25, head_r * 0.2, figure.skin
        )
    if figure.beard:
        canvas.polygon(
            [
                (head_cx - head_r * 0.9, head_cy + head_r * 0.2),
                (head_cx + head_r * 0.9, head_cy + head_r * 0.2),
                (head_cx + (head_r * 0.6 if profile else 0), head_cy + head_r * 2.4),
            ],
            (236, 236, 232),
        )
    if figure.cap:
        canvas.rect(
            head_cx - head_r * 1.1,
            head_cy - head_r * 1.2,
            head_cx + head_r * 1.1,
            head_cy - head_r * 0.5,
            figure.accent,
        )
        peak = head_r * (1.7 if profile else 1.25)
        canvas.rect(
            head_cx - head_r * 1.25,
            head_cy - head_r * 0.6,
            head_cx + peak,
            head_cy - head_r * 0.35,
            (24, 24, 30),
        )


def sheet(figure: Figure) -> bytes:
    canvas = Canvas(WIDTH, HEIGHT, GROUND)
    canvas.rect(0, HEIGHT - 52, WIDTH, HEIGHT - 40, FLOOR)
    draw_figure(canvas, WIDTH * 0.3, figure, profile=False)
    draw_figure(canvas, WIDTH * 0.72, figure, profile=True)
    swatches = [figure.skin, figure.hair, figure.coat, figure.trousers, figure.accent]
    width = WIDTH / len(swatches)
    for n, colour in enumerate(swatches):
        canvas.rect(n * width + 4, HEIGHT - 34, (n + 1) * width - 4, HEIGHT - 6, colour)
    return canvas.png()


SKIN: Colour = (226, 186, 160)
MAREN = Figure(
    height=218,
    stoop=4,
    skin=SKIN,
    hair=(46, 34, 30),
    coat=(196, 156, 52),  # a yellow oilskin
    trousers=(58, 62, 70),
    accent=(120, 40, 36),
    long_coat=True,
    ponytail=True,
)
SHEETS: dict[str, Figure] = {
    "maren.png": MAREN,
    "maren-bandaged.png": replace(
        MAREN,
        coat=(150, 120, 44),  # rain-dark oilskin
        accent=(250, 250, 250),  # the bandage on her left hand
        bandage=True,
    ),
    "old-tobias.png": Figure(
        height=196,
        stoop=16,
        skin=(214, 176, 150),
        hair=(214, 214, 210),
        coat=(32, 42, 72),  # navy pea coat
        trousers=(44, 44, 48),
        accent=(32, 42, 72),
        beard=True,
        cap=True,
    ),
    "isak.png": Figure(
        height=172,
        stoop=2,
        skin=(234, 196, 170),
        hair=(170, 104, 52),
        coat=(110, 80, 52),  # a brown wool jacket
        trousers=(70, 72, 60),
        accent=(176, 36, 36),  # red scarf
        scarf=True,
    ),
}


def main() -> int:
    folder = Path(__file__).resolve().parent / "references"
    folder.mkdir(exist_ok=True)
    for name, figure in SHEETS.items():
        data = sheet(figure)
        (folder / name).write_bytes(data)
        print(f"{folder / name}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
