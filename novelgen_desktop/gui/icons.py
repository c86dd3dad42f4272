"""The app's icon, from ``resources/icons`` (made by resources/make_icons.py).

Looked up beside the package (a source checkout or an editable install) and inside it (a
packaged build copies the folder there); when neither exists the icon is drawn, so a missing
file never stops the window from opening.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from novelgen_desktop.gui.qt import Qt, QtCore, QtGui

ICON_SIZES = (16, 32, 48, 128, 256)


def icon_folder() -> Path | None:
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "resources" / "icons", package.parent / "resources" / "icons"):
        if folder.is_dir():
            return folder
    return None


@cache
def app_icon() -> QtGui.QIcon:
    icon = QtGui.QIcon()
    folder = icon_folder()
    if folder is not None:
        for size in ICON_SIZES:
            path = folder / f"novelgen-{size}.png"
            if path.is_file():
                icon.addFile(str(path), QtCore.QSize(size, size))
    if icon.isNull():
        icon = QtGui.QIcon(_drawn_icon(64))
    return icon


def _drawn_icon(size: int) -> QtGui.QPixmap:
    pixmap = QtGui.QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(pixmap)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setBrush(QtGui.QColor("#3b5bdb"))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawRoundedRect(0, 0, size, size, size / 6, size / 6)
    painter.setPen(QtGui.QColor("white"))
    font = painter.font()
    font.setBold(True)
    font.setPixelSize(int(size * 0.6))
    painter.setFont(font)
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "N")
    painter.end()
    return pixmap


__all__ = ["app_icon", "icon_folder"]
