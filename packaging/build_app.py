"""Build the desktop app as a one-folder bundle: ``dist/novelgen/`` (PyInstaller).

Run as a script, ``.venv/bin/python packaging/build_app.py [--dist DIR] [--archive]``. The
``packaging/`` folder is deliberately not an importable package: a top-level ``packaging``
package would shadow PyPI's ``packaging`` module that pip and setuptools import.

It runs PyInstaller on ``packaging/novelgen.spec``, then checks what would otherwise only
fail on a user's machine: the binary exists and prints ``novelgen <__version__>``, the icons
the window loads and the Qt platform plugins are inside. It adds the browser extension
(``extension/``, unpacked, built by build_extension.py), the sample script and style bible
(``examples/``) and ``INSTALL.md``. On Linux it then adds what a desktop needs and PyInstaller
does not make: ``share/applications/novelgen.desktop``, the icon in ``share/icons/hicolor/``
(the freedesktop layout, so ``install.sh`` copies it as it is) and ``install.sh`` (menu entry,
icon and ``~/.local/bin/novelgen`` for the current user). ``--archive`` also packs the folder
as ``novelgen-<version>-linux-<arch>.tar.gz`` beside it.

PyInstaller builds for the OS it runs on; on Windows and macOS this script builds and checks
the folder but adds none of the Linux files (see packaging/README.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "novelgen.spec"
LINUX = ROOT / "packaging" / "linux"
ICONS = ROOT / "resources" / "icons"
EXAMPLES = ROOT / "examples"
INSTALL_DOC = ROOT / "docs" / "install.md"
VERSION_FILE = ROOT / "novelgen_desktop" / "__init__.py"
DEFAULT_DIST = ROOT / "dist"
DEFAULT_WORK = ROOT / "build" / "pyinstaller"
NAME = "novelgen"
ICON_SIZES = (16, 32, 48, 128, 256)
EXAMPLE_PATTERNS = ("*.script", "*.toml", "prompts.*", "references/*.png", "migration/*")
"""The sample inputs a user can try the bundle on; the generator scripts stay out (they need
the source tree)."""


class BuildError(Exception):
    """The bundle could not be built or is incomplete; the message says what and where."""


def app_version(version_file: Path = VERSION_FILE) -> str:
    """``__version__`` read as text: the version check must not depend on this interpreter
    importing the package."""
    match = re.search(
        r"""^__version__\s*=\s*["']([^"']+)["']""",
        version_file.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    if not match:
        raise BuildError(f"{version_file}: no __version__ = '...' line")
    return match.group(1)


def run_pyinstaller(dist: Path, work: Path) -> None:
    """PyInstaller on the spec, quietly (warnings only) and without questions."""
    try:
        import PyInstaller  # noqa: F401, PLC0415 - only to say clearly that it is missing
    except ImportError:
        raise BuildError(
            f"PyInstaller is not installed for {sys.executable}: "
            "bash scripts/setup.sh installs it (the project's [test] extra), "
            "or: .venv/bin/pip install pyinstaller"
        ) from None
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(SPEC),
        "--noconfirm",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
    ]
    result = subprocess.run(command, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise BuildError(f"PyInstaller failed (exit {result.returncode}); its messages are above")


def binary_path(folder: Path) -> Path:
    return folder / (f"{NAME}.exe" if sys.platform == "win32" else NAME)


def strip_interpreter(folder: Path) -> None:
    """Drop debug sections from the bundled libpython: a Python built from source (pyenv, as
    on this project's machines) ships it with debug info, 23 MB instead of 6 MB. Only that
    library: the wheels' libraries are stripped already, and stripping their patched ELF
    files is known to break them (the spec's strip=False)."""
    strip = shutil.which("strip")
    if strip is None or not sys.platform.startswith("linux"):
        return
    for library in (folder / "_internal").glob("libpython3*.so*"):
        subprocess.run([strip, "--strip-debug", str(library)], check=False, capture_output=True)


def check_bundle(folder: Path, version: str) -> None:
    """Every problem found, in one error: the binary, its version, the files it loads."""
    problems: list[str] = []
    binary = binary_path(folder)
    internal = folder / "_internal"
    if not binary.is_file():
        raise BuildError(f"{binary}: PyInstaller made no binary")
    for size in ICON_SIZES:
        icon = internal / "novelgen_desktop" / "resources" / "icons" / f"novelgen-{size}.png"
        if not icon.is_file():
            problems.append(f"{icon}: missing (gui/icons.py loads it; see datas in the spec)")
    plugins = internal / "PySide6" / "Qt" / "plugins" / "platforms"
    wanted = {"linux": ("xcb", "wayland", "offscreen"), "darwin": ("cocoa",)}.get(
        "linux" if sys.platform.startswith("linux") else sys.platform, ("windows",)
    )
    for plugin in wanted:
        if not any(plugins.glob(f"*q{plugin}*")):
            problems.append(f"{plugins}: no {plugin} platform plugin: the window cannot open")
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        problems.append(f"{binary} --version: {exc}")
    else:
        said = result.stdout.strip()
        if result.returncode != 0 or said != f"{NAME} {version}":
            problems.append(
                f"{binary} --version: expected '{NAME} {version}', got exit "
                f"{result.returncode}, '{said}' {result.stderr.strip()}"
            )
    if problems:
        raise BuildError("\n".join(problems))


def add_extras(folder: Path, work: Path, version: str) -> None:
    """What a user of the bundle needs beside the binary, on every OS: the browser extension
    (unpacked, ready for "Load unpacked"), the sample script and bible, INSTALL.md.

    The extension comes from packaging/build_extension.py, so it gets that script's checks
    (its version equals the app's, every file the manifest names is shipped) and its list of
    what Chrome loads, not a second copy of them here.
    """
    script = ROOT / "packaging" / "build_extension.py"
    out = work / "extension-zip"
    result = subprocess.run(
        [sys.executable, str(script), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"the extension does not build:\n{result.stderr.strip()}")
    target = folder / "extension"
    shutil.rmtree(target, ignore_errors=True)
    archive = out / f"novelgen-extension-{version}.zip"
    with zipfile.ZipFile(archive) as z:
        z.extractall(target)
    examples = folder / "examples"
    for pattern in EXAMPLE_PATTERNS:
        for source in sorted(EXAMPLES.glob(pattern)):
            destination = examples / source.relative_to(EXAMPLES)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    shutil.copyfile(INSTALL_DOC, folder / "INSTALL.md")


def add_linux_files(folder: Path) -> None:
    """The .desktop file, icons in the freedesktop layout, install.sh."""
    share = folder / "share"
    apps = share / "applications"
    apps.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LINUX / "novelgen.desktop", apps / "novelgen.desktop")
    hicolor = share / "icons" / "hicolor"
    for size in ICON_SIZES:
        target = hicolor / f"{size}x{size}" / "apps"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ICONS / f"novelgen-{size}.png", target / "novelgen.png")
    (hicolor / "scalable" / "apps").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ICONS / "novelgen.svg", hicolor / "scalable" / "apps" / "novelgen.svg")
    shutil.copyfile(LINUX / "install.sh", folder / "install.sh")
    (folder / "install.sh").chmod(0o755)


