"""Cheap structural validation of image bytes before they are accepted as a finished result.

A worker scraping a web page can hand back many things that are not an image: an HTML error
page, a JSON error, a zero-byte body, or an image cut off by a dropped connection. Accepting
one would mark the task done and lose the panel for good, so every result passes through
:func:`inspect_image` first.

The check runs on every result, on the engine's hot path, so it is pure Python over the headers
and the last few bytes: no Pillow, no decompression, a few microseconds per image. It proves
the container is intact (signature, header fields, header CRC, end marker, declared lengths);
it does not prove the pixel data decodes. That is a deliberate trade: truncation and "not an
image at all" are the failures that happen in practice, and both are caught here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from novelgen_desktop.errors import OutputError

__all__ = [
    "MAX_DIMENSION",
    "MAX_IMAGE_BYTES",
    "ImageInfo",
    "InvalidImageError",
    "inspect_image",
]

MAX_DIMENSION: Final = 16384
"""Largest accepted width or height. No image service produces more; a bigger header is junk."""

MAX_IMAGE_BYTES: Final = 50 * 1024 * 1024
"""Largest accepted result. Protects the disk and the hash from a runaway response body."""


class InvalidImageError(OutputError):
    """The bytes are not a complete PNG, JPEG or WebP image; the attempt must be retried."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the rest of the pipeline needs to know to name and record an accepted image."""

    format: str  # "png" | "jpeg" | "webp"
    mime: str
    width: int
    height: int
    extension: str  # ".png" | ".jpg" | ".webp"


_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# IEND has no data, so the whole chunk (length 0, type, CRC) is a constant.
_PNG_IEND: Final = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_VALID_DEPTHS: Final[dict[int, frozenset[int]]] = {
    0: frozenset({1, 2, 4, 8, 16}),  # greyscale
    2: frozenset({8, 16}),  # truecolour
    3: frozenset({1, 2, 4, 8}),  # indexed
    4: frozenset({8, 16}),  # greyscale + alpha
    6: frozenset({8, 16}),  # truecolour + alpha
}
_PNG_MAX_CHUNK: Final = 2**31 - 1

_JPEG_SOI: Final = b"\xff\xd8"
_JPEG_EOI: Final = b"\xff\xd9"
# SOF0..SOF15 carry the frame size, except C4 (DHT), C8 (JPG extension) and CC (DAC).
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, with no length field: TEM and RST0..RST7.
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})

_STRUCT_U32BE: Final = struct.Struct(">I")
_STRUCT_PNG_CHUNK: Final = struct.Struct(">I4s")
_STRUCT_IHDR: Final = struct.Struct(">IIBBBBB")
_STRUCT_U16BE: Final = struct.Struct(">H")
_STRUCT_JPEG_SOF: Final = struct.Struct(">BHH")
_STRUCT_RIFF_CHUNK: Final = struct.Struct("<4sI")

# Formats we recognise only to say so in the error: "unsupported GIF" beats "not an image".
_PREVIEW_BYTES: Final = 32  # enough to recognise an HTML or JSON error body in a log

_OTHER_FORMATS: Final = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
)


def inspect_image(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_dimension: int = MAX_DIMENSION,
) -> ImageInfo:
    """Accept ``data`` as a complete PNG, JPEG or WebP image, or explain why not.

    Raises only :class:`InvalidImageError`, whatever the bytes, so callers can map every
    rejection to one error kind without a catch-all.
    """
    size = len(data) if not isinstance(data, memoryview) else data.nbytes
    if size == 0:
        raise InvalidImageError("empty data")
    if size > max_bytes:
        raise InvalidImageError(f"image too large: {size} bytes exceeds the {max_bytes}-byte limit")
    data = bytes(data)  # no copy for bytes; the helpers rely on bytes methods
    try:
        if data.startswith(_PNG_SIGNATURE):
            info = _inspect_png(data)
        elif data.startswith(b"\xff\xd8\xff"):
            info = _inspect_jpeg(data)
        elif data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            info = _inspect_webp(data)
        else:
            raise InvalidImageError(_describe_unknown(data))
    except (struct.error, IndexError) as exc:  # pragma: no cover - guarded by length checks
        raise InvalidImageError(f"malformed image header: {exc}") from exc
    if info.width > max_dimension or info.height > max_dimension:
        raise InvalidImageError(
            f"{info.format.upper()} dimensions {info.width}x{info.height} exceed the "
            f"{max_dimension}-pixel limit"
        )
    return info


