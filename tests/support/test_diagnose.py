"""``novelgen diagnose``: every section is in the archive, and no secret is, in any member."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from novelgen_desktop.cli.main import main
from novelgen_desktop.paths import DataPaths, resolve_data_dir
from novelgen_desktop.server.pairing import load_or_create_token
from novelgen_desktop.support.diagnose import SECTIONS, Redactor, write_diagnosis

SIM = ["--simulate", "--sim-latency", "0", "--sim-image-size", "32", "--no-progress"]
SETTINGS_SECRET = "hunter2-settings-password-Zq9"
COOKIE = "sessionid=Xy7Kq2Lm9Pz4Rt8Vw3Nb"
BEARER = "eyJhbGciOiJIUzI1NiJ9Abc123DefGhi456"
URL_KEY = "k3yInTheQueryString42"


@pytest.fixture
def data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[DataPaths, str]:
    """A data dir with a finished job, a pairing token, a settings file holding a secret
    and a log file that leaks the token, a cookie and a bearer header."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a lighthouse\na harbour\n")
    assert main(["run", str(prompts), "--out", str(tmp_path / "out"), *SIM]) == 0
    capsys.readouterr()
    paths = resolve_data_dir(os.environ["NOVELGEN_DATA_DIR"])
    token = load_or_create_token(paths)
    (paths.root / "desktop-settings.json").write_text(
        json.dumps({"hub_port": 8765, "proxy_password": SETTINGS_SECRET, "notifications": True})
    )
    (paths.root / "hub.log").write_text(
        "2026-01-01 INFO hub: started\n"
        f"2026-01-01 DEBUG hub: hello from worker, token {token}\n"
        f"2026-01-01 DEBUG http: Cookie: {COOKIE}\n"
        f"2026-01-01 DEBUG http: Authorization: Bearer {BEARER}\n"
        "2026-01-01 INFO writer: 00001.png sha256 " + "ab" * 32 + "\n"
    )
    return paths, token


def test_every_section_is_there_and_no_secret_is(
    data: tuple[DataPaths, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _paths, token = data
    target = tmp_path / "report.zip"
    assert main(["flags", "set", "multi_tab", "off"]) == 0
    capsys.readouterr()
    # A remote flag URL may carry an access key in its query: never in the archive.
    monkeypatch.setenv("NOVELGEN_FLAGS_URL", f"https://flags.example/ng.json?key={URL_KEY}")
    assert main(["diagnose", "--out", str(target)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{target}  (") and " bytes, " in printed
    with zipfile.ZipFile(target) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name in ("README.txt", "versions.json", "state.json", "settings.json", "memory.json"):
        assert name in members
    flags = json.loads(members["flags.json"])
    assert flags["flags"]["multi_tab"] == {"setting": False, "source": "local file"}
    assert flags["remote"] == {"location": "https://flags.example/ng.json"}
    assert [v["reason"] for v in flags["history"]][-1] == "started"
    assert "logs/hub.log" in members and "logs/events.jsonl" in members
    assert not any("pairing" in name for name in members)
    for secret in (token, SETTINGS_SECRET, COOKIE, BEARER, URL_KEY):
        for name, data_bytes in members.items():
            assert secret.encode() not in data_bytes, f"{secret[:6]}… in {name}"

    state = json.loads(members["state.json"])
    [job] = state["jobs"]
    assert job["counts"] == {"done": 2} and state["integrity_check"] == ["ok"]
    assert state["schema_version"] >= 1 and state["snapshots"][job["id"]]
    assert "jobs" in state["disk_usage_bytes"]
    settings = json.loads(members["settings.json"])["settings"]
    assert settings == {"hub_port": 8765, "proxy_password": "[REDACTED]", "notifications": True}
    versions = json.loads(members["versions.json"])
    assert versions["novelgen"] and versions["websockets"] and versions["python"]
    memory = json.loads(members["memory.json"])
    assert memory["system"]["total_bytes"] > 0
    log = members["logs/hub.log"].decode()
    assert "Cookie: [REDACTED]" in log and "Authorization: [REDACTED]" in log
    assert "ab" * 32 in log  # a digest is not a secret: a report can still name an image
    readme = members["README.txt"].decode()
    for name in members:
        if name != "README.txt":
            assert name in readme
    assert "field 'proxy_password'" in readme and "Cookie header" in readme
    assert "pairing token" in readme


def test_a_failing_section_is_recorded_and_the_rest_written(
    data: tuple[DataPaths, str], tmp_path: Path
) -> None:
    paths, token = data

    def broken(_paths: DataPaths) -> object:
        raise RuntimeError("the flags store is locked")

    def leaky(_paths: DataPaths) -> object:
        return {"nested": {"auth_token": token, "note": f"uses {token}"}, "port": 8765}

    archive = write_diagnosis(
        paths, tmp_path / "d.zip", sections=[*SECTIONS[:1], ("flags", broken), ("x", leaky)]
    )
    assert archive.failed == {"flags": "RuntimeError: the flags store is locked"}
    with zipfile.ZipFile(archive.path) as opened:
        assert sorted(opened.namelist()) == ["README.txt", "versions.json", "x.json"]
        x = json.loads(opened.read("x.json"))
        assert "flags: RuntimeError" in opened.read("README.txt").decode()
    assert x == {"nested": {"auth_token": "[REDACTED]", "note": "uses [REDACTED]"}, "port": 8765}


def test_the_redactor_keeps_ordinary_text() -> None:
    redactor = Redactor(set())
    text = "job prompts-20261203-41c9 wrote chapter-one/001-02.png in 0.5 s"
    assert redactor.text(text, "t") == text
    assert redactor.text("url?token=abc&x=1", "t") == "url?token=[REDACTED]&x=1"
    assert not redactor.taken.get(("t", "a token-shaped string"))
