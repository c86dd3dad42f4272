"""The desktop control panel (PySide6): a view over :mod:`novelgen_desktop.desktop`.

Only this package imports Qt, and only through :mod:`novelgen_desktop.gui.qt`.
"""
