"""The simulator's panels are real, valid, deterministic images that show their prompt."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from novelgen_desktop.output.imagecheck import InvalidImageError, inspect_image
from novelgen_desktop.sim.render import (
    CORRUPTIONS,
    corrupt_image,
    render_panel_jpeg,
    render_panel_png,
)

PROMPT = "A lone detective walks through the rain-soaked streets of Neo Tokyo at night"


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("size", [(512, 512), (256, 256), (640, 360), (200, 500), (16, 16)])
def test_png_is_valid_and_sized(size: tuple[int, int]) -> None:
    width, height = size
    data = render_panel_png(PROMPT, width=width, height=height, label="Ch 1 · p3 · panel 2")
    info = inspect_image(data)
    assert (info.format, info.width, info.height) == ("png", width, height)
    image = _open(data)
    assert image.format == "PNG"
    assert image.size == size
    assert image.mode == "RGB"


def test_jpeg_is_valid_and_sized() -> None:
    data = render_panel_jpeg(PROMPT, width=320, height=240, seed="x")
    info = inspect_image(data)
    assert (info.format, info.width, info.height, info.extension) == ("jpeg", 320, 240, ".jpg")
    assert _open(data).format == "JPEG"


def test_deterministic() -> None:
    args = {"width": 256, "height": 256, "seed": 42, "label": "p1"}
    assert render_panel_png(PROMPT, **args) == render_panel_png(PROMPT, **args)  # type: ignore[arg-type]
    assert render_panel_jpeg(PROMPT, **args) == render_panel_jpeg(PROMPT, **args)  # type: ignore[arg-type]


def test_different_inputs_give_different_images() -> None:
    base = render_panel_png(PROMPT, width=128, height=128)
    assert render_panel_png(PROMPT + "!", width=128, height=128) != base
    assert render_panel_png("Another prompt entirely", width=128, height=128) != base
    assert render_panel_png(PROMPT, width=128, height=128, seed=1) != base
    assert render_panel_png(PROMPT, width=128, height=128, label="p2") != base


def test_seed_sets_the_background() -> None:
    """Panels of one job share a background colour when they share a seed, so a simulated
    run looks like a consistent series rather than noise."""
    fixed: set[tuple[int, ...] | float] = {
        (0, 0, 0),
        (250, 248, 240),
        (20, 20, 20),
        (10, 10, 10),
        (255, 255, 255),
    }

    def main_colours(data: bytes) -> set[tuple[int, ...] | float]:
        image = _open(data)
        colours = image.getcolors(image.width * image.height) or []
        return {c for n, c in colours if n > 0.02 * image.width * image.height} - fixed

    a = main_colours(render_panel_png("one", width=128, height=128, seed=7))
    b = main_colours(render_panel_png("two words", width=128, height=128, seed=7))
    assert a & b


def test_int_and_str_seeds_differ() -> None:
    assert render_panel_png("x", width=64, height=64, seed=1) != render_panel_png(
        "x", width=64, height=64, seed="1"
    )


def test_text_is_drawn() -> None:
    blank = _open(render_panel_png("", width=256, height=256, seed=3))
    texty = _open(render_panel_png(PROMPT, width=256, height=256, seed=3))

    def dark(image: Image.Image) -> int:
        return sum(image.convert("L").histogram()[:40])

    assert dark(texty) > dark(blank) + 200


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "   ",
        "雨の夜、探偵がネオン街を歩く。" * 10,
        "🦸‍♀️🔥💥 BOOM 💥🔥🦸‍♀️",
        "עברית مرحبا Ελληνικά Кириллица",
        "a\x00b\tc\nd\re\u202e",
        "\ud800 lone surrogate",
        "x" * 5000,
        "word " * 2000,
        "Supercalifragilisticexpialidocious" * 20,
    ],
)
def test_unusual_prompts_do_not_crash(prompt: str) -> None:
    for size in (64, 512):
        data = render_panel_png(prompt, width=size, height=size, label=prompt[:30] or None)
        assert inspect_image(data).width == size
    assert inspect_image(render_panel_jpeg(prompt, width=64, height=64)).format == "jpeg"


def test_blank_label() -> None:
    assert inspect_image(render_panel_png(PROMPT, width=64, height=64, label="  ")).width == 64


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=300), st.one_of(st.integers(), st.text(max_size=20)))
def test_any_prompt_and_seed_render(prompt: str, seed: int | str) -> None:
    data = render_panel_png(prompt, width=48, height=48, seed=seed, label=prompt[:10])
    assert inspect_image(data).format == "png"


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError, match="panel size"):
        render_panel_png("x", width=0, height=10)
    with pytest.raises(ValueError, match="panel size"):
        render_panel_png("x", width=512, height=100_000)


# --- corruptions ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_every_corruption_is_rejected(how: str) -> None:
    data = render_panel_png(PROMPT, width=128, height=128)
    broken = corrupt_image(data, how)
    assert broken != data
    with pytest.raises(InvalidImageError):
        inspect_image(broken)


@pytest.mark.parametrize("how", ["truncate", "html", "json", "empty", "zero_tail"])
def test_jpeg_corruptions_are_rejected(how: str) -> None:
    broken = corrupt_image(render_panel_jpeg(PROMPT, width=128, height=128), how)
    with pytest.raises(InvalidImageError):
        inspect_image(broken)


def test_corruption_messages() -> None:
    data = render_panel_png(PROMPT, width=64, height=64)
    cases = {
        "truncate": "truncated PNG: no IEND chunk",
        "html": "not an image: starts with b'<html>",
        "empty": "empty data",
        "flip_crc": "PNG IHDR CRC mismatch",
    }
    for how, message in cases.items():
        with pytest.raises(InvalidImageError) as excinfo:
            inspect_image(corrupt_image(data, how))
        assert message in str(excinfo.value)


def test_corrupt_image_arguments() -> None:
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_image(b"x", "melt")
    with pytest.raises(ValueError, match="needs PNG"):
        corrupt_image(render_panel_jpeg("x", width=32, height=32), "flip_crc")