def make_archive(folder: Path, version: str) -> Path:
    """``novelgen-<version>-linux-<arch>.tar.gz`` holding the folder as ``novelgen/``."""
    archive = folder.parent / f"{NAME}-{version}-linux-{platform.machine()}.tar.gz"
    partial = archive.with_name(archive.name + ".part")
    with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
        tar.add(folder, arcname=NAME)
    os.replace(partial, archive)
    return archive


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_app.py", description="Build NovelGen Desktop as a one-folder app."
    )
    parser.add_argument(
        "--dist", type=Path, default=DEFAULT_DIST, help="output folder (default: dist/)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="PyInstaller's work folder (default: build/pyinstaller/)",
    )
    parser.add_argument(
        "--archive", action="store_true", help="also pack the folder as a .tar.gz (Linux)"
    )
    args = parser.parse_args(argv)
    dist: Path = args.dist.resolve()
    folder = dist / NAME
    started = time.monotonic()
    try:
        version = app_version()
        work: Path = args.work.resolve()
        run_pyinstaller(dist, work)
        strip_interpreter(folder)
        check_bundle(folder, version)
        add_extras(folder, work, version)
        linux = sys.platform.startswith("linux")
        if linux:
            add_linux_files(folder)
        archive = make_archive(folder, version) if args.archive and linux else None
    except BuildError as exc:
        sys.stderr.write(f"build_app: {exc}\n")
        return 1
    except OSError as exc:  # a source file missing, the disk full: say which file
        sys.stderr.write(f"build_app: {exc.strerror}: {exc.filename}\n")
        return 1
    seconds = time.monotonic() - started
    size_mb = folder_size(folder) / 1e6
    print(f"built {folder} ({size_mb:.0f} MB) in {seconds:.0f} s: NovelGen Desktop {version}")
    print(f"  run: {binary_path(folder)}   (no command opens the window; --help for the CLI)")
    if linux:
        print(f"  menu entry and icon for this user: {folder / 'install.sh'}")
    if archive is not None:
        print(f"wrote {archive} ({archive.stat().st_size / 1e6:.0f} MB)")
    elif args.archive:
        print("  --archive: only on Linux; see packaging/README.md for Windows and macOS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
