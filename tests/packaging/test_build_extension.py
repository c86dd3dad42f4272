"""packaging/build_extension.py, run as users run it: a script in a subprocess.

The broken-tree tests work on copies in tmp_path, completed with stub files where the real
extension does not (yet) have them, so they test the checks and not the state of the tree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from novelgen_desktop import __version__

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "build_extension.py"
EXTENSION = ROOT / "extension"
MANIFEST = json.loads((EXTENSION / "manifest.json").read_text(encoding="utf-8"))


def _referenced(manifest: dict[str, object]) -> list[str]:
    background = manifest["background"]
    assert isinstance(background, dict)
    names = [background["service_worker"]]
    for entry in manifest.get("content_scripts", []):  # type: ignore[attr-defined]
        names += entry.get("js", []) + entry.get("css", [])
    return names


MISSING_RUNTIME = [name for name in _referenced(MANIFEST) if not (EXTENSION / name).is_file()]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # No cwd on sys.path beyond the script's folder: this is how a user runs it.
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture
def complete_copy(tmp_path: Path) -> Path:
    """extension/ copied, with stubs for runtime files other people have not written yet."""
    copy = tmp_path / "extension"
    shutil.copytree(EXTENSION, copy, ignore=shutil.ignore_patterns("node_modules"))
    for name in MISSING_RUNTIME:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text("// stub for the build test\n", encoding="utf-8")
    return copy


def _zip_of(out: Path) -> Path:
    return out / f"novelgen-extension-{__version__}.zip"


@pytest.mark.skipif(
    bool(MISSING_RUNTIME), reason=f"extension files not written yet: {MISSING_RUNTIME}"
)
def test_builds_the_real_extension(tmp_path: Path) -> None:
    result = run("--out", tmp_path)
    assert result.returncode == 0, result.stderr
    archive = _zip_of(tmp_path)
    assert f"wrote {archive}" in result.stdout
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["version"] == __version__
    for name in _referenced(manifest):
        assert name in names


def test_zip_holds_only_runtime_files(complete_copy: Path, tmp_path: Path) -> None:
    (complete_copy / "package.json").write_text("{}", encoding="utf-8")
    (complete_copy / "node_modules" / "x").mkdir(parents=True)
    (complete_copy / "node_modules" / "x" / "index.js").write_text("", encoding="utf-8")
    (complete_copy / "lib" / ".DS_Store").write_bytes(b"\0")
    (complete_copy / "options" / "options.js~").write_text("", encoding="utf-8")
    out = tmp_path / "out"
    result = run("--source", complete_copy, "--out", out)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(_zip_of(out)) as z:
        names = z.namelist()
        infos = z.infolist()
    assert names == sorted(names)
    assert "manifest.json" in names
    assert "lib/settings.js" in names
    assert "options/options.html" in names
    assert "icons/icon-128.png" in names
    top = {name.split("/")[0] for name in names}
    assert top <= {"manifest.json", "background", "content", "lib", "options", "icons"}
    assert not [n for n in names if n.startswith("tests/") or n.endswith(("~", ".DS_Store"))]
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in infos)
    assert all(info.external_attr >> 16 == 0o100644 for info in infos)


def test_two_builds_are_byte_identical(complete_copy: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert run("--source", complete_copy, "--out", first).returncode == 0
    # A later checkout: same content, different modification times.
    for path in complete_copy.rglob("*"):
        if path.is_file():
            path.touch()
    assert run("--source", complete_copy, "--out", second).returncode == 0
    digest_a = hashlib.sha256(_zip_of(first).read_bytes()).hexdigest()
    digest_b = hashlib.sha256(_zip_of(second).read_bytes()).hexdigest()
    assert digest_a == digest_b


def test_missing_icon_is_named_with_its_field(complete_copy: Path, tmp_path: Path) -> None:
    (complete_copy / "icons" / "icon-48.png").unlink()
    result = run("--source", complete_copy, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert "field icons.48: file icons/icon-48.png does not exist" in result.stderr
    assert not (tmp_path / "out").exists(), "nothing is written when a check fails"


def test_icon_of_the_wrong_size(complete_copy: Path, tmp_path: Path) -> None:
    shutil.copy(complete_copy / "icons" / "icon-16.png", complete_copy / "icons" / "icon-32.png")
    result = run("--source", complete_copy, "--out", tmp_path)
    assert result.returncode == 1
    assert "field icons.32: icons/icon-32.png is 16x16 px, expected 32x32" in result.stderr
    assert "field action.default_icon.32" in result.stderr


def test_bad_json_reports_line_and_column(complete_copy: Path, tmp_path: Path) -> None:
    path = complete_copy / "manifest.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    # Drop the comma at the end of line 3: the parser stops at the start of line 4.
    assert lines[2].endswith(",")
    lines[2] = lines[2][:-1]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("--source", complete_copy, "--out", tmp_path)
    assert result.returncode == 1
    assert f"{path}:4:3: invalid JSON: Expecting ',' delimiter" in result.stderr


def test_version_mismatch(complete_copy: Path, tmp_path: Path) -> None:
    path = complete_copy / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["version"] = "9.9.9"
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    result = run("--source", complete_copy, "--out", tmp_path)
    assert result.returncode == 1
    assert (
        f"field version is '9.9.9' but novelgen_desktop.__version__ is '{__version__}'"
        in result.stderr
    )


def test_missing_content_script_and_service_worker(complete_copy: Path, tmp_path: Path) -> None:
    manifest = json.loads((complete_copy / "manifest.json").read_text(encoding="utf-8"))
    (complete_copy / manifest["background"]["service_worker"]).unlink()
    (complete_copy / manifest["content_scripts"][0]["js"][-1]).unlink()
    result = run("--source", complete_copy, "--out", tmp_path)
    assert result.returncode == 1
    assert "field background.service_worker: file background/service_worker.js does not exist" in (
        result.stderr
    )
    last = len(manifest["content_scripts"][0]["js"]) - 1
    assert f"field content_scripts[0].js[{last}]: file content/driver.js does not exist" in (
        result.stderr
    )
    # All problems at once, and a count.
    assert "2 problem(s)" in result.stderr


def test_missing_file_of_the_options_page(complete_copy: Path, tmp_path: Path) -> None:
    (complete_copy / "options" / "options.css").unlink()
    result = run("--source", complete_copy, "--out", tmp_path)
    assert result.returncode == 1
    html = complete_copy / "options" / "options.html"
    line = next(
        i
        for i, text in enumerate(html.read_text(encoding="utf-8").splitlines(), 1)
        if "options.css" in text
    )
    assert f"{html}:{line}: <link href>='options.css': file options/options.css does not exist" in (
        result.stderr
    )


def test_options_page_script_outside_the_packaged_folders(
    complete_copy: Path, tmp_path: Path
) -> None:
    html = complete_copy / "options" / "options.html"
    (complete_copy / "tests" / "helper.js").write_text("", encoding="utf-8")
    text = html.read_text(encoding="utf-8")
    html.write_text(
        text.replace("</body>", '<script src="../tests/helper.js"></script></body>'),
        encoding="utf-8",
    )
    result = run("--source", complete_copy, "--out", tmp_path)
    assert result.returncode == 1
    assert "file tests/helper.js is not in a packaged folder" in result.stderr


def test_missing_import_scripts_target(complete_copy: Path, tmp_path: Path) -> None:
    worker = complete_copy / "background" / "service_worker.js"
    worker.write_text(
        'importScripts("/lib/settings.js",\n  "../lib/nope.js");\n' + worker.read_text("utf-8"),
        encoding="utf-8",
    )
    result = run("--source", complete_copy, "--out", tmp_path)
    assert result.returncode == 1
    assert f"{worker}:1: importScripts('../lib/nope.js'): file lib/nope.js does not exist" in (
        result.stderr
    )
    assert "settings.js" not in result.stderr


def test_check_only(complete_copy: Path) -> None:
    result = run("--source", complete_copy, "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": ok")