def _describe_unknown(data: bytes) -> str:
    for prefix in (_PNG_SIGNATURE, b"\xff\xd8\xff", b"RIFF"):
        if len(data) < len(prefix) and prefix.startswith(data):
            return f"truncated image: only {len(data)} bytes, a partial signature"
    if data.startswith(b"RIFF"):
        return f"RIFF file of type {data[8:12]!r} is not WebP"
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return f"unsupported image format {name}: only PNG, JPEG and WebP are accepted"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return f"unsupported image format {data[8:12]!r} (ISO media): only PNG, JPEG and WebP"
    more = " …" if len(data) > _PREVIEW_BYTES else ""
    return f"not an image: starts with {data[:_PREVIEW_BYTES]!r}{more}"


# --- PNG ------------------------------------------------------------------------------------


def _inspect_png(data: bytes) -> ImageInfo:
    # Signature (8) + IHDR chunk (25) + IEND chunk (12) is the least a PNG can be.
    if len(data) < 8 + 25 + 12:
        raise InvalidImageError(f"truncated PNG: only {len(data)} bytes")
    length, ctype = _STRUCT_PNG_CHUNK.unpack_from(data, 8)
    if ctype != b"IHDR" or length != 13:
        raise InvalidImageError(
            f"PNG does not start with a 13-byte IHDR chunk (found {ctype!r}, length {length})"
        )
    (crc,) = _STRUCT_U32BE.unpack_from(data, 29)
    if zlib.crc32(data[12:29]) != crc:
        raise InvalidImageError("PNG IHDR CRC mismatch")
    width, height, depth, colour, compression, filtering, interlace = _STRUCT_IHDR.unpack_from(
        data, 16
    )
    if width == 0 or height == 0:
        raise InvalidImageError(f"PNG has an empty size {width}x{height}")
    if depth not in _PNG_VALID_DEPTHS.get(colour, ()):
        raise InvalidImageError(f"PNG has an invalid bit depth {depth} for colour type {colour}")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise InvalidImageError("PNG IHDR has an unknown compression, filter or interlace method")
    if not data.endswith(_PNG_IEND):
        raise InvalidImageError("truncated PNG: no IEND chunk")
    _walk_png_chunks(data, indexed=colour == 3)
    return ImageInfo("png", "image/png", width, height, ".png")


def _walk_png_chunks(data: bytes, *, indexed: bool) -> None:
    """Follow chunk lengths from IHDR to IEND, so a file with a hole in the middle (or a stray
    IEND-looking tail) is caught too. Only lengths and types are read, never CRCs of the pixel
    data, which keeps this at a few hundred steps even for large images."""
    end = len(data) - 12  # where the final IEND chunk starts
    pos = 33  # after signature and IHDR
    seen_plte = seen_idat = False
    while pos < end:
        if pos + 12 > end:
            raise InvalidImageError(f"corrupt PNG: chunk at offset {pos} overruns the file")
        length, ctype = _STRUCT_PNG_CHUNK.unpack_from(data, pos)
        if length > _PNG_MAX_CHUNK or not ctype.isalpha():
            raise InvalidImageError(f"corrupt PNG: invalid chunk {ctype!r} at offset {pos}")
        if ctype == b"IEND":
            raise InvalidImageError(f"corrupt PNG: IEND at offset {pos} before the end of data")
        if ctype == b"IDAT":
            if indexed and not seen_plte:
                raise InvalidImageError("corrupt PNG: indexed image without a PLTE chunk")
            seen_idat = True
        elif ctype == b"PLTE":
            seen_plte = True
        pos += 12 + length
    if pos != end:
        raise InvalidImageError("corrupt PNG: chunk lengths do not add up to the file size")
    if not seen_idat:
        raise InvalidImageError("corrupt PNG: no IDAT chunk (no pixel data)")


# --- JPEG -----------------------------------------------------------------------------------


def _inspect_jpeg(data: bytes) -> ImageInfo:
    # Trailing zero bytes are tolerated: some servers and copy tools pad to a block size.
    body_end = len(data.rstrip(b"\x00"))
    if body_end < 4 or data[body_end - 2 : body_end] != _JPEG_EOI:
        raise InvalidImageError("truncated JPEG: no EOI marker at the end")
    width, height = _jpeg_frame_size(data, body_end - 2)
    if width == 0 or height == 0:
        raise InvalidImageError(f"JPEG has an empty or deferred size {width}x{height}")
    return ImageInfo("jpeg", "image/jpeg", width, height, ".jpg")


