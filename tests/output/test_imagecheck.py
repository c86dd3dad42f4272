"""inspect_image must accept every real PNG/JPEG/WebP and reject every broken one, and must
never fail with anything but InvalidImageError: the engine maps that one error to a retry."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from novelgen_desktop.errors import OutputError
from novelgen_desktop.output.imagecheck import (
    MAX_DIMENSION,
    ImageInfo,
    InvalidImageError,
    inspect_image,
)

# --- helpers --------------------------------------------------------------------------------


def _pattern(mode: str, size: tuple[int, int]) -> Image.Image:
    """A non-trivial picture, so compressed data is not degenerate."""
    base = Image.linear_gradient("L").resize(size)
    rgb = Image.merge("RGB", (base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), base))
    if mode == "P":
        return rgb.quantize(16)
    return rgb.convert(mode)


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + ctype
        + payload
        + struct.pack(">I", zlib.crc32(ctype + payload))
    )


def _png(
    width: int = 2,
    height: int = 2,
    depth: int = 8,
    colour: int = 2,
    *,
    chunks: tuple[bytes, ...] | None = None,
) -> bytes:
    """A hand-made PNG with a valid IHDR CRC, for header values Pillow would never write."""
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    if chunks is None:
        chunks = (_png_chunk(b"IDAT", zlib.compress(b"\x00" * 7 * height)),)
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + _png_chunk(b"IEND", b"")


PNG_MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]
SIZES = [(1, 1), (3, 7), (64, 48), (640, 480)]


def _samples() -> list[tuple[str, bytes, tuple[int, int]]]:
    out: list[tuple[str, bytes, tuple[int, int]]] = []
    for mode in PNG_MODES:
        out.append((f"png-{mode}", _save(_pattern(mode, (33, 17)), "PNG"), (33, 17)))
    for size in SIZES:
        out.append((f"png-{size}", _save(_pattern("RGB", size), "PNG"), size))
        out.append((f"jpeg-{size}", _save(_pattern("RGB", size), "JPEG", quality=80), size))
        out.append((f"webp-lossy-{size}", _save(_pattern("RGB", size), "WEBP"), size))
        out.append(
            (f"webp-lossless-{size}", _save(_pattern("RGB", size), "WEBP", lossless=True), size)
        )
    size = (40, 30)
    rgba = _pattern("RGBA", size)
    rgba.putalpha(128)
    out += [
        ("png-text", _save(_pattern("RGB", size), "PNG", pnginfo=_pnginfo()), size),
        ("png-optimized", _save(_pattern("RGB", size), "PNG", optimize=True), size),
        (
            "png-animated",
            _save(_pattern("RGB", size), "PNG", save_all=True, append_images=[_pattern("L", size)]),
            size,
        ),
        ("jpeg-L", _save(_pattern("L", size), "JPEG"), size),
        ("jpeg-CMYK", _save(_pattern("CMYK", size), "JPEG"), size),
        ("jpeg-progressive", _save(_pattern("RGB", size), "JPEG", progressive=True), size),
        ("jpeg-optimized", _save(_pattern("RGB", size), "JPEG", optimize=True), size),
        ("jpeg-exif", _save(_pattern("RGB", size), "JPEG", exif=_exif()), size),
        ("jpeg-444", _save(_pattern("RGB", size), "JPEG", subsampling=0), size),
        ("webp-alpha-lossy", _save(rgba, "WEBP"), size),
        ("webp-alpha-lossless", _save(rgba, "WEBP", lossless=True), size),
        ("webp-exif", _save(_pattern("RGB", size), "WEBP", exif=_exif()), size),
        (
            "webp-animated",
            _save(
                _pattern("RGB", size), "WEBP", save_all=True, append_images=[_pattern("RGB", size)]
            ),
            size,
        ),
    ]
    return out


def _pnginfo() -> object:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "a lighthouse at dusk")
    info.add_itxt("Comment", "灯台", lang="ja")
    return info


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "a panel"  # ImageDescription
    return exif.tobytes()


SAMPLES = _samples()
SAMPLE_IDS = [name for name, _, _ in SAMPLES]


# --- valid images ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "size"), SAMPLES, ids=SAMPLE_IDS)
def test_accepts_real_images(name: str, data: bytes, size: tuple[int, int]) -> None:
    info = inspect_image(data)
    fmt = name.split("-", maxsplit=1)[0]
    assert info.format == fmt
    assert (info.width, info.height) == size
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == size
        assert image.format.lower() == fmt  # type: ignore[union-attr]
    assert info.mime == {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[fmt]
    assert info.extension == {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}[fmt]


def test_result_type_and_bytes_likes() -> None:
    data = _save(_pattern("RGB", (5, 6)), "PNG")
    expected = ImageInfo("png", "image/png", 5, 6, ".png")
    assert inspect_image(data) == expected
    assert inspect_image(bytearray(data)) == expected
    assert inspect_image(memoryview(data)) == expected


def test_png_at_the_dimension_limit() -> None:
    data = _save(Image.new("L", (MAX_DIMENSION, 1)), "PNG")
    assert inspect_image(data).width == MAX_DIMENSION


def test_jpeg_trailing_zero_padding_is_allowed() -> None:
    data = _save(_pattern("RGB", (8, 8)), "JPEG")
    assert inspect_image(data + b"\x00" * 4096).format == "jpeg"


def test_jpeg_fill_bytes_before_a_marker_are_allowed() -> None:
    data = _save(_pattern("RGB", (8, 8)), "JPEG")
    assert inspect_image(data[:2] + b"\xff\xff" + data[2:]).width == 8


def test_webp_odd_riff_payload_with_pad_byte() -> None:
    data = _save(_pattern("RGB", (9, 9)), "WEBP", lossless=True)
    # An odd-sized unknown chunk at the end makes the declared RIFF size odd; the pad byte
    # that follows is outside the declared size and must be tolerated.
    extra = b"XTRA" + struct.pack("<I", 3) + b"abc"
    body = data[12:] + extra
    riff_size = 4 + len(body)
    assert riff_size % 2 == 1
    padded = b"RIFF" + struct.pack("<I", riff_size) + b"WEBP" + body + b"\x00"
    assert inspect_image(padded).width == 9


def test_inspection_is_much_cheaper_than_decoding() -> None:
    """It runs on every result. Compared with Pillow's own header check in the same run (a
    ratio, not a wall-clock limit: shared machines are noisy)."""
    png = _save(_pattern("RGB", (512, 512)), "PNG")
    jpeg = _save(_pattern("RGB", (512, 512)), "JPEG")

    def ours() -> None:
        inspect_image(png)
        inspect_image(jpeg)

    def pillows() -> None:
        for data in (png, jpeg):
            with Image.open(io.BytesIO(data)) as image:
                image.load()

    def best_of(fn: Callable[[], None], rounds: int = 5, n: int = 50) -> float:
        timings = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            timings.append(time.perf_counter() - start)
        return min(timings)

    assert best_of(ours) * 10 < best_of(pillows)


# --- rejections -----------------------------------------------------------------------------


def _reject(data: bytes, match: str, **kwargs: int) -> InvalidImageError:
    with pytest.raises(InvalidImageError, match=match) as excinfo:
        inspect_image(data, **kwargs)
    assert isinstance(excinfo.value, OutputError)
    return excinfo.value


def test_empty() -> None:
    _reject(b"", "empty data")


def test_html_error_page() -> None:
    error = _reject(b"<html><body>502 Bad Gateway</body></html>", "not an image")
    assert str(error) == "not an image: starts with b'<html><body>502 Bad Gateway</bod' …"


def test_json_and_text() -> None:
    _reject(b'{"error": "rate limited"}', r"not an image: starts with b'\{\"error")
    _reject(b"x", "not an image")


def test_unsupported_formats_are_named() -> None:
    _reject(_save(_pattern("RGB", (4, 4)), "GIF"), "unsupported image format GIF")
    _reject(_save(_pattern("RGB", (4, 4)), "BMP"), "unsupported image format BMP")
    _reject(_save(_pattern("RGB", (4, 4)), "TIFF"), "unsupported image format TIFF")
    _reject(b"\x00\x00\x00\x1cftypavif" + b"\x00" * 20, "ISO media")
    _reject(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 8, "not WebP")


def test_partial_signature() -> None:
    _reject(b"\x89PN", "partial signature")
    _reject(b"\xff\xd8", "partial signature")


def test_size_limit() -> None:
    data = _save(_pattern("RGB", (8, 8)), "PNG")
    _reject(data, "too large", max_bytes=len(data) - 1)
    assert inspect_image(data, max_bytes=len(data)).width == 8


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_dimension_limit(fmt: str) -> None:
    data = _save(_pattern("RGB", (200, 100)), fmt)
    _reject(data, "exceed the 199-pixel limit", max_dimension=199)
    assert inspect_image(data, max_dimension=200).width == 200


def test_png_too_large_dimensions_in_header() -> None:
    _reject(_png(MAX_DIMENSION + 1, 1), "exceed")


def test_png_ihdr_crc_mismatch() -> None:
    data = bytearray(_save(_pattern("RGB", (8, 8)), "PNG"))
    data[30] ^= 0xFF
    _reject(bytes(data), "PNG IHDR CRC mismatch")
    data = bytearray(_save(_pattern("RGB", (8, 8)), "PNG"))
    data[17] ^= 0x01  # width changed, CRC not updated
    _reject(bytes(data), "PNG IHDR CRC mismatch")


def test_png_truncated_has_no_iend() -> None:
    data = _save(_pattern("RGB", (64, 64)), "PNG")
    _reject(data[:-1], "truncated PNG: no IEND chunk")
    _reject(data[: len(data) // 2], "truncated PNG: no IEND chunk")


def test_png_trailing_garbage() -> None:
    data = _save(_pattern("RGB", (8, 8)), "PNG")
    _reject(data + b"\x00", "no IEND")


@pytest.mark.parametrize(
    ("colour", "depth"),
    [(2, 4), (2, 1), (3, 16), (4, 1), (6, 4), (0, 3), (1, 8), (5, 8), (7, 8), (0, 0)],
)
def test_png_invalid_depth_colour_combinations(colour: int, depth: int) -> None:
    _reject(_png(depth=depth, colour=colour), "invalid bit depth")


@pytest.mark.parametrize(("colour", "depth"), [(0, 1), (0, 16), (2, 8), (2, 16), (4, 8), (6, 16)])
def test_png_valid_depth_colour_combinations(colour: int, depth: int) -> None:
    assert inspect_image(_png(depth=depth, colour=colour)).format == "png"


def test_png_zero_size() -> None:
    _reject(_png(0, 5), "empty size")
    _reject(_png(5, 0), "empty size")


def test_png_first_chunk_not_ihdr() -> None:
    good = _png()
    swapped = good[:8] + _png_chunk(b"gAMA", b"\x00\x00\xb1\x8f") + good[8:]
    _reject(swapped, "does not start with a 13-byte IHDR")


def test_png_structure() -> None:
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00" * 14))
    _reject(_png(chunks=()), "no IDAT")
    _reject(_png(colour=3, depth=8, chunks=(idat,)), "without a PLTE")
    assert (
        inspect_image(
            _png(colour=3, depth=8, chunks=(_png_chunk(b"PLTE", b"\x00" * 3), idat))
        ).format
        == "png"
    )
    _reject(_png(chunks=(idat, _png_chunk(b"IEND", b""), idat)), "IEND at offset")
    broken_length = idat[:3] + bytes([idat[3] + 1]) + idat[4:]
    _reject(_png(chunks=(broken_length,)), "corrupt PNG")
    _reject(_png(chunks=(idat, bytes(12))), "invalid chunk")
    # A hole in the middle: the tail is intact, but the lengths do not add up.
    data = _save(_pattern("RGB", (640, 480)), "PNG")
    assert len(data) > 1000
    _reject(data[:100] + data[300:], "corrupt PNG")


def test_jpeg_no_eoi() -> None:
    data = _save(_pattern("RGB", (32, 32)), "JPEG")
    _reject(data[:-2], "truncated JPEG: no EOI")
    _reject(data + b"junk", "truncated JPEG: no EOI")


def test_jpeg_without_frame_header() -> None:
    # SOI, a comment, SOS straight away, EOI.
    data = b"\xff\xd8\xff\xfe\x00\x04hi\xff\xda\x00\x02\xff\xd9"
    _reject(data, "before the frame header")
    _reject(b"\xff\xd8\xff\xfe\x00\x04hi\xff\xd9", "no frame header")
    _reject(b"\xff\xd8\xff\xfe\x00\x04hi\x00\xff\xd9", "expected a marker")
    _reject(b"\xff\xd8\xff\xfe\x00\x40hi\xff\xd9", "bad length")


def test_jpeg_zero_height_is_rejected() -> None:
    data = bytearray(_save(_pattern("RGB", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = b"\x00\x00"
    _reject(bytes(data), "empty or deferred size")


def test_webp_riff_size() -> None:
    data = _save(_pattern("RGB", (16, 16)), "WEBP")
    _reject(data[:-10], "truncated WebP")
    _reject(data + b"\x00\x00", "trailing data")
    _reject(b"RIFF" + struct.pack("<I", 4) + b"WEBP", "truncated WebP")


def test_webp_bad_chunks() -> None:
    def riff(*chunks: bytes) -> bytes:
        body = b"WEBP" + b"".join(chunks)
        return b"RIFF" + struct.pack("<I", len(body)) + body

    def chunk(ctype: bytes, payload: bytes) -> bytes:
        return ctype + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)

    _reject(riff(chunk(b"ABCD", b"\x00" * 10)), "unknown first chunk")
    _reject(riff(chunk(b"VP8X", b"\x00" * 10)), "without image data")
    _reject(riff(chunk(b"VP8X", b"\x00" * 4)), "VP8X chunk too short")
    _reject(riff(chunk(b"VP8L", b"\x00" * 10)), "bad VP8L signature")
    _reject(riff(chunk(b"VP8L", b"\x2f\xff\xff\xff\xff")), "unknown VP8L version")
    _reject(riff(chunk(b"VP8 ", b"\x00" * 10)), "not a key frame")
    _reject(riff(chunk(b"VP8 ", b"\x00" * 4)), "VP8 chunk too short")
    _reject(riff(chunk(b"VP8 ", b"\x00\x00\x00\x9d\x01\x2a\x00\x00\x00\x00")), "empty size")
    _reject(riff(b"VP8 " + struct.pack("<I", 100) + b"\x00" * 10), "overruns")
    _reject(riff(chunk(b"VP8L", b"\x2f\x00\x00\x00\x00"), b"AB"), "chunk header .* overruns")
    assert inspect_image(riff(chunk(b"VP8L", b"\x2f\x00\x00\x00\x00"))).width == 1


# --- truncation sweep -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "size"), SAMPLES, ids=SAMPLE_IDS)
def test_every_truncation_is_rejected(name: str, data: bytes, size: tuple[int, int]) -> None:
    step = max(1, len(data) // 300)
    offsets = {*range(0, len(data), step), *range(max(0, len(data) - 40), len(data))}
    for offset in sorted(offsets):
        with pytest.raises(InvalidImageError):
            inspect_image(data[:offset])


@pytest.mark.parametrize(("name", "data", "size"), SAMPLES[:12], ids=SAMPLE_IDS[:12])
def test_second_half_zeroed_is_rejected(name: str, data: bytes, size: tuple[int, int]) -> None:
    """A crash after the blocks were allocated but before they were written leaves zeros."""
    half = len(data) // 2
    with pytest.raises(InvalidImageError):
        inspect_image(data[:half] + bytes(len(data) - half))


# --- fuzzing --------------------------------------------------------------------------------

_SEEDS = [data for _, data, _ in SAMPLES if len(data) < 4000]
_PREFIXES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF", b"RIFF\x00\x00\x00\x00WEBP", b""]


def _only_invalid_image_error(data: bytes) -> None:
    try:
        info = inspect_image(data)
    except InvalidImageError:
        return
    assert info.format in ("png", "jpeg", "webp")
    assert 0 < info.width <= MAX_DIMENSION
    assert 0 < info.height <= MAX_DIMENSION


@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_invalid_image(data: bytes) -> None:
    _only_invalid_image_error(data)


@given(st.sampled_from(_PREFIXES), st.binary(max_size=512))
def test_random_bytes_after_a_signature(prefix: bytes, tail: bytes) -> None:
    _only_invalid_image_error(prefix + tail)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 10**6),
)
def test_mutated_images_only_raise_invalid_image(
    seed: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    _only_invalid_image_error(bytes(data))
    _only_invalid_image_error(bytes(data[: cut % (len(data) + 1)]))
