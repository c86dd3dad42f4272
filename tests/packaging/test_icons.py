"""The app icon: the extension's copies match resources/icons and the generator.

The manifest points at ``extension/icons/icon-<n>.png``; those are copies of
``resources/icons/novelgen-<n>.png`` written by ``resources/make_icons.py``. A hand-edited
copy (or a forgotten re-run) would ship a different icon than the app's, so check it here.
"""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image, ImageChops, ImageStat

ROOT = Path(__file__).resolve().parents[2]
ICONS = ROOT / "resources" / "icons"
EXTENSION_ICONS = ROOT / "extension" / "icons"


def _load_make_icons() -> ModuleType:
    # resources/ is not a package (and packaging/ must not be one: it would shadow PyPI's
    # `packaging`), so load the script by path.
    script = ROOT / "resources" / "make_icons.py"
    spec = importlib.util.spec_from_file_location("make_icons", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [16, 32, 48, 128])
def test_extension_icon_is_a_copy_of_the_resource(size: int) -> None:
    copy = EXTENSION_ICONS / f"icon-{size}.png"
    source = ICONS / f"novelgen-{size}.png"
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy.relative_to(ROOT)} differs from {source.relative_to(ROOT)}: "
        "run .venv/bin/python resources/make_icons.py"
    )


@pytest.mark.parametrize("size", [16, 32, 48, 128, 256])
def test_png_is_square_rgba_of_its_size(size: int) -> None:
    with Image.open(ICONS / f"novelgen-{size}.png") as image:
        assert image.format == "PNG"
        assert image.size == (size, size)
        assert image.mode == "RGBA"
        # Transparent corners (rounded square), opaque centre.
        assert image.getpixel((0, 0))[3] == 0
        assert image.getpixel((size // 2, size // 2))[3] == 255


def test_manifest_icons_exist_with_declared_sizes() -> None:
    manifest = json.loads((ROOT / "extension" / "manifest.json").read_text(encoding="utf-8"))
    declared = {**manifest["icons"], **manifest["action"]["default_icon"]}
    for size, relative in declared.items():
        with Image.open(ROOT / "extension" / relative) as image:
            assert image.size == (int(size), int(size)), relative


def test_svg_is_valid_and_generated_from_the_same_geometry() -> None:
    make_icons = _load_make_icons()
    svg = ICONS / "novelgen.svg"
    root = ET.fromstring(svg.read_text(encoding="utf-8"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.attrib["viewBox"] == "0 0 256 256"
    assert svg.read_text(encoding="utf-8") == make_icons.svg_text(), (
        "novelgen.svg was edited by hand or is stale: run resources/make_icons.py"
    )


def test_pngs_match_a_fresh_render() -> None:
    """Pixels, not bytes: another Pillow version may compress differently."""
    make_icons = _load_make_icons()
    master = make_icons.draw_master()
    for size in make_icons.SIZES:
        fresh = master.resize((size, size), Image.Resampling.LANCZOS)
        with Image.open(ICONS / f"novelgen-{size}.png") as stored:
            diff = ImageChops.difference(fresh.convert("RGBA"), stored.convert("RGBA"))
            assert max(ImageStat.Stat(diff).mean) < 2.0, size
