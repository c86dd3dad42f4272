"""Help → Migration guide…: docs/migration.md read in the app's own viewer, or a clear message
when the guide is not there."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.gui import help_viewer
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.help_viewer import HelpViewer, heading_anchor, help_document
from novelgen_desktop.gui.main_window import MainWindow
from novelgen_desktop.gui.qt import QtCore, QtGui, QtWidgets

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "migration.md"


@pytest.fixture
def window(session: DesktopSession, wait_until: Any) -> Iterator[MainWindow]:
    bridge = EngineBridge(session)
    main = MainWindow(bridge)
    main.show()
    yield main
    if not main.quitting:
        quit_seen: list[bool] = []
        main.quit_finished.connect(lambda: quit_seen.append(True))
        main.request_quit()
        wait_until(lambda: quit_seen, timeout=60)
    main.deleteLater()


def help_action(window: MainWindow, text: str) -> QtGui.QAction:
    menus = {
        action.text(): action.menu()
        for action in window.menuBar().actions()
        if isinstance(action.menu(), QtWidgets.QMenu)
    }
    menu = menus["&Help"]
    assert isinstance(menu, QtWidgets.QMenu)
    (action,) = [a for a in menu.actions() if a.text() == text]
    return action


def first_heading_of_guide() -> str:
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:]
    raise AssertionError("docs/migration.md has no heading")


# The offscreen platform cannot raise a window (an open guide is raised when asked again).
@pytest.mark.qt_log_ignore("This plugin does not support raise", extend=True)
def test_the_help_menu_opens_the_migration_guide_in_the_app(qtbot: Any, window: MainWindow) -> None:
    action = help_action(window, "&Migration guide…")
    action.trigger()
    viewer = window.help_window
    assert isinstance(viewer, HelpViewer)
    qtbot.waitUntil(viewer.isVisible)
    heading = first_heading_of_guide()
    assert viewer.headings()[0] == heading
    assert viewer.windowTitle().startswith(heading)
    assert viewer.browser.document().toPlainText().startswith(heading)
    assert viewer.path == help_document("migration.md")
    # A second trigger brings the same window back instead of piling up copies.
    action.trigger()
    assert window.help_window is viewer
    viewer.close()


def test_a_missing_guide_is_said_in_a_message(
    qtbot: Any, window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(help_viewer, "docs_folders", lambda: [tmp_path / "docs"])
    help_action(window, "&Migration guide…").trigger()
    box = window.help_window
    assert isinstance(box, QtWidgets.QMessageBox)
    qtbot.waitUntil(box.isVisible)
    assert "migration guide (migration.md) is not installed" in box.text()
    assert str(tmp_path / "docs") in box.informativeText()
    box.done(0)


def test_a_bundled_copy_is_found_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = tmp_path / "docs" / "migration.md"
    bundled.parent.mkdir()
    bundled.write_text("# Bundled\n", encoding="utf-8")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert help_document("migration.md") == bundled
    monkeypatch.delattr(sys, "_MEIPASS")
    assert help_document("migration.md") == GUIDE.resolve()
    assert help_document("no-such-guide.md") is None


def test_links_between_guides_and_to_headings(qtbot: Any) -> None:
    viewer = HelpViewer(GUIDE.resolve())
    qtbot.addWidget(viewer)
    viewer.follow_link(QtCore.QUrl("#3-troubleshooting"))
    assert viewer.browser.textCursor().block().text() == "3. Troubleshooting"
    viewer.follow_link(QtCore.QUrl("no-such-guide.md"))
    assert "no-such-guide.md is not there" in viewer.status.text()
    assert viewer.path == GUIDE.resolve()
    viewer.follow_link(QtCore.QUrl("memory.md#settings"))
    assert viewer.path.name == "memory.md"
    assert viewer.headings()[0].startswith("Memory")
    assert viewer.browser.textCursor().block().text() == "Settings"


def test_every_heading_link_in_the_guide_reaches_a_heading(qtbot: Any) -> None:
    viewer = HelpViewer(GUIDE.resolve())
    qtbot.addWidget(viewer)
    anchors = set(re.findall(r"\]\(#([^)]+)\)", GUIDE.read_text(encoding="utf-8")))
    assert len(anchors) >= 5
    known = {heading_anchor(text) for text in viewer.headings()}
    assert anchors <= known, anchors - known
