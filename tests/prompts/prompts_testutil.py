"""Small helpers shared by the prompt-import tests (not a conftest, to keep names unique)."""

from __future__ import annotations

from pathlib import Path

from novelgen_desktop.prompts import ImportResult, load_prompt_files, parse_text


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


def load(tmp_path: Path, name: str, content: str | bytes, **kwargs: object) -> ImportResult:
    path = write(tmp_path, name, content)
    return load_prompt_files([path], **kwargs)  # type: ignore[arg-type]


def parse(text: str, fmt: str, filename: str = "input") -> ImportResult:
    return parse_text(text, filename=filename, format=fmt)


def errors(result: ImportResult) -> list[str]:
    return [str(issue) for issue in result.errors]


def warnings(result: ImportResult) -> list[str]:
    return [str(issue) for issue in result.warnings]


def texts(result: ImportResult) -> list[str]:
    return [spec.text for spec in result.specs]


def keys(result: ImportResult) -> list[tuple[str | None, int | None, int | None]]:
    return [(spec.chapter, spec.page, spec.panel) for spec in result.specs]
