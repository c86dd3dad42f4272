"""The one-folder app bundle (packaging/build_app.py), built once and run as a user runs it.

Slow (the build takes about a minute on two cores) but run by CI all the same: a bundle that
builds yet cannot start — a data file left out, a Qt plugin missing, a module PyInstaller did
not see — fails only here, never in the source tree's tests.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from novelgen_desktop import __version__

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "packaging" / "build_app.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_extension_version_is_the_apps() -> None:
    """build_extension.py refuses a mismatch; this says it without building anything."""
    manifest = json.loads((ROOT / "extension" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["version"] == __version__


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/novelgen/ built into a temporary folder, once for every test here."""
    base = tmp_path_factory.mktemp("bundle")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, BUILD_SCRIPT, "--dist", base / "dist", "--work", base / "work"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
    folder = base / "dist" / "novelgen"
    assert f"built {folder}" in result.stdout
    sys.stderr.write(f"app bundle built in {time.monotonic() - started:.0f} s\n")
    return folder


def headless_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVELGEN_")}
    env.update(QT_QPA_PLATFORM="offscreen", **extra)
    return env


def run_binary(
    folder: Path, *args: str | Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(folder / "novelgen"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=headless_env(),
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_version_is_the_apps(bundle: Path) -> None:
    result = run_binary(bundle, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"novelgen {__version__}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_runs_a_simulated_job_headless(bundle: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "".join(f"A lighthouse keeper climbs the stairs, panel {n}\n" for n in range(1, 21)),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = run_binary(
        bundle,
        "--data-dir",
        tmp_path / "data",
        "run",
        "--simulate",
        "--workers",
        "3",
        "--sim-latency",
        "0.05",
        "--no-progress",
        prompts,
        "--out",
        out,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (job,) = [p for p in out.iterdir() if p.is_dir()]
    images = sorted(job.rglob("*.png"))
    assert len(images) == 20
    assert all(image.read_bytes()[:8] == PNG_MAGIC for image in images)
    rows = [
        json.loads(line)
        for line in (job / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(rows) == 20


def read_desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign] # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_desktop_file_names_the_binary_and_a_bundled_icon(bundle: Path) -> None:
    entry = read_desktop_entry(bundle / "share" / "applications" / "novelgen.desktop")
    assert entry["Type"] == "Application"
    assert entry["Name"] == "NovelGen Desktop"
    assert entry["Exec"].split()[0] == "novelgen" == (bundle / "novelgen").name
    assert entry["Terminal"] == "false"
    categories = entry["Categories"].split(";")
    assert "Graphics" in categories and entry["Categories"].endswith(";")
    icon = entry["Icon"]
    for size in (16, 32, 48, 128, 256):
        png = bundle / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{icon}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, png
    assert (bundle / "share" / "icons" / "hicolor" / "scalable" / "apps" / f"{icon}.svg").is_file()
    # The icons the window itself loads (gui/icons.py: <package>/resources/icons).
    internal_icons = bundle / "_internal" / "novelgen_desktop" / "resources" / "icons"
    assert (internal_icons / "novelgen-256.png").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_desktop_file_validates(bundle: Path) -> None:
    validate = shutil.which("desktop-file-validate")
    if validate is None:
        pytest.skip("desktop-file-validate not installed (scripts/setup.sh --tests installs it)")
    result = subprocess.run(
        [validate, str(bundle / "share" / "applications" / "novelgen.desktop")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_script_installs_and_uninstalls_for_the_user(bundle: Path, tmp_path: Path) -> None:
    """docs/install.md's steps: install.sh adds menu entry, icon and command; --uninstall
    removes exactly those."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_DATA_HOME"}
    env["HOME"] = str(home)
    installed = subprocess.run(
        [str(bundle / "install.sh")], capture_output=True, text=True, env=env, check=False
    )
    assert installed.returncode == 0, installed.stderr
    desktop = home / ".local" / "share" / "applications" / "novelgen.desktop"
    entry = read_desktop_entry(desktop)
    assert entry["Exec"] == f'"{bundle.resolve() / "novelgen"}"'
    assert entry["TryExec"] == str(bundle.resolve() / "novelgen")
    icons = home / ".local" / "share" / "icons" / "hicolor"
    assert (icons / "256x256" / "apps" / "novelgen.png").is_file()
    assert (icons / "scalable" / "apps" / "novelgen.svg").is_file()
    command = home / ".local" / "bin" / "novelgen"
    assert command.resolve() == (bundle / "novelgen").resolve()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(
            ["desktop-file-validate", str(desktop)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0 and not check.stdout.strip(), check.stdout

    removed = subprocess.run(
        [str(bundle / "install.sh"), "--uninstall"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert removed.returncode == 0, removed.stderr
    assert not desktop.exists()
    assert not command.exists() and not command.is_symlink()
    assert not list(icons.rglob("novelgen.*"))
    assert (bundle / "novelgen").is_file()  # the folder itself stays


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bundle_carries_the_extension_and_the_examples(bundle: Path) -> None:
    manifest = json.loads((bundle / "extension" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["version"] == __version__
    assert (bundle / "extension" / manifest["background"]["service_worker"]).is_file()
    assert (bundle / "examples" / "the-lighthouse-keeper.script").is_file()
    assert (bundle / "examples" / "the-lighthouse-keeper.bible.toml").is_file()
    assert (bundle / "INSTALL.md").is_file()


class _Lines:
    """A child's stderr read on a thread, so the test can wait for one line with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_window_opens_offscreen_and_quits_on_sigterm(bundle: Path, tmp_path: Path) -> None:
    """The window with its hub and simulated tabs starts frozen (Qt plugins, pyqtgraph,
    qasync all found) and SIGTERM quits it the way the menu does, exit 0."""
    command = [bundle / "novelgen", "--data-dir", tmp_path / "data", "gui", "--simulate"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=headless_env(),
    )
    lines = _Lines(process)
    try:
        connected = lines.wait_for("worker sim-2 connected", timeout=60)
        assert connected, "".join(lines.lines)
        time.sleep(1)  # a few window ticks with workers in it
        assert process.poll() is None, "".join(lines.lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "".join(lines.lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert lines.wait_for("server closed", timeout=5), "".join(lines.lines)
