"""The remote configuration: conditional fetches, refusal of bad documents, last known good."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from flag_testkit import ConfigServer, document

from novelgen_desktop.errors import ConfigError
from novelgen_desktop.flags.document import FlagSetting
from novelgen_desktop.flags.remote import RemoteConfig, check_location

GOOD = document(multi_tab=False)
NEWER = document(multi_tab=False, memory_governor=False)
BAD_DOCUMENTS = {
    "invalid JSON": '{"schema": 1, "flags": {"multi_tab": fals}}',
    "unknown flag": document(multi_tabz=False),
    "wrong type": document(multi_tab="off"),
    "wrong schema": json.dumps({"schema": 2, "flags": {}}),
}
REASONS = {
    "invalid JSON": "line 1, column 38: not valid JSON",
    "unknown flag": "flags.multi_tabz: unknown flag (did you mean 'multi_tab'?)",
    "wrong type": 'flags.multi_tab: expected true or false, got "off"',
    "wrong schema": "schema: expected 1, got 2",
}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "flags" / "remote-cache.json"


def test_first_fetch_updates_and_writes_the_cache(config_server: ConfigServer, cache: Path) -> None:
    config_server.publish(GOOD)
    remote = RemoteConfig(config_server.url, cache)
    assert remote.cached_layer() is None
    result = remote.fetch()
    assert result.status == "updated"
    assert result.layer == {"multi_tab": FlagSetting(value=False)}
    assert result.reason == f"1 flag(s) from {config_server.url}"
    assert remote.last_result == result
    assert len(config_server.requests) == 1
    first = config_server.requests[0]
    assert "If-None-Match" not in first.headers
    assert "If-Modified-Since" not in first.headers
    assert first.headers["User-Agent"].startswith("NovelGen/")
    saved = json.loads(cache.read_text(encoding="utf-8"))
    assert saved["location"] == config_server.url
    assert saved["etag"] == config_server.etag
    assert saved["text"] == GOOD
    assert remote.cached_layer() == result.layer


def test_second_fetch_sends_the_etag_and_gets_304(config_server: ConfigServer, cache: Path) -> None:
    config_server.publish(GOOD)
    remote = RemoteConfig(config_server.url, cache)
    assert remote.fetch().status == "updated"
    result = remote.fetch()
    assert result.status == "unchanged"
    assert result.reason == "not modified"
    assert result.layer == {"multi_tab": FlagSetting(value=False)}
    assert [seen.status for seen in config_server.requests] == [200, 304]
    second = config_server.requests[1]
    assert second.headers["If-None-Match"] == config_server.etag
    assert second.headers["If-Modified-Since"] == config_server.last_modified
    # a new document on the server: a 200 and an update
    config_server.publish(NEWER)
    third = remote.fetch()
    assert third.status == "updated"
    assert third.layer is not None
    assert third.layer["memory_governor"] == FlagSetting(value=False)
    assert [seen.status for seen in config_server.requests] == [200, 304, 200]
    assert json.loads(cache.read_text(encoding="utf-8"))["etag"] == config_server.etag


def test_a_200_with_the_same_text_is_unchanged(config_server: ConfigServer, cache: Path) -> None:
    config_server.publish(GOOD)
    remote = RemoteConfig(config_server.url, cache)
    remote.fetch()
    # a server that ignores conditional requests: the same bytes are still "unchanged"
    data = json.loads(cache.read_text(encoding="utf-8"))
    data["etag"] = None
    data["last_modified"] = None
    cache.write_text(json.dumps(data), encoding="utf-8")
    result = remote.fetch()
    assert config_server.requests[-1].status == 200
    assert result.status == "unchanged"


def test_if_modified_since_alone_gets_304(config_server: ConfigServer, cache: Path) -> None:
    """A server without ETags: the Last-Modified date is sent back and is enough."""
    config_server.publish(GOOD)
    remote = RemoteConfig(config_server.url, cache)
    remote.fetch()
    data = json.loads(cache.read_text(encoding="utf-8"))
    data["etag"] = None
    cache.write_text(json.dumps(data), encoding="utf-8")
    result = remote.fetch()
    seen = config_server.requests[-1]
    assert "If-None-Match" not in seen.headers
    assert seen.headers["If-Modified-Since"] == config_server.last_modified
    assert seen.status == 304
    assert result.status == "unchanged"
    assert result.layer == {"multi_tab": FlagSetting(value=False)}


@pytest.mark.parametrize("kind", sorted(BAD_DOCUMENTS))
def test_a_malformed_document_is_rejected_and_the_last_known_good_kept(
    config_server: ConfigServer, cache: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    config_server.publish(GOOD)
    remote = RemoteConfig(config_server.url, cache)
    good = remote.fetch()
    assert good.status == "updated"
    cached_before = cache.read_text(encoding="utf-8")
    config_server.publish(BAD_DOCUMENTS[kind])
    with caplog.at_level(logging.WARNING, logger="novelgen_desktop.flags.remote"):
        result = remote.fetch()
    assert result.status == "rejected"
    assert result.layer == good.layer  # the last known good layer
    assert result.reason.startswith("remote flags refused, nothing changed:")
    assert REASONS[kind] in result.reason
    assert config_server.url in result.reason
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(REASONS[kind] in message for message in logged), logged
    assert cache.read_text(encoding="utf-8") == cached_before
    assert remote.cached_layer() == good.layer


def test_a_rejected_first_document_leaves_no_layer(
    config_server: ConfigServer, cache: Path
) -> None:
    config_server.publish(BAD_DOCUMENTS["unknown flag"])
    result = RemoteConfig(config_server.url, cache).fetch()
    assert result.status == "rejected"
    assert result.layer is None
    assert not cache.exists()


def test_non_utf8_is_rejected(config_server: ConfigServer, cache: Path) -> None:
    config_server.publish(GOOD)
    remote = RemoteConfig(config_server.url, cache)
    remote.fetch()
    config_server.publish('{"schema": 1, "comment": "café", "flags": {}}'.encode("latin-1"))
    result = remote.fetch()
    assert result.status == "rejected"
    assert "not valid JSON" in result.reason
    assert result.layer == {"multi_tab": FlagSetting(value=False)}


def test_server_down_is_unreachable_and_keeps_the_last_known_good(
    config_server: ConfigServer, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_server.publish(GOOD)
    url = config_server.url
    RemoteConfig(url, cache).fetch()
    config_server.stop()
    restarted = RemoteConfig(url, cache, timeout=2.0)  # a new process: only the cache
    with caplog.at_level(logging.WARNING, logger="novelgen_desktop.flags.remote"):
        result = restarted.fetch()
    assert result.status == "unreachable"
    assert result.layer == {"multi_tab": FlagSetting(value=False)}
    assert f"remote flags {url} unreachable" in result.reason
    assert result.reason.endswith("keeping the last known good")
    assert any("unreachable" in r.getMessage() for r in caplog.records)


def test_http_error_status_is_unreachable(config_server: ConfigServer, cache: Path) -> None:
    config_server.publish(GOOD)
    remote = RemoteConfig(config_server.url, cache)
    remote.fetch()
    config_server.fail_with = 503
    result = remote.fetch()
    assert result.status == "unreachable"
    assert "HTTP 503" in result.reason
    assert result.layer == {"multi_tab": FlagSetting(value=False)}


def test_a_cache_of_another_location_is_not_used(config_server: ConfigServer, cache: Path) -> None:
    config_server.publish(GOOD)
    RemoteConfig(config_server.url, cache).fetch()
    other = RemoteConfig(config_server.url.replace("127.0.0.1", "localhost"), cache)
    assert other.cached_layer() is None
    config_server.stop()
    assert other.fetch().layer is None


def test_a_corrupt_cache_is_no_cache(cache: Path, tmp_path: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json", encoding="utf-8")
    remote = RemoteConfig(str(tmp_path / "missing.json"), cache)
    assert remote.cached_layer() is None
    cache.write_text(
        json.dumps({"location": remote.location, "text": document(unknown_flag=True)}),
        encoding="utf-8",
    )
    assert remote.cached_layer() is None
    result = remote.fetch()
    assert (result.status, result.layer) == ("unreachable", None)


def test_a_slow_server_is_unreachable_within_about_the_timeout(
    config_server: ConfigServer, cache: Path
) -> None:
    config_server.publish(GOOD)
    config_server.delay = 3.0
    remote = RemoteConfig(config_server.url, cache, timeout=0.3)
    started = time.monotonic()
    result = remote.fetch()
    elapsed = time.monotonic() - started
    assert result.status == "unreachable"
    assert "timed out" in result.reason
    assert elapsed < 1.5, elapsed
    assert result.layer is None


def test_a_file_path_remote(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "share" / "flags.json"
    source.parent.mkdir()
    source.write_text(GOOD, encoding="utf-8")
    for location in (str(source), source.as_uri()):
        cache.unlink(missing_ok=True)
        remote = RemoteConfig(location, cache)
        first = remote.fetch()
        assert first.status == "updated", first
        assert first.layer == {"multi_tab": FlagSetting(value=False)}
        assert remote.fetch().status == "unchanged"
    source.write_text(NEWER, encoding="utf-8")
    assert remote.fetch().status == "updated"
    source.write_text(BAD_DOCUMENTS["wrong type"], encoding="utf-8")
    rejected = remote.fetch()
    assert rejected.status == "rejected"
    assert rejected.layer is not None
    assert rejected.layer["memory_governor"] == FlagSetting(value=False)
    source.unlink()
    gone = remote.fetch()
    assert gone.status == "unreachable"
    assert gone.layer == rejected.layer


@pytest.mark.parametrize(
    "location",
    [
        "https://flags.example.com/novelgen.json",
        "http://127.0.0.1:8080/flags.json",
        "http://localhost/flags.json",
        "http://[::1]:9000/flags.json",
        "file:///srv/share/flags.json",
        "/srv/share/flags.json",
        "relative/flags.json",
        r"C:\shared\flags.json",
    ],
)
def test_check_location_accepts(location: str) -> None:
    assert check_location(location) == location


@pytest.mark.parametrize(
    "location",
    [
        "http://flags.example.com/flags.json",
        "http://10.0.0.5/flags.json",
        "http://127.0.0.1.example.com/flags.json",
        "http://localhost@example.com/flags.json",
    ],
)
def test_check_location_refuses_plain_http_elsewhere(location: str) -> None:
    with pytest.raises(ConfigError, match="plain http is only allowed to this machine"):
        check_location(location)


@pytest.mark.parametrize(
    "location", ["ftp://example.com/flags.json", "javascript:alert(1)", "data:,{}", "ws://x/y"]
)
def test_check_location_refuses_odd_schemes(location: str) -> None:
    with pytest.raises(ConfigError, match=r"expected an https:// URL or a file path"):
        check_location(location)


def test_remote_config_checks_its_location(cache: Path) -> None:
    with pytest.raises(ConfigError, match="plain http"):
        RemoteConfig("http://example.com/flags.json", cache)
