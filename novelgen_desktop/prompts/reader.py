"""Turning a path (or bytes) into clean text, refusing what is not a prompt file.

Writers drag whatever is on their desktop onto the app: a 2 GB video, a .docx, a script saved
as Latin-1 by an old editor. Each of those must produce one sentence that says what is wrong
and what to do, never a traceback, a frozen UI (reading a FIFO or a huge file) or mojibake
prompts sent to a paid image service.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from typing import NoReturn

from novelgen_desktop.prompts.issues import ImportIssue, PromptImportError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
"""Larger than any sane script (a 3,000-panel Full Script is about 2 MB) yet small enough that
reading it cannot exhaust memory."""

BINARY_SNIFF_BYTES = 8192
ACCEPTED_ENCODINGS = "UTF-8 (with or without BOM) or UTF-16 LE/BE with a BOM"

_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"),
)

_MAGIC_HINTS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "it looks like a PDF; export the script as plain text"),
    (b"PK\x03\x04", "it looks like a .docx/.xlsx/.odt document; save it as plain text or CSV"),
    (b"\xd0\xcf\x11\xe0", "it looks like an old Word/Excel document; save it as plain text or CSV"),
    (b"\x89PNG", "it is a PNG image"),
    (b"\xff\xd8\xff", "it is a JPEG image"),
    (b"GIF8", "it is a GIF image"),
)

_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_CONTROL_RATIO_LIMIT = 0.10


def _fail(file: str, message: str, line: int | None = None, column: int | None = None) -> NoReturn:
    raise PromptImportError([ImportIssue(file, line, message, column)])


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


def _size_text(size: int) -> str:
    exact = f"{size:,} bytes"
    human = _human_size(size)
    return exact if human.endswith("bytes") else f"{human} ({exact})"


def _too_large(file: str, size: int, max_bytes: int, *, at_least: bool = False) -> NoReturn:
    got = ("at least " if at_least else "") + _size_text(size)
    _fail(file, f"file is too large: {got}; the limit is {_size_text(max_bytes)}")


def read_prompt_file(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    display_name: str | None = None,
) -> str:
    """Read and decode one prompt file, or raise :class:`PromptImportError` with one issue.

    The size is checked with ``os.stat`` before opening so a huge file costs nothing, and the
    read is capped anyway in case the file grows in between. Non-regular files are refused
    because opening a FIFO or a device would block the caller forever.
    """
    name = display_name if display_name is not None else os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        _fail(name, "file not found")
    except PermissionError:
        _fail(name, "permission denied; cannot read this file")
    except (OSError, ValueError) as exc:
        _fail(name, f"cannot read file: {_os_reason(exc)}")
    if stat.S_ISDIR(info.st_mode):
        _fail(name, "is a directory, not a file; pass the prompt files inside it")
    if not stat.S_ISREG(info.st_mode):
        _fail(name, "is not a regular file (a device, pipe or socket?); cannot read it")
    if info.st_size > max_bytes:
        _too_large(name, info.st_size, max_bytes)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except PermissionError:
        _fail(name, "permission denied; cannot read this file")
    except OSError as exc:
        _fail(name, f"cannot read file: {_os_reason(exc)}")
    if len(data) > max_bytes:
        _too_large(name, len(data), max_bytes, at_least=True)
    return decode_prompt_bytes(data, name)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def decode_prompt_bytes(data: bytes, file: str) -> str:
    """Decode the accepted encodings strictly and return text with ``\\n`` newlines.

    Strict decoding matters: a Latin-1 ``é`` silently replaced by ``�`` would end up in a prompt
    and in thousands of paid images, so the first undecodable byte is reported by line and
    column instead.
    """
    encoding, label, offset = "utf-8", "UTF-8", 0
    for bom, codec_name, bom_label in _BOMS:
        if data.startswith(bom):
            encoding, label, offset = codec_name, bom_label, len(bom)
            break
    is_utf16 = encoding.startswith("utf-16")
    if not is_utf16 and b"\x00" in data[:BINARY_SNIFF_BYTES]:
        _fail(
            file,
            _binary_message(
                data, "it contains NUL bytes; if it is UTF-16 text, save it with a BOM or as UTF-8"
            ),
        )
    if data.startswith(b"{\\rtf"):
        _fail(file, "RTF documents are not supported; save the script as plain text (.txt)")
    body = data[offset:]
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        line, column = _position_of_byte(body, exc.start, encoding)
        bad = body[exc.start : exc.start + 1].hex().upper() or "??"
        _fail(
            file,
            f"byte 0x{bad} is not valid {label}; accepted encodings are {ACCEPTED_ENCODINGS}"
            " — re-save the file as UTF-8",
            line,
            column,
        )
    return check_prompt_text(text, file)


def check_prompt_text(text: str, file: str) -> str:
    """Normalise newlines and refuse text that is really binary; shared with inline prompts."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    sample = text[:BINARY_SNIFF_BYTES]
    if sample:
        controls = sum(1 for ch in sample if _is_bad_control(ch))
        if controls / len(sample) > _CONTROL_RATIO_LIMIT:
            _fail(file, _binary_message(b"", "it contains many control characters"))
    nul = text.find("\x00")
    if nul >= 0:
        line, column = _position_of_char(text, nul)
        _fail(file, "contains a NUL character; is this a binary file?", line, column)
    surrogate = _SURROGATE_RE.search(text)
    if surrogate is not None:
        # Only in-memory text can get here (strict decoding rejects them in files).
        line, column = _position_of_char(text, surrogate.start())
        _fail(file, "contains an invalid character (a lone surrogate)", line, column)
    return text


def _position_of_char(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _is_bad_control(ch: str) -> bool:
    code = ord(ch)
    if code < 0x20:
        return ch not in _ALLOWED_CONTROLS
    return code == 0x7F or 0x80 <= code <= 0x9F


def _binary_message(data: bytes, reason: str) -> str:
    for magic, hint in _MAGIC_HINTS:
        if data.startswith(magic):
            return f"not a text file ({hint})"
    return f"not a text file ({reason}); prompt files must be text in {ACCEPTED_ENCODINGS}"


def _position_of_byte(body: bytes, index: int, encoding: str) -> tuple[int, int]:
    """1-based line and column (in characters) of the byte at ``index``.

    Everything before the first bad byte decodes cleanly by definition, so decoding that
    prefix gives exact character columns even after multi-byte characters.
    """
    prefix = body[:index].decode(encoding, errors="replace")
    prefix = prefix.replace("\r\n", "\n").replace("\r", "\n")
    line = prefix.count("\n") + 1
    column = len(prefix) - (prefix.rfind("\n") + 1) + 1
    return line, column
