"""The guides in ``docs/`` read inside the app (Help menu), with no browser needed.

A guide is found by :func:`help_document`: in a PyInstaller bundle under ``sys._MEIPASS/docs``
(the spec ships the folder there), otherwise in the ``docs/`` folder of the source tree the
package runs from. :class:`HelpViewer` shows one with Qt's Markdown renderer; links to other
guides open in the same viewer, links to a heading of the guide scroll to it, web links go to
the system browser. A guide that is not there is said in a message box, never a blank window.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets

SOURCE_DOCS = Path(__file__).resolve().parents[2] / "docs"
_EXTERNAL_SCHEMES = frozenset({"http", "https", "mailto"})


def docs_folders() -> list[Path]:
    """Where guides may be, most specific first."""
    folders = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        folders.append(Path(bundle) / "docs")
    folders.append(SOURCE_DOCS)
    return folders


def help_document(name: str) -> Path | None:
    """The file of guide ``name`` (``"migration.md"``), or None when no folder has it."""
    for folder in docs_folders():
        path = folder / name
        if path.is_file():
            return path
    return None


def heading_anchor(text: str) -> str:
    """The anchor GitHub gives a heading: ``1. From one tab`` → ``1-from-one-tab``."""
    kept = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return kept.replace(" ", "-")


def first_heading(markdown: str) -> str | None:
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


class HelpViewer(QtWidgets.QWidget):
    """One guide in a window of its own; follows links between guides."""

    def __init__(self, path: Path, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.browser = QtWidgets.QTextBrowser()
        self.browser.setOpenLinks(False)
        self.browser.anchorClicked.connect(self.follow_link)
        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.close)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(close)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addLayout(bottom)
        self.resize(900, 760)
        self.path = path
        self.load(path)

    def load(self, path: Path, fragment: str = "") -> bool:
        """Show the guide at ``path``; False (said in the status line) if it cannot be read."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.status.setText(f"Cannot open {path.name}: {exc}")
            return False
        self.path = path
        self.browser.document().setBaseUrl(QtCore.QUrl.fromLocalFile(str(path)))
        self.browser.setMarkdown(text)
        title = first_heading(text) or path.name
        self.setWindowTitle(f"{title} — NovelGen Desktop")
        self.status.setText(str(path))
        if fragment:
            self.scroll_to_heading(fragment)
        else:
            self.browser.moveCursor(QtGui.QTextCursor.MoveOperation.Start)
        return True

    def headings(self) -> list[str]:
        block = self.browser.document().begin()
        found = []
        while block.isValid():
            if block.blockFormat().headingLevel() > 0:
                found.append(block.text())
            block = block.next()
        return found

    def scroll_to_heading(self, anchor: str) -> bool:
        block = self.browser.document().begin()
        while block.isValid():
            if block.blockFormat().headingLevel() > 0 and heading_anchor(block.text()) == anchor:
                cursor = QtGui.QTextCursor(block)
                self.browser.setTextCursor(cursor)
                self.browser.verticalScrollBar().setValue(
                    int(self.browser.document().documentLayout().blockBoundingRect(block).top())
                )
                return True
            block = block.next()
        self.status.setText(f"No heading '{anchor}' in {self.path.name}")
        return False

    def follow_link(self, url: QtCore.QUrl) -> None:
        if url.scheme() in _EXTERNAL_SCHEMES:
            QtGui.QDesktopServices.openUrl(url)
            return
        if not url.path():  # a heading of this guide
            self.scroll_to_heading(url.fragment())
            return
        if url.isLocalFile():
            target = Path(url.toLocalFile())
        else:  # relative to this guide, as on GitHub
            target = (self.path.parent / url.path()).resolve()
        if not target.exists():
            self.status.setText(f"{url.path()} is not there (looked for {target})")
        elif target.suffix.lower() in (".md", ".markdown"):
            self.load(target, url.fragment())
        else:  # an example file or a folder: the system's own viewer
            QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(target)))


def open_help_document(
    parent: QtWidgets.QWidget, name: str, what: str, *, reuse: HelpViewer | None = None
) -> HelpViewer | QtWidgets.QMessageBox:
    """Show guide ``name`` in a viewer (``reuse``, when it is still open), or say clearly
    that it is missing (``what``: how the user knows it, e.g. "The migration guide").
    Returns what was shown."""
    path = help_document(name)
    if path is None:
        box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Warning,
            "NovelGen Desktop",
            f"{what} ({name}) is not installed with this copy of NovelGen Desktop.",
            QtWidgets.QMessageBox.StandardButton.Ok,
            parent,
        )
        looked = "\n".join(str(folder) for folder in docs_folders())
        box.setInformativeText(
            f"It was looked for in:\n{looked}\n\nThe same guide is in the docs folder of the "
            "project's source code."
        )
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        return box
    if reuse is not None and reuse.isVisible():
        reuse.load(path)
        reuse.raise_()
        reuse.activateWindow()
        return reuse
    viewer = HelpViewer(path, parent)
    viewer.show()
    return viewer