def _jpeg_frame_size(data: bytes, end: int) -> tuple[int, int]:
    """Walk marker segments from SOI to the first SOFn; its header holds the frame size.

    Segments before the frame header are small (EXIF, ICC, tables), so the walk is short;
    scan data is never entered, since the frame header always precedes the first scan.
    """
    pos = 2
    while pos < end:
        if data[pos] != 0xFF:
            raise InvalidImageError(f"corrupt JPEG: expected a marker at offset {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes may precede any marker
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0xDA, 0x00):
            raise InvalidImageError(f"corrupt JPEG: marker 0x{marker:02X} before the frame header")
        if pos + 2 > end:
            break
        (length,) = _STRUCT_U16BE.unpack_from(data, pos)
        if length < 2 or pos + length > end:
            raise InvalidImageError(
                f"corrupt JPEG: segment 0x{marker:02X} at offset {pos - 2} has a bad length"
            )
        if marker in _JPEG_SOF:
            if length < 8:
                raise InvalidImageError("corrupt JPEG: frame header too short")
            _precision, height, width = _STRUCT_JPEG_SOF.unpack_from(data, pos + 2)
            return width, height
        pos += length
    raise InvalidImageError("corrupt JPEG: no frame header (SOFn) found")


# --- WebP -----------------------------------------------------------------------------------


def _inspect_webp(data: bytes) -> ImageInfo:
    if len(data) < 20:
        raise InvalidImageError(f"truncated WebP: only {len(data)} bytes")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    expected = riff_size + 8
    # A RIFF payload of odd size may be followed by one pad byte.
    if not (len(data) == expected or (riff_size % 2 == 1 and len(data) == expected + 1)):
        if len(data) < expected:
            raise InvalidImageError(
                f"truncated WebP: RIFF header says {expected} bytes, got {len(data)}"
            )
        raise InvalidImageError(
            f"corrupt WebP: RIFF header says {expected} bytes, got {len(data)} (trailing data)"
        )
    chunks = _riff_chunks(data, expected)
    first_type, first_pos, first_len = chunks[0]
    payload = data[first_pos : first_pos + first_len]
    if first_type == b"VP8 ":
        width, height = _vp8_size(payload)
    elif first_type == b"VP8L":
        width, height = _vp8l_size(payload)
    elif first_type == b"VP8X":
        if first_len < 10:
            raise InvalidImageError("corrupt WebP: VP8X chunk too short")
        width = int.from_bytes(payload[4:7], "little") + 1
        height = int.from_bytes(payload[7:10], "little") + 1
        if not any(ctype in (b"VP8 ", b"VP8L", b"ANMF") for ctype, _, _ in chunks[1:]):
            raise InvalidImageError("corrupt WebP: extended file without image data")
    else:
        raise InvalidImageError(f"corrupt WebP: unknown first chunk {first_type!r}")
    return ImageInfo("webp", "image/webp", width, height, ".webp")


def _riff_chunks(data: bytes, end: int) -> list[tuple[bytes, int, int]]:
    """(type, data offset, data length) of each top-level chunk; lengths must tile the file."""
    chunks: list[tuple[bytes, int, int]] = []
    pos = 12
    while pos < end:
        if pos + 8 > end:
            raise InvalidImageError(f"corrupt WebP: chunk header at offset {pos} overruns the file")
        ctype, length = _STRUCT_RIFF_CHUNK.unpack_from(data, pos)
        if pos + 8 + length > end:
            raise InvalidImageError(f"truncated WebP: chunk {ctype!r} overruns the file")
        chunks.append((ctype, pos + 8, length))
        pos += 8 + length + (length & 1)
    if not chunks:
        raise InvalidImageError("corrupt WebP: no chunks")
    return chunks


def _vp8_size(payload: bytes) -> tuple[int, int]:
    # 3-byte frame tag (bit 0 clear on key frames), start code, then 14-bit width and height.
    if len(payload) < 10:
        raise InvalidImageError("corrupt WebP: VP8 chunk too short")
    if payload[0] & 1 or payload[3:6] != b"\x9d\x01\x2a":
        raise InvalidImageError("corrupt WebP: VP8 chunk is not a key frame")
    width = int.from_bytes(payload[6:8], "little") & 0x3FFF
    height = int.from_bytes(payload[8:10], "little") & 0x3FFF
    if width == 0 or height == 0:
        raise InvalidImageError(f"WebP has an empty size {width}x{height}")
    return width, height


def _vp8l_size(payload: bytes) -> tuple[int, int]:
    # Signature 0x2F, then 14 bits width-1, 14 bits height-1, 1 alpha bit, 3 version bits.
    if len(payload) < 5 or payload[0] != 0x2F:
        raise InvalidImageError("corrupt WebP: bad VP8L signature")
    bits = int.from_bytes(payload[1:5], "little")
    if bits >> 29:
        raise InvalidImageError("corrupt WebP: unknown VP8L version")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
