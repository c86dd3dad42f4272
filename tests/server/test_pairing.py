"""The paired extensions: NovelGen's own extension (its id fixed by the manifest ``key``) is
always accepted and listed first, never written to the file; others are paired by hand."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.server.pairing import (
    EXTENSIONS_FILE,
    SHIPPED_EXTENSION_ID,
    check_extension_id,
    pair_extension,
    paired_extensions,
)

MANIFEST = Path(__file__).resolve().parents[2] / "extension" / "manifest.json"
OTHER = "abcdefghijklmnopabcdefghijklmnop"
FORK = "p" * 32


def chrome_extension_id(key: str) -> str:
    """How Chrome derives an extension's id from the manifest ``key`` (the DER public key,
    base64): the first 128 bits of its SHA-256, each hex digit 0–f written as a letter a–p."""
    digest = hashlib.sha256(base64.b64decode(key, validate=True)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(digit, 16)) for digit in digest)


def test_chrome_id_derivation_matches_a_known_example() -> None:
    # Every digit maps to its letter: 0 → a, 9 → j, f → p.
    digest = hashlib.sha256(b"\x00").hexdigest()[:32]
    assert chrome_extension_id(base64.b64encode(b"\x00").decode()) == digest.translate(
        str.maketrans("0123456789abcdef", "abcdefghijklmnop")
    )


def test_shipped_id_is_the_id_chrome_gives_the_manifest_key() -> None:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    key = manifest["key"]
    assert isinstance(key, str) and len(key) > 300, "a 2048-bit RSA public key"
    assert chrome_extension_id(key) == SHIPPED_EXTENSION_ID
    assert check_extension_id(SHIPPED_EXTENSION_ID) == SHIPPED_EXTENSION_ID


def test_a_new_data_dir_has_the_shipped_extension_only_and_no_file(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data").ensure()
    assert paired_extensions(paths) == [SHIPPED_EXTENSION_ID]
    assert not (paths.root / EXTENSIONS_FILE).exists()
    assert pair_extension(paths, SHIPPED_EXTENSION_ID) == [SHIPPED_EXTENSION_ID]
    assert not (paths.root / EXTENSIONS_FILE).exists(), "nothing to remember"


def test_paired_by_hand_are_kept_after_the_shipped_one(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data").ensure()
    assert pair_extension(paths, OTHER) == [SHIPPED_EXTENSION_ID, OTHER]
    assert pair_extension(paths, FORK) == [SHIPPED_EXTENSION_ID, OTHER, FORK]
    assert pair_extension(paths, OTHER) == [SHIPPED_EXTENSION_ID, OTHER, FORK]  # once
    assert pair_extension(paths, SHIPPED_EXTENSION_ID) == [SHIPPED_EXTENSION_ID, OTHER, FORK]
    stored = json.loads((paths.root / EXTENSIONS_FILE).read_text(encoding="utf-8"))
    assert stored == [OTHER, FORK], "the shipped id is never written"
    assert paired_extensions(paths) == [SHIPPED_EXTENSION_ID, OTHER, FORK]


def test_a_file_that_lists_the_shipped_id_still_lists_it_once_and_first(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data").ensure()
    file = paths.root / EXTENSIONS_FILE
    file.write_text(json.dumps([OTHER, SHIPPED_EXTENSION_ID]), encoding="utf-8")
    assert paired_extensions(paths) == [SHIPPED_EXTENSION_ID, OTHER]
    pair_extension(paths, FORK)
    assert json.loads(file.read_text(encoding="utf-8")) == [OTHER, FORK]


@pytest.mark.parametrize("text", ['{"ids": []}', "[1]", '["not-an-id"]', "[", ""])
def test_a_damaged_file_is_named(tmp_path: Path, text: str) -> None:
    paths = DataPaths(tmp_path / "data").ensure()
    (paths.root / EXTENSIONS_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"paired-extensions\.json|extension id"):
        paired_extensions(paths)


def _links(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith("extension:")]


def test_pair_prints_the_shipped_extensions_link_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    assert main(["--data-dir", data, "pair", "--port", "9100"]) == 0
    out = capsys.readouterr().out
    assert "none paired yet" not in out
    assert _links(out) == [SHIPPED_EXTENSION_ID]
    token = (tmp_path / "data" / "pairing-token").read_text().strip()
    link = (
        f"chrome-extension://{SHIPPED_EXTENSION_ID}/options/options.html"
        f"#hub=ws://127.0.0.1:9100/&token={token}"
    )
    assert link in out

    assert main(["--data-dir", data, "pair", "--allow-extension", OTHER]) == 0
    assert _links(capsys.readouterr().out) == [SHIPPED_EXTENSION_ID, OTHER]
