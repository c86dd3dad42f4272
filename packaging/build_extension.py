"""Build ``dist/novelgen-extension-<version>.zip`` from ``extension/``.

Run as a script, ``.venv/bin/python packaging/build_extension.py [--out DIR]``. The
``packaging/`` folder is deliberately not an importable package: a top-level ``packaging``
package would shadow PyPI's ``packaging`` module that pip and setuptools import.

The zip holds only what Chrome loads (``manifest.json`` and the ``background/``, ``content/``,
``lib/``, ``options/`` and ``icons/`` folders), never tests, design notes or node_modules.
It is deterministic: entries sorted, fixed timestamps and permissions, so building twice gives
byte-identical files and a release can be checked by its hash.

Before zipping it checks what would otherwise only fail inside Chrome, one message per problem,
naming the file and the field: the manifest parses; every file it references exists (service
worker, content scripts, options page, icons) and is shipped; icons have the size their key
says; every file the options page and the service worker load exists; the version equals
``novelgen_desktop.__version__``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import struct
import sys
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import ClassVar

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT / "extension"
DEFAULT_OUT = ROOT / "dist"
VERSION_FILE = ROOT / "novelgen_desktop" / "__init__.py"

RUNTIME_DIRS = ("background", "content", "lib", "options", "icons")
"""What Chrome loads. Everything else in extension/ (tests/, DESIGN.md, package.json,
node_modules/) stays out of the zip."""
RUNTIME_FILES = ("manifest.json",)
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
"""The earliest date a zip can hold: a fixed value so the archive does not depend on when or
where the files were checked out."""
FILE_MODE = 0o644
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)
_IMPORT_SCRIPTS = re.compile(r"importScripts\s*\(([^)]*)\)")
_STRING = re.compile(r"""(["'])([^"'\\]+)\1""")


class BuildError(Exception):
    """The source tree cannot be packed; ``problems`` lists every reason found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def app_version(version_file: Path = VERSION_FILE) -> str:
    """``__version__`` read as text: importing the package would pull in its dependencies."""
    match = re.search(
        r"""^__version__\s*=\s*["']([^"']+)["']""",
        version_file.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    if not match:
        raise BuildError([f"{version_file}: no __version__ = '...' line"])
    return match.group(1)


def runtime_files(source: Path) -> list[str]:
    """The zip's entries, as sorted POSIX paths relative to ``source``.

    Hidden files (``.DS_Store``, editor swap files) are left out: Chrome refuses to load an
    extension with a file or folder whose name starts with ``_`` at the top, and nothing
    hidden is ever needed.
    """
    names = [name for name in RUNTIME_FILES if (source / name).is_file()]
    for folder in RUNTIME_DIRS:
        base = source / folder
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "node_modules"]
            for filename in filenames:
                if filename.startswith(".") or filename.endswith("~"):
                    continue
                names.append(Path(dirpath, filename).relative_to(source).as_posix())
    return sorted(names)


def _normalise(reference: str, base: PurePosixPath) -> str | None:
    """``reference`` (relative to folder ``base``, or extension-absolute with a leading /) as a
    path relative to the extension root; None when it climbs out of the extension."""
    clean = reference.split("#", 1)[0].split("?", 1)[0]
    path = PurePosixPath(clean.lstrip("/")) if clean.startswith("/") else base / clean
    parts: list[str] = []
    for part in path.parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _png_size(path: Path) -> tuple[int, int] | None:
    header = path.read_bytes()[:24]
    if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def _manifest_references(manifest: dict[str, object]) -> Iterator[tuple[str, str]]:
    """(field, path) for every file the manifest names: field is a JSON-path-like label."""
    background = manifest.get("background")
    if isinstance(background, dict):
        worker = background.get("service_worker")
        if isinstance(worker, str):
            yield "background.service_worker", worker
    scripts = manifest.get("content_scripts")
    if isinstance(scripts, list):
        for i, entry in enumerate(scripts):
            if isinstance(entry, dict):
                for kind in ("js", "css"):
                    files = entry.get(kind, [])
                    if isinstance(files, list):
                        for j, name in enumerate(files):
                            if isinstance(name, str):
                                yield f"content_scripts[{i}].{kind}[{j}]", name
    options_ui = manifest.get("options_ui")
    if isinstance(options_ui, dict) and isinstance(options_ui.get("page"), str):
        yield "options_ui.page", str(options_ui["page"])
    if isinstance(manifest.get("options_page"), str):
        yield "options_page", str(manifest["options_page"])
    action = manifest.get("action")
    if isinstance(action, dict):
        icon = action.get("default_icon")
        if isinstance(icon, str):
            yield "action.default_icon", icon
        elif isinstance(icon, dict):
            for size, name in icon.items():
                if isinstance(name, str):
                    yield f"action.default_icon.{size}", name
        if isinstance(action.get("default_popup"), str):
            yield "action.default_popup", str(action["default_popup"])
    icons = manifest.get("icons")
    if isinstance(icons, dict):
        for size, name in icons.items():
            if isinstance(name, str):
                yield f"icons.{size}", name


class _ReferenceCollector(HTMLParser):
    """Local files an HTML page loads: script src, link href, img src (with line numbers)."""

    ATTRIBUTES: ClassVar[dict[str, str]] = {
        "script": "src",
        "link": "href",
        "img": "src",
        "source": "src",
        "iframe": "src",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.references: list[tuple[int, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = self.ATTRIBUTES.get(tag)
        for name, value in attrs:
            if name == wanted and value and not _EXTERNAL.match(value.strip()):
                self.references.append((self.getpos()[0], f"<{tag} {name}>", value.strip()))


def check_extension(source: Path, expected_version: str) -> dict[str, object]:
    """Every reason the tree at ``source`` would not load or not match the app, at once.

    Returns the parsed manifest; raises BuildError listing the problems.
    """
    problems: list[str] = []
    manifest_path = source / "manifest.json"
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BuildError([f"{manifest_path}: missing"]) from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BuildError(
            [f"{manifest_path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"]
        ) from None
    if not isinstance(manifest, dict):
        raise BuildError([f"{manifest_path}: expected a JSON object at the top"])

    if manifest.get("manifest_version") != 3:
        problems.append(
            f"{manifest_path}: field manifest_version is {manifest.get('manifest_version')!r},"
            " expected 3"
        )
    version = manifest.get("version")
    if version != expected_version:
        problems.append(
            f"{manifest_path}: field version is {version!r} but novelgen_desktop.__version__ is "
            f"{expected_version!r}; they must match (the hub and the extension are released "
            "together)"
        )

    shipped = set(runtime_files(source))
    required = (
        ("background.service_worker", "the service worker"),
        ("options_ui.page", "the options page"),
    )
    references = list(_manifest_references(manifest))
    fields = {field for field, _ in references}
    for field, what in required:
        if field not in fields:
            problems.append(f"{manifest_path}: field {field} ({what}) is missing")
    for field, name in references:
        relative = _normalise(name, PurePosixPath())
        where = f"{manifest_path}: field {field}"
        if relative is None:
            problems.append(f"{where}: {name!r} points outside the extension")
            continue
        if not (source / relative).is_file():
            problems.append(f"{where}: file {relative} does not exist")
            continue
        if relative not in shipped:
            problems.append(
                f"{where}: file {relative} is not in a packaged folder ({', '.join(RUNTIME_DIRS)})"
            )
        size_key = field.rsplit(".", 1)[-1]
        if field.startswith(("icons.", "action.default_icon.")) and size_key.isdigit():
            size = _png_size(source / relative)
            if size is None:
                problems.append(f"{where}: {relative} is not a PNG image")
            elif size != (int(size_key), int(size_key)):
                problems.append(
                    f"{where}: {relative} is {size[0]}x{size[1]} px, expected {size_key}x{size_key}"
                )
        if relative.endswith(".html"):
            problems.extend(_check_html(source, relative, shipped))
        if field == "background.service_worker":
            problems.extend(_check_import_scripts(source, relative, shipped))

    if problems:
        raise BuildError(problems)
    return manifest


def _check_html(source: Path, page: str, shipped: set[str]) -> list[str]:
    collector = _ReferenceCollector()
    collector.feed((source / page).read_text(encoding="utf-8"))
    collector.close()
    base = PurePosixPath(page).parent
    problems = []
    for line, attribute, value in collector.references:
        relative = _normalise(value, base)
        where = f"{source / page}:{line}: {attribute}={value!r}"
        if relative is None:
            problems.append(f"{where} points outside the extension")
        elif not (source / relative).is_file():
            problems.append(f"{where}: file {relative} does not exist")
        elif relative not in shipped:
            problems.append(f"{where}: file {relative} is not in a packaged folder")
    return problems


def _check_import_scripts(source: Path, worker: str, shipped: set[str]) -> list[str]:
    """importScripts("...") string literals in the service worker: a missing one makes the
    worker fail to register, which Chrome reports only as "Service worker registration
    failed"."""
    text = (source / worker).read_text(encoding="utf-8")
    base = PurePosixPath(worker).parent
    problems = []
    for call in _IMPORT_SCRIPTS.finditer(text):
        line = text.count("\n", 0, call.start()) + 1
        for literal in _STRING.finditer(call.group(1)):
            value = literal.group(2)
            relative = _normalise(value, base)
            where = f"{source / worker}:{line}: importScripts({value!r})"
            if relative is None:
                problems.append(f"{where} points outside the extension")
            elif not (source / relative).is_file():
                problems.append(f"{where}: file {relative} does not exist")
            elif relative not in shipped:
                problems.append(f"{where}: file {relative} is not in a packaged folder")
    return problems


def write_zip(source: Path, names: list[str], target: Path) -> None:
    """Deterministic: sorted entries, one timestamp, one mode, one compression level."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(temporary, "w") as archive:
        for name in sorted(names):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so external_attr means a file mode everywhere
            info.external_attr = (0o100000 | FILE_MODE) << 16
            archive.writestr(info, (source / name).read_bytes(), compresslevel=9)
    os.replace(temporary, target)


def build(source: Path, out_dir: Path, expected_version: str | None = None) -> Path:
    """Check ``source`` and write the zip into ``out_dir``; returns the zip's path."""
    version = expected_version if expected_version is not None else app_version()
    check_extension(source, version)
    target = out_dir / f"novelgen-extension-{version}.zip"
    write_zip(source, runtime_files(source), target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the NovelGen extension zip.")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: dist/)"
    )
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="extension folder (default: extension/)"
    )
    parser.add_argument("--check", action="store_true", help="only run the checks, write nothing")
    args = parser.parse_args(argv)
    source: Path = args.source.resolve()
    try:
        if args.check:
            check_extension(source, app_version())
            print(f"{source}: ok")
            return 0
        target = build(source, args.out.resolve())
    except BuildError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"build_extension: {len(exc.problems)} problem(s); nothing written", file=sys.stderr)
        return 1
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    with zipfile.ZipFile(target) as archive:
        count = len(archive.namelist())
    print(f"wrote {target} ({count} files, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
