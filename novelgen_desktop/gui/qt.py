"""The one module that imports the Qt binding (as qutebrowser does).

Everything in ``gui/`` imports Qt names from here, so the binding (PySide6, pinned in
pyproject because 6.12.0 aborts on Python 3.11) is chosen in one place, and qasync and
pyqtgraph pick the same one.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_API", "pyside6")  # qasync and pyqtgraph: PySide6, not another binding

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

__all__ = ["Qt", "QtCore", "QtGui", "QtWidgets"]
