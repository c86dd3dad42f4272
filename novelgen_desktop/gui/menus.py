"""Menu actions made one way in every window."""

from __future__ import annotations

from collections.abc import Callable

from novelgen_desktop.gui.qt import QtGui, QtWidgets


def add_menu_action(
    menu: QtWidgets.QMenu, text: str, slot: Callable[[], object], shortcut: str = ""
) -> QtGui.QAction:
    """Add ``text`` to ``menu``, calling ``slot`` with no arguments (``triggered`` passes a
    ``checked`` flag that most slots do not take)."""
    action = menu.addAction(text)
    if shortcut:
        action.setShortcut(QtGui.QKeySequence(shortcut))
    action.triggered.connect(lambda _checked=False: slot())
    return action
