from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest
from prompts_testutil import errors, load, parse, texts, write

from novelgen_desktop.prompts import DEFAULT_MAX_BYTES, PromptImportError, load_prompt_files, reader
from novelgen_desktop.prompts.reader import decode_prompt_bytes, read_prompt_file


def _only_issue(path: Path, **kwargs: int) -> str:
    with pytest.raises(PromptImportError) as caught:
        read_prompt_file(path, **kwargs)
    assert len(caught.value.issues) == 1
    return str(caught.value.issues[0])


@pytest.mark.parametrize(
    ("prefix", "encoding"),
    [
        (b"", "utf-8"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom"],
)
def test_accepted_encodings_decode_and_normalise_newlines(
    tmp_path: Path, prefix: bytes, encoding: str
) -> None:
    content = "# comment\r\nCafé at dawn\r\nÉlodie on the pier\rGulls — 海鸥\n"
    result = load(tmp_path, "list.txt", prefix + content.encode(encoding))
    assert errors(result) == []
    assert texts(result) == ["Café at dawn", "Élodie on the pier", "Gulls — 海鸥"]
    assert [spec.source.line for spec in result.specs] == [2, 3, 4]


def test_utf8_bom_does_not_leak_into_csv_header(tmp_path: Path) -> None:
    result = load(tmp_path, "p.csv", codecs.BOM_UTF8 + b"prompt,page\nA cat,2\n")
    assert errors(result) == []
    assert result.specs[0].page == 2


def test_latin1_byte_is_reported_with_line_column_and_accepted_encodings(tmp_path: Path) -> None:
    data = b"first line\nsecond: caf" + b"\xe9 au lait\n"
    message = _only_issue(write(tmp_path, "old.txt", data))
    assert message.startswith(f"{tmp_path / 'old.txt'}:2:12: byte 0xE9 is not valid UTF-8")
    assert "UTF-8 (with or without BOM)" in message
    assert "UTF-16" in message
    assert "re-save the file as UTF-8" in message


def test_column_counts_characters_not_bytes(tmp_path: Path) -> None:
    data = "ééé€".encode() + b"\xff"
    path = write(tmp_path, "x.txt", data)
    assert ":1:5: byte 0xFF" in _only_issue(path)


def test_column_after_crlf_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "x.txt", b"a\r\nb\r\ncc\x80")
    assert ":3:3: byte 0x80" in _only_issue(path)


def test_invalid_utf16_is_reported(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "ok\n".encode("utf-16-le") + b"\x00\xd8" + b"A\x00"
    message = _only_issue(write(tmp_path, "u.txt", data))
    assert ":2:1: " in message
    assert "not valid UTF-16 LE" in message


def test_size_limit_is_checked_with_stat_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.txt"
    with open(path, "wb") as handle:
        handle.truncate(DEFAULT_MAX_BYTES + 1)  # sparse: costs no disk

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file must not be opened")

    monkeypatch.setattr(reader, "open", refuse, raising=False)
    message = _only_issue(path)
    assert "file is too large: 20.0 MB (20,971,521 bytes)" in message
    assert "the limit is 20.0 MB (20,971,520 bytes)" in message


def test_small_limit_message(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "x" * 100)
    assert _only_issue(path, max_bytes=10).endswith(
        "file is too large: 100 bytes; the limit is 10 bytes"
    )


def test_file_exactly_at_limit_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "x" * 10)
    assert read_prompt_file(path, max_bytes=10) == "x" * 10


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file (it is a PNG image)"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\x00", "it looks like a PDF"),
        (b"PK\x03\x04\x14\x00\x06\x00", "save it as plain text or CSV"),
        (b"prompt one\nprompt\x00two\n", "not a text file (it contains NUL bytes"),
        (b"\x01\x02\x03\x04\x05abc", "it contains many control characters"),
        (b"{\\rtf1\\ansi hello}", "RTF documents are not supported"),
    ],
    ids=["png", "pdf", "docx", "nul", "controls", "rtf"],
)
def test_binary_files_are_refused(tmp_path: Path, data: bytes, expected: str) -> None:
    assert expected in _only_issue(write(tmp_path, "input.txt", data))


def test_nul_beyond_the_sniff_window_is_located(tmp_path: Path) -> None:
    data = b"line\n" * 2000 + b"abc\x00"
    message = _only_issue(write(tmp_path, "late.txt", data))
    assert ":2001:4: contains a NUL character" in message


def test_utf16_without_bom_hints_at_the_bom(tmp_path: Path) -> None:
    message = _only_issue(write(tmp_path, "u.txt", "hello".encode("utf-16-le")))
    assert "save it with a BOM or as UTF-8" in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert _only_issue(tmp_path / "nope.txt").endswith("nope.txt: file not found")
    assert "is a directory, not a file" in _only_issue(tmp_path)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "locked.txt", "a prompt")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reader, "open", denied, raising=False)
    assert _only_issue(path).endswith("locked.txt: permission denied; cannot read this file")


def test_other_os_errors_become_issues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "flaky.txt", "a prompt")

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(reader, "open", broken, raising=False)
    assert _only_issue(path).endswith("cannot read file: input/output error")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    assert "not a regular file" in _only_issue(path)


def test_nul_in_path_is_an_issue_not_a_crash() -> None:
    result = load_prompt_files(["bad\x00name.txt"])
    assert len(result.errors) == 1
    assert "cannot read file" in str(result.errors[0])


def test_load_prompt_files_turns_read_failures_into_issues(tmp_path: Path) -> None:
    good = write(tmp_path, "good.txt", "a lighthouse")
    result = load_prompt_files([tmp_path / "missing.csv", good])
    assert texts(result) == ["a lighthouse"]
    missing = tmp_path / "missing.csv"
    assert [str(issue) for issue in result.errors] == [f"{missing}: file not found"]
    assert result.format_by_file[str(tmp_path / "missing.csv")] == "csv"


def test_decode_bytes_directly() -> None:
    assert decode_prompt_bytes(b"\xef\xbb\xbfa\r\nb", "f") == "a\nb"


def test_parse_text_applies_the_same_text_checks() -> None:
    assert errors(parse("prompt one\nprompt\x00two", "text")) == [
        "input:2:7: contains a NUL character; is this a binary file?"
    ]
    assert texts(parse("\ufeffone\r\ntwo\rthree", "text")) == ["one", "two", "three"]
    lone = parse("ok\nbad \ud800", "text")
    assert errors(lone) == ["input:2:5: contains an invalid character (a lone surrogate)"]
