"""Fixtures of the flag tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flag_testkit import ConfigServer


@pytest.fixture
def config_server() -> Iterator[ConfigServer]:
    server = ConfigServer()
    server.start()
    yield server
    server.stop()
