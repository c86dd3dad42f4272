"""The style bible editor: write the book's look, see every problem and the exact prompt.

A style bible (a TOML file, see :mod:`novelgen_desktop.style`) is what keeps panel 2,400
looking like panel 1, so the author has to see what it does before thousands of images are
paid for. The window has three parts:

* **the text** of the file, with line numbers. It is checked 300 ms after the author stops
  typing, off the UI thread (checking reads and hashes every reference image); every issue
  is listed as ``line: field: message``, its line is marked, and clicking the issue moves
  the cursor there. An error never touches the text: the last good check stays in the
  summary until the next one.
* **the summary** of the bible as it reads now: name, version, style, negatives, the
  characters, locations and props with their aliases and reference-image thumbnails, the
  chapter overrides. Clicking an entry goes to its definition.
* **the preview**: a panel of a script (from the import dialog, or any prompt file opened
  here) or a test description, composed exactly as a job will send it — the text, its
  length against ``max_prompt_chars``, the reference images attached, what was trimmed to
  fit, warnings, or why it cannot be composed.

Closing, opening another file or starting from the template with unsaved changes asks
first (Save / Discard / Cancel) without a nested event loop: the engine keeps running.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from novelgen_desktop.gui.background import LatestCall
from novelgen_desktop.gui.menus import add_menu_action
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.prompts.issues import ImportIssue, ImportResult
from novelgen_desktop.prompts.loader import load_prompt_files
from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.style.bible import (
    STYLE_FIELDS,
    Entity,
    EntityKind,
    ReferenceImage,
    StyleBible,
)
from novelgen_desktop.style.composer import (
    ComposedPrompt,
    ComposeError,
    Composer,
    PanelInput,
    panel_of,
)
from novelgen_desktop.style.loader import StyleBibleError, parse_style_bible

CHECK_DELAY_MS = 300
"""How long the text must rest before it is checked again."""
THUMBNAIL = 48
PREVIEW_THUMBNAIL = 72
UNTITLED = "untitled.toml"
ERROR_COLOUR = "#d93025"
WARNING_COLOUR = "#e37400"
ERROR_LINE_COLOUR = "#fce8e6"
FILE_FILTER = "Style bible (*.toml);;All files (*)"
SCRIPT_FILTER = (
    "Prompt files (*.script *.txt *.csv *.tsv *.json *.jsonl *.md *.markdown *.fountain);;"
    "All files (*)"
)

TEMPLATE = """\
# A style bible: the look of one book, written once and added to every panel's prompt.
# Each panel's prompt becomes: its description, then the sheets of who and what is in it,
# then the style below and what to avoid. Problems are listed below the text as you type.

[bible]
name = "My graphic novel"
version = "1"              # your own label; NovelGen adds a hash of the content
# max_prompt_chars = 4000  # a composed prompt never exceeds this (cuts are reported)
# max_references = 4       # reference images attached to one panel at most

[style]
medium = "ink and watercolour graphic-novel panel"
palette = "muted slate blues and greys, one warm amber accent"
line_work = "confident brush ink, clean outlines"
lighting = "soft overcast daylight"
aspect = "square 1:1 image"
negative = ["text or lettering", "speech balloons", "watermarks"]

# One table per character. A panel picks the sheet up when its text names the character
# (or an alias), when it says @Name, or when the script casts the character as a speaker.
[characters.Maren]
aliases = ["Mar"]
description = "a tall woman of 40 in a red wool coat, grey braid, weathered face"
short = "tall woman, red coat, grey braid"
# references = ["refs/maren.png"]  # PNG, JPEG or WebP, relative to this file

[locations."Lamp room"]
aliases = ["lantern room"]
description = "the glass lantern room at the top of the lighthouse, brass lamp in the middle"

[props."Storm lantern"]
description = "a dented tin storm lantern with one cracked pane"

# What changes in one chapter (its label in the script): style fields, a default location,
# another sheet for someone.
[chapters.2]
location = "Lamp room"

[chapters.2.characters.Maren]
description = "Maren in her red coat, her left hand bandaged"
"""


# --- text helpers --------------------------------------------------------------------------


def issue_text(issue: ImportIssue) -> str:
    """``line: field: message`` (``line:column`` when known, ``—`` without a line)."""
    where = "—" if issue.line is None else str(issue.line)
    if issue.line is not None and issue.column is not None:
        where += f":{issue.column}"
    parts = [where]
    if issue.field:
        parts.append(issue.field)
    parts.append(issue.message)
    return ": ".join(parts)


def panel_label(spec: PromptSpec, number: int) -> str:
    """``ch 1 · p 2 · panel 3 — the panel's text…`` (``#7`` for a plain list)."""
    parts = []
    if spec.chapter is not None:
        parts.append(f"ch {spec.chapter}")
    if spec.page is not None:
        parts.append(f"p {spec.page}")
    if spec.panel is not None:
        parts.append(f"panel {spec.panel}")
    where = " · ".join(parts) or f"#{number}"
    text = " ".join(spec.text.split())
    return f"{where} — {text[:80]}{'…' if len(text) > 80 else ''}"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 2**20:
        return f"{size / 1024:.0f} KiB"
    return f"{size / 2**20:.1f} MiB"


_THUMBNAILS: dict[tuple[str, int], QtGui.QIcon] = {}


def reference_icon(ref: ReferenceImage, size: int = THUMBNAIL) -> QtGui.QIcon:
    """A thumbnail of a reference image, read once per image (by its hash) and size."""
    key = (ref.sha256, size)
    icon = _THUMBNAILS.get(key)
    if icon is None:
        reader = QtGui.QImageReader(ref.path)
        reader.setAutoTransform(True)
        if ref.width and ref.height:
            scale = size / max(ref.width, ref.height)
            reader.setScaledSize(
                QtCore.QSize(max(1, round(ref.width * scale)), max(1, round(ref.height * scale)))
            )
        image = reader.read()
        icon = QtGui.QIcon(QtGui.QPixmap.fromImage(image)) if not image.isNull() else QtGui.QIcon()
        _THUMBNAILS[key] = icon
    return icon


def reference_text(ref: ReferenceImage) -> str:
    return f"{ref.name} · {ref.width}×{ref.height} · {_size(ref.size)}"


# --- the text editor -----------------------------------------------------------------------


class _LineNumbers(QtWidgets.QWidget):
    def __init__(self, editor: BibleTextEdit) -> None:
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 - Qt API
        return QtCore.QSize(self.editor.line_number_width(), 0)

    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802 - Qt API
        self.editor.paint_line_numbers(event)


class BibleTextEdit(QtWidgets.QPlainTextEdit):
    """A plain-text editor with line numbers whose error lines can be marked."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
        self.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabStopDistance(self.fontMetrics().horizontalAdvance(" ") * 4)
        self._numbers = _LineNumbers(self)
        self._marked: set[int] = set()
        self.blockCountChanged.connect(self._update_margin)
        self.updateRequest.connect(self._update_numbers)
        self._update_margin()

    @property
    def marked_lines(self) -> set[int]:
        return set(self._marked)

    def line_number_width(self) -> int:
        digits = max(2, len(str(max(1, self.blockCount()))))
        return 12 + self.fontMetrics().horizontalAdvance("9") * digits

    def _update_margin(self, _count: int = 0) -> None:
        self.setViewportMargins(self.line_number_width(), 0, 0, 0)

    def _update_numbers(self, rect: QtCore.QRect, dy: int) -> None:
        if dy:
            self._numbers.scroll(0, dy)
        else:
            self._numbers.update(0, rect.y(), self._numbers.width(), rect.height())
        if rect.contains(self.viewport().rect()):
            self._update_margin()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        area = self.contentsRect()
        self._numbers.setGeometry(
            QtCore.QRect(area.left(), area.top(), self.line_number_width(), area.height())
        )

    def paint_line_numbers(self, event: QtGui.QPaintEvent) -> None:
        painter = QtGui.QPainter(self._numbers)
        palette = self.palette()
        painter.fillRect(event.rect(), palette.color(QtGui.QPalette.ColorRole.AlternateBase))
        normal = palette.color(QtGui.QPalette.ColorRole.PlaceholderText)
        error = QtGui.QColor(ERROR_COLOUR)
        block = self.firstVisibleBlock()
        number = block.blockNumber()
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        bottom = top + round(self.blockBoundingRect(block).height())
        height = self.fontMetrics().height()
        width = self._numbers.width() - 5
        while block.isValid() and top <= event.rect().bottom():
            if block.isVisible() and bottom >= event.rect().top():
                line = number + 1
                painter.setPen(error if line in self._marked else normal)
                painter.drawText(0, top, width, height, Qt.AlignmentFlag.AlignRight, str(line))
            block = block.next()
            top = bottom
            bottom = top + round(self.blockBoundingRect(block).height())
            number += 1
        painter.end()

    def mark_lines(self, lines: set[int]) -> None:
        """Tint ``lines`` (1-based) and their numbers: the lines the issues are about."""
        self._marked = set(lines)
        selections = []
        document = self.document()
        for line in sorted(lines):
            block = document.findBlockByNumber(line - 1)
            if not block.isValid():
                continue
            selection = QtWidgets.QTextEdit.ExtraSelection()
            fmt = QtGui.QTextCharFormat()
            fmt.setBackground(QtGui.QColor(ERROR_LINE_COLOUR))
            fmt.setProperty(QtGui.QTextFormat.Property.FullWidthSelection, True)
            selection.format = fmt
            selection.cursor = QtGui.QTextCursor(block)
            selections.append(selection)
        self.setExtraSelections(selections)
        self._numbers.update()

    def go_to(self, line: int, column: int | None = None) -> None:
        """Put the cursor at ``line`` (1-based; and ``column``), show it, take the focus."""
        document = self.document()
        block = document.findBlockByNumber(max(0, line - 1))
        if not block.isValid():
            block = document.lastBlock()
        cursor = QtGui.QTextCursor(block)
        if column is not None and column > 1:
            cursor.movePosition(
                QtGui.QTextCursor.MoveOperation.Right,
                QtGui.QTextCursor.MoveMode.MoveAnchor,
                min(column - 1, max(0, block.length() - 1)),
            )
        self.setTextCursor(cursor)
        self.centerCursor()
        self.setFocus(Qt.FocusReason.OtherFocusReason)

    def cursor_line(self) -> int:
        return self.textCursor().blockNumber() + 1


# --- checking --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BibleCheck:
    """One check of the text: the bible it reads as, or every issue that stops it."""

    generation: int
    bible: StyleBible | None
    issues: tuple[ImportIssue, ...]


def check_bible(text: str, file: str, base_dir: Path, generation: int = 0) -> BibleCheck:
    """Parse ``text`` as the bible ``file`` (reference images relative to ``base_dir``)."""
    try:
        bible = parse_style_bible(text, file=file, base_dir=base_dir)
    except StyleBibleError as exc:
        return BibleCheck(generation, None, tuple(exc.issues))
    return BibleCheck(generation, bible, ())


_OPEN: dict[int, StyleEditor] = {}
"""Every editor window that exists, so that quitting can ask about unsaved text and an
editor whose opener closed (the import dialog) stays alive."""


def open_editors() -> list[StyleEditor]:
    return list(_OPEN.values())


_ENTRY_LINE_ROLE = int(Qt.ItemDataRole.UserRole) + 1
_PANEL_ROLE = int(Qt.ItemDataRole.UserRole) + 2
_TEST_DESCRIPTION = "Test description (type it below)"


class StyleEditor(QtWidgets.QMainWindow):
    """Edit, check and try out one style bible file."""

    saved = QtCore.Signal(str)  # the file was written: its path
    validated = QtCore.Signal()  # a check of the text was applied (issues, summary, preview)
    panels_loaded = QtCore.Signal()  # a script opened for the preview has been read

    def __init__(
        self,
        parent: QtWidgets.QWidget | None = None,
        *,
        path: str | Path | None = None,
        panels: Sequence[PromptSpec] = (),
        base_dir: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window)
        self.path: Path | None = None
        self.bible: StyleBible | None = None
        self.last_good: StyleBible | None = None  # the bible as the text last read cleanly
        self.issues: list[ImportIssue] = []
        self.composed: ComposedPrompt | None = None
        self.compose_error: str | None = None
        self.panels: list[PromptSpec] = []
        self.panels_source = ""
        self.save_box: QtWidgets.QMessageBox | None = None  # the open Save/Discard question
        self._base_dir = base_dir or Path.cwd()
        self._generation = 0
        self._applied_generation = -1
        self._may_close = False
        self._composer: Composer | None = None
        self._showing_panel = False  # the description fields hold a panel's text

        self.checker: LatestCall[BibleCheck] = LatestCall("style-check", self)
        self.loader: LatestCall[ImportResult] = LatestCall("style-script", self)
        self._debounce = QtCore.QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(CHECK_DELAY_MS)
        self._debounce.timeout.connect(self.check_later)

        self._build()
        self._build_actions()
        _OPEN[id(self)] = self
        self.destroyed.connect(functools.partial(_OPEN.pop, id(self), None))
        self.resize(1280, 820)

        self.set_panels(panels)
        if path is None or not self.load_file(path):  # unreadable: said why, starts afresh
            self._set_text(TEMPLATE, None)

    # --- building --------------------------------------------------------------------------

    def _build(self) -> None:
        self.editor = BibleTextEdit(self)
        self.editor.textChanged.connect(self._text_changed)
        self.editor.cursorPositionChanged.connect(self._show_position)
        self.editor.document().modificationChanged.connect(self.setWindowModified)

        self.issue_list = QtWidgets.QListWidget(self)
        self.issue_list.setWordWrap(True)
        self.issue_list.itemActivated.connect(self._issue_chosen)
        self.issue_list.itemClicked.connect(self._issue_chosen)
        self.issue_title = QtWidgets.QLabel("Problems")
        issues_box = QtWidgets.QWidget(self)
        issues_layout = QtWidgets.QVBoxLayout(issues_box)
        issues_layout.setContentsMargins(0, 0, 0, 0)
        issues_layout.addWidget(self.issue_title)
        issues_layout.addWidget(self.issue_list)

        left = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        left.addWidget(self.editor)
        left.addWidget(issues_box)
        left.setStretchFactor(0, 4)
        left.setStretchFactor(1, 1)
        left.setSizes([640, 130])

        self.summary = QtWidgets.QTreeWidget(self)
        self.summary.setHeaderLabels(["Entry", "Details"])
        self.summary.setColumnWidth(0, 200)
        self.summary.setIconSize(QtCore.QSize(THUMBNAIL, THUMBNAIL))
        self.summary.setWordWrap(True)
        self.summary.itemActivated.connect(self._entry_chosen)
        self.summary.itemDoubleClicked.connect(self._entry_chosen)

        self.side = QtWidgets.QTabWidget(self)
        self.side.addTab(self.summary, "Summary")
        self.side.addTab(self._build_preview(), "Preview")

        main = QtWidgets.QSplitter(Qt.Orientation.Horizontal, self)
        main.addWidget(left)
        main.addWidget(self.side)
        main.setStretchFactor(0, 1)
        main.setStretchFactor(1, 1)
        main.setSizes([620, 660])
        self.setCentralWidget(main)

        self.check_status = QtWidgets.QLabel(self)
        self.position_label = QtWidgets.QLabel(self)
        self.statusBar().addWidget(self.check_status, 1)
        self.statusBar().addPermanentWidget(self.position_label)

    def _build_preview(self) -> QtWidgets.QWidget:
        page = QtWidgets.QWidget(self)
        self.panel_combo = QtWidgets.QComboBox(page)
        self.panel_combo.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.panel_combo.setMinimumContentsLength(30)
        view = self.panel_combo.view()
        if isinstance(view, QtWidgets.QListView):
            view.setUniformItemSizes(True)  # a script of 10,000 panels opens at once
        self.panel_combo.currentIndexChanged.connect(self._panel_changed)
        self.open_script_button = QtWidgets.QPushButton("Open script…", page)
        self.open_script_button.setToolTip("Read a prompt file to preview its panels")
        self.open_script_button.clicked.connect(self.choose_script)
        picker = QtWidgets.QHBoxLayout()
        picker.addWidget(self.panel_combo, 1)
        picker.addWidget(self.open_script_button)

        self.panels_status = QtWidgets.QLabel(page)
        self.panels_status.setWordWrap(True)
        self.description_edit = QtWidgets.QPlainTextEdit(page)
        self.description_edit.setPlaceholderText(
            "A panel description, e.g. “Maren climbs to the lamp room with @Tobias.”"
        )
        self.description_edit.setMaximumHeight(90)
        self.description_edit.textChanged.connect(self.update_preview)
        self.chapter_edit = QtWidgets.QLineEdit(page)
        self.chapter_edit.setPlaceholderText("chapter label (its overrides apply), e.g. 2")
        self.chapter_edit.textChanged.connect(self.update_preview)

        self.length_bar = QtWidgets.QProgressBar(page)
        self.length_bar.setTextVisible(True)
        self.preview_facts = QtWidgets.QLabel(page)
        self.preview_facts.setWordWrap(True)
        self.preview_facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.preview_error = QtWidgets.QLabel(page)
        self.preview_error.setWordWrap(True)
        self.preview_error.setStyleSheet(f"color: {ERROR_COLOUR};")
        self.preview_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.preview_error.hide()
        self.prompt_view = QtWidgets.QPlainTextEdit(page)
        self.prompt_view.setReadOnly(True)
        self.prompt_view.setFont(
            QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        )
        self.prompt_view.setPlaceholderText("The composed prompt appears here.")
        self.references_list = QtWidgets.QListWidget(page)
        self.references_list.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.references_list.setIconSize(QtCore.QSize(PREVIEW_THUMBNAIL, PREVIEW_THUMBNAIL))
        self.references_list.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.references_list.setMovement(QtWidgets.QListView.Movement.Static)
        self.references_list.setFixedHeight(PREVIEW_THUMBNAIL + 40)
        self.references_title = QtWidgets.QLabel("Reference images attached", page)
        self.trimmed_label = QtWidgets.QLabel(page)
        self.trimmed_label.setWordWrap(True)
        self.warnings_label = QtWidgets.QLabel(page)
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setStyleSheet(f"color: {WARNING_COLOUR};")

        form = QtWidgets.QFormLayout()
        form.addRow("Panel", picker)
        form.addRow("", self.panels_status)
        form.addRow("Description", self.description_edit)
        form.addRow("Chapter", self.chapter_edit)
        layout = QtWidgets.QVBoxLayout(page)
        layout.addLayout(form)
        layout.addWidget(self.length_bar)
        layout.addWidget(self.preview_facts)
        layout.addWidget(self.preview_error)
        layout.addWidget(self.prompt_view, 1)
        layout.addWidget(self.references_title)
        layout.addWidget(self.references_list)
        layout.addWidget(self.trimmed_label)
        layout.addWidget(self.warnings_label)
        return page

    def _build_actions(self) -> None:
        menu = self.menuBar().addMenu("&File")
        self.new_action = add_menu_action(
            menu, "&New from template", self.new_from_template, "Ctrl+N"
        )
        self.open_action = add_menu_action(menu, "&Open…", self.choose_file, "Ctrl+O")
        self.save_action = add_menu_action(menu, "&Save", self.save, "Ctrl+S")
        self.save_as_action = add_menu_action(menu, "Save &as…", self.save_as, "Ctrl+Shift+S")
        menu.addSeparator()
        add_menu_action(menu, "Open &script for the preview…", self.choose_script)
        menu.addSeparator()
        add_menu_action(menu, "&Close", self.close, "Ctrl+W")
        toolbar = self.addToolBar("File")
        toolbar.setObjectName("style-editor-file")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        toolbar.addActions([self.new_action, self.open_action, self.save_action])
        toolbar.addAction(self.save_as_action)

    # --- the file ------------------------------------------------------------------------

    @property
    def file_label(self) -> str:
        """How issues name the file: its path, or ``untitled.toml``."""
        return str(self.path) if self.path is not None else UNTITLED

    @property
    def modified(self) -> bool:
        return self.editor.document().isModified()

    def text(self) -> str:
        return self.editor.toPlainText()

    def _set_text(self, text: str, path: Path | None) -> None:
        self.path = path
        self.last_good = None  # another file: its own summary
        if path is not None:
            self._base_dir = path.resolve().parent
        self._update_title()
        self.editor.setPlainText(text)
        self.editor.document().setModified(False)
        self.check_soon(0)

    def _update_title(self) -> None:
        name = self.path.name if self.path is not None else UNTITLED
        self.setWindowTitle(f"{name}[*] — Style bible")

    def load_file(self, path: str | Path) -> bool:
        """Show the file ``path`` (its text is checked at once). False, with the reason in a
        message, when it cannot be read; the text shown before stays."""
        target = Path(path).expanduser()
        try:
            raw = target.read_bytes()
            text = raw.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = (
                "it is not UTF-8 text"
                if isinstance(exc, UnicodeDecodeError)
                else exc.strerror or str(exc)
            )
            self._warn(f"Could not open {target}: {reason}.")
            return False
        self._set_text(text, target)
        return True

    def new_from_template(self) -> None:
        """Start a new, untitled bible from the commented template (asks about unsaved
        changes first)."""
        self.keep_changes_then(lambda: self._set_text(TEMPLATE, None))

    def choose_file(self) -> None:
        def choose() -> None:
            start = str(self.path.parent if self.path is not None else self._base_dir)
            name, _filter = QtWidgets.QFileDialog.getOpenFileName(
                self, "Open style bible", start, FILE_FILTER
            )
            if name:
                self.load_file(name)

        self.keep_changes_then(choose)

    def save(self) -> bool:
        """Write the text to its file (asks for a name when it has none). The text is saved
        as it is, errors and all: nothing the author typed is ever thrown away."""
        if self.path is None:
            return self.save_as()
        return self.save_to(self.path)

    def save_as(self, path: str | Path | None = None) -> bool:
        if path is None:
            start = str(self.path or self._base_dir / "style-bible.toml")
            name, _filter = QtWidgets.QFileDialog.getSaveFileName(
                self, "Save style bible", start, FILE_FILTER
            )
            if not name:
                return False
            path = Path(name) if Path(name).suffix else Path(name).with_suffix(".toml")
        return self.save_to(Path(path))

    def save_to(self, path: Path) -> bool:
        """Write the text to ``path`` atomically (a temporary file renamed over it)."""
        target = path.expanduser()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".part", dir=target.parent
            )
            try:
                with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
                    out.write(self.text())
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            self._warn(f"Could not save {target}: {exc.strerror or exc}. The text is kept here.")
            return False
        moved = self.path is None or self.path.resolve() != target.resolve()
        self.path = target
        self._base_dir = target.resolve().parent
        self.editor.document().setModified(False)
        self._update_title()
        if moved:
            self.validate_now()  # reference paths are relative to the file
        errors = len(self.issues)
        if errors:
            self.statusBar().showMessage(
                f"Saved {target} with {_plural(errors, 'error')}: a job cannot use it until "
                "they are fixed",
                10000,
            )
        else:
            self.statusBar().showMessage(f"Saved {target}", 5000)
        self.saved.emit(str(target))
        return True

    def _warn(self, message: str) -> None:
        box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Warning,
            "Style bible",
            message,
            QtWidgets.QMessageBox.StandardButton.Ok,
            self,
        )
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self.last_warning = box

    # --- unsaved changes -----------------------------------------------------------------

    def keep_changes_then(self, then: Callable[[], None]) -> None:
        """Run ``then`` now if nothing is unsaved; otherwise ask Save / Discard / Cancel
        first (a window-modal question: no nested event loop) and run it after Save or
        Discard. Cancel keeps everything as it is."""
        if not self.modified:
            then()
            return
        if self.save_box is not None and self.save_box.isVisible():
            return  # already asking
        box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Icon.Question,
            "Style bible",
            f"{self.path.name if self.path else UNTITLED} has unsaved changes.",
            QtWidgets.QMessageBox.StandardButton.Save
            | QtWidgets.QMessageBox.StandardButton.Discard
            | QtWidgets.QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setInformativeText("Save them before going on?")
        box.setDefaultButton(QtWidgets.QMessageBox.StandardButton.Save)
        box.setWindowModality(Qt.WindowModality.WindowModal)

        def answered(button: int) -> None:
            self.save_box = None
            if button == QtWidgets.QMessageBox.StandardButton.Save:
                if self.save():
                    then()
            elif button == QtWidgets.QMessageBox.StandardButton.Discard:
                then()

        box.finished.connect(answered)
        self.save_box = box
        box.open()

    def close_when_saved(self, then: Callable[[], None] | None = None) -> None:
        """Close the window, asking about unsaved changes first; ``then`` runs once it is
        closed (quitting asks every editor in turn this way)."""

        def close() -> None:
            self._may_close = True
            self.close()
            if then is not None:
                then()

        self.keep_changes_then(close)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        if self._may_close or not self.modified:
            self._may_close = False
            self._debounce.stop()
            event.accept()
            return
        event.ignore()
        self.close_when_saved()

    # --- checking ------------------------------------------------------------------------

    def _text_changed(self) -> None:
        self._generation += 1
        self.check_soon()

    def check_soon(self, delay_ms: int = CHECK_DELAY_MS) -> None:
        """Check the text once it has rested ``delay_ms``."""
        self._debounce.start(delay_ms)
        self._show_checking()

    @property
    def checking(self) -> bool:
        """A check of the current text is due or running."""
        return self._debounce.isActive() or self._applied_generation != self._generation

    def check_later(self) -> None:
        """Check the text as it is now, off the UI thread."""
        text, file, base, generation = (
            self.text(),
            self.file_label,
            self._base_dir,
            self._generation,
        )
        self.checker.submit(lambda: check_bible(text, file, base, generation), self.apply_check)

    def validate_now(self) -> BibleCheck:
        """Check the text now, on this thread (saving, tests)."""
        self._debounce.stop()
        check = check_bible(self.text(), self.file_label, self._base_dir, self._generation)
        self.apply_check(check)
        return check

    def wait_checked(self, timeout: float = 30.0) -> None:
        """Block until the current text is checked (tests)."""
        if self._debounce.isActive():
            self._debounce.stop()
            self.check_later()
        self.checker.wait(timeout)

    def apply_check(self, check: BibleCheck) -> None:
        if check.generation != self._generation:
            return  # the text changed since: its own check follows
        self._applied_generation = check.generation
        self.issues = list(check.issues)
        if check.bible is not None:
            self.bible = self.last_good = check.bible
            self._composer = Composer(check.bible)
        else:
            # The last good bible stays in the summary (marked as such) but out of the
            # preview: it would show prompts this text does not make.
            self.bible = None
            self._composer = None
        self._fill_issues()
        self._fill_summary()
        self.update_preview()
        self._show_check_status()
        self.validated.emit()

    def _show_checking(self) -> None:
        self.check_status.setText("Checking…")
        self.check_status.setStyleSheet("")

    def _show_check_status(self) -> None:
        if self.bible is not None:
            entries = len(self.bible.entities)
            self.check_status.setText(
                f"Reads cleanly: {self.bible.name}, version {self.bible.version} · "
                f"{_plural(entries, 'entry', 'entries')}"
            )
            self.check_status.setStyleSheet("color: #188038;")
        else:
            self.check_status.setText(
                f"{_plural(len(self.issues), 'error')}: a job cannot use this bible yet"
            )
            self.check_status.setStyleSheet(f"color: {ERROR_COLOUR};")

    def _fill_issues(self) -> None:
        self.issue_list.clear()
        for issue in self.issues:
            item = QtWidgets.QListWidgetItem(issue_text(issue))
            item.setToolTip(str(issue))
            item.setData(Qt.ItemDataRole.UserRole, (issue.line, issue.column))
            item.setForeground(QtGui.QBrush(QtGui.QColor(ERROR_COLOUR)))
            self.issue_list.addItem(item)
        count = len(self.issues)
        self.issue_title.setText(f"Problems ({count})" if count else "Problems: none")
        self.editor.mark_lines({i.line for i in self.issues if i.line is not None})

    def issue_lines(self) -> list[str]:
        """The issues as listed (``line: field: message``)."""
        return [self.issue_list.item(row).text() for row in range(self.issue_list.count())]

    def _issue_chosen(self, item: QtWidgets.QListWidgetItem) -> None:
        line, column = item.data(Qt.ItemDataRole.UserRole)
        if line is not None:
            self.editor.go_to(line, column)

    def _show_position(self) -> None:
        cursor = self.editor.textCursor()
        self.position_label.setText(
            f"line {cursor.blockNumber() + 1}, column {cursor.positionInBlock() + 1}"
        )

    # --- the summary ---------------------------------------------------------------------

    def _fill_summary(self) -> None:
        tree = self.summary
        tree.clear()
        bible = self.bible or self.last_good
        if self.bible is None:
            details = f"{_plural(len(self.issues), 'error')}: see Problems"
            if bible is not None:
                details += "; below, the bible as it last read cleanly"
            item = QtWidgets.QTreeWidgetItem(["Not readable", details])
            item.setForeground(0, QtGui.QBrush(QtGui.QColor(ERROR_COLOUR)))
            item.setForeground(1, QtGui.QBrush(QtGui.QColor(ERROR_COLOUR)))
            tree.addTopLevelItem(item)
        if bible is None:
            return

        def row(
            parent: QtWidgets.QTreeWidgetItem | None, label: str, details: str = ""
        ) -> QtWidgets.QTreeWidgetItem:
            item = QtWidgets.QTreeWidgetItem([label, details])
            item.setToolTip(1, details)
            if parent is None:
                tree.addTopLevelItem(item)
            else:
                parent.addChild(item)
            return item

        row(None, "Name", bible.name)
        version = row(None, "Version", bible.version)
        version.setToolTip(
            1,
            "Recorded with every image: the author's label, then a hash of everything that "
            "changes a prompt or a reference image",
        )
        row(
            None,
            "Limits",
            f"{bible.max_prompt_chars:,} characters a prompt · "
            f"{_plural(bible.max_references, 'reference image')} a panel",
        )
        style = row(None, "Style", f"{_plural(len(bible.style), 'field')}")
        for key in STYLE_FIELDS:
            if key in bible.style:
                row(style, key.replace("_", " "), bible.style[key])
        if bible.negative:
            row(style, "avoid", ", ".join(bible.negative))
        style.setExpanded(True)
        for kind in EntityKind:
            entries = list(bible.by_kind(kind))
            if not entries:
                continue
            group = row(None, kind.table.capitalize(), f"{len(entries):,}")
            for entity in entries:
                self._entity_item(group, entity)
            group.setExpanded(True)
        if bible.chapters:
            chapters = row(None, "Chapter overrides", f"{len(bible.chapters):,}")
            for label, override in bible.chapters.items():
                changes = [*override.style]
                if override.negative:
                    changes.append("avoid " + ", ".join(override.negative))
                if override.location:
                    changes.append(f"setting {override.location}")
                changes.extend(f"{name}'s sheet" for name in override.entities)
                item = row(chapters, f"chapter {label}", "; ".join(changes))
                item.setData(0, _ENTRY_LINE_ROLE, override.line)
            chapters.setExpanded(True)

    def _entity_item(self, group: QtWidgets.QTreeWidgetItem, entity: Entity) -> None:
        details = entity.description
        if entity.aliases:
            details = f"aka {', '.join(entity.aliases)} · {details}"
        item = QtWidgets.QTreeWidgetItem([entity.name, details])
        tip = [entity.description]
        if entity.short:
            tip.append(f"short: {entity.short}")
        if entity.link.value != "auto":
            tip.append("linked by @mention only")
        item.setToolTip(1, "\n".join(tip))
        item.setData(0, _ENTRY_LINE_ROLE, entity.line)
        if entity.references:
            item.setIcon(0, reference_icon(entity.references[0]))
        for ref in entity.references:
            child = QtWidgets.QTreeWidgetItem(["", reference_text(ref)])
            child.setIcon(0, reference_icon(ref))
            child.setToolTip(1, ref.path)
            child.setData(0, _ENTRY_LINE_ROLE, entity.line)
            item.addChild(child)
        group.addChild(item)

    def summary_lines(self) -> list[str]:
        """The summary as ``label: details`` lines, indented by level (tests)."""
        lines: list[str] = []

        def walk(item: QtWidgets.QTreeWidgetItem, depth: int) -> None:
            lines.append("  " * depth + f"{item.text(0)}: {item.text(1)}")
            for index in range(item.childCount()):
                child = item.child(index)
                if child is not None:
                    walk(child, depth + 1)

        for index in range(self.summary.topLevelItemCount()):
            top = self.summary.topLevelItem(index)
            if top is not None:
                walk(top, 0)
        return lines

    def _entry_chosen(self, item: QtWidgets.QTreeWidgetItem, _column: int = 0) -> None:
        line = item.data(0, _ENTRY_LINE_ROLE)
        if isinstance(line, int):
            self.editor.go_to(line)

    # --- the preview ---------------------------------------------------------------------

    def set_panels(self, specs: Sequence[PromptSpec], source: str = "") -> None:
        """Offer ``specs`` (a script's panels) in the preview's panel list."""
        self.panels = list(specs)
        self.panels_source = source
        combo = self.panel_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(_TEST_DESCRIPTION, None)
        combo.addItems([panel_label(spec, n) for n, spec in enumerate(self.panels, start=1)])
        for index in range(1, combo.count()):
            combo.setItemData(index, index - 1, _PANEL_ROLE)
            combo.setItemData(
                index, str(self.panels[index - 1].source), Qt.ItemDataRole.ToolTipRole
            )
        combo.setCurrentIndex(1 if self.panels else 0)
        combo.blockSignals(False)
        if self.panels:
            where = f" from {source}" if source else ""
            self.panels_status.setText(f"{_plural(len(self.panels), 'panel')}{where}")
        else:
            self.panels_status.setText("Open a script to preview its panels, or type below.")
        self._panel_changed()

    def select_panel(self, index: int | None) -> None:
        """Preview panel ``index`` of :attr:`panels` (None: the test description)."""
        self.panel_combo.setCurrentIndex(0 if index is None else index + 1)

    def current_panel(self) -> PromptSpec | None:
        index = self.panel_combo.currentData(_PANEL_ROLE)
        return self.panels[index] if isinstance(index, int) else None

    def set_test_description(self, text: str, chapter: str = "") -> None:
        """Preview a description typed by the author (as if in the fields)."""
        self.select_panel(None)
        self.chapter_edit.setText(chapter)
        self.description_edit.setPlainText(text)

    def _panel_changed(self, _index: int = 0) -> None:
        spec = self.current_panel()
        testing = spec is None
        for edit in (self.description_edit, self.chapter_edit):
            edit.blockSignals(True)
        if spec is not None:
            self.description_edit.setPlainText(spec.text)
            self.chapter_edit.setText(spec.chapter or "")
        elif self._showing_panel:
            self.description_edit.clear()
            self.chapter_edit.clear()
        self._showing_panel = not testing
        self.description_edit.setReadOnly(not testing)
        self.chapter_edit.setReadOnly(not testing)
        for edit in (self.description_edit, self.chapter_edit):
            edit.blockSignals(False)
        self.update_preview()

    def panel_input(self) -> PanelInput | None:
        """What the preview composes: the chosen panel exactly as a job composes it, or the
        test description with its chapter."""
        spec = self.current_panel()
        if spec is not None:
            return panel_of(spec)
        text = self.description_edit.toPlainText()
        if not text.strip():
            return None
        return PanelInput(text=text, chapter=self.chapter_edit.text().strip() or None)

    def update_preview(self) -> None:
        """Compose the chosen panel with the bible as it reads now."""
        self.composed = None
        self.compose_error = None
        panel = self.panel_input()
        composer, bible = self._composer, self.bible
        if bible is None or composer is None:
            reason = (
                "Checking the bible…"
                if self.checking and not self.issues
                else f"The bible has {_plural(len(self.issues), 'error')} (see Problems): no "
                "prompt can be composed until it reads cleanly."
            )
            self._show_preview(None, reason, error=bool(self.issues))
            return
        if panel is None:
            self._show_preview(None, "Type a panel description or pick a panel.", error=False)
            return
        try:
            composed = composer.compose(panel)
        except ComposeError as exc:
            spec = self.current_panel()
            where = f"{spec.source}: " if spec is not None else ""
            self.compose_error = f"{where}{exc}"
            self._show_preview(None, f"Cannot compose this panel: {self.compose_error}", error=True)
            return
        self.composed = composed
        self._show_preview(composed, "", error=False)

    def _show_preview(self, composed: ComposedPrompt | None, message: str, *, error: bool) -> None:
        bible = self.bible
        self.references_list.clear()
        if composed is None or bible is None:
            self.prompt_view.clear()
            self.length_bar.setRange(0, 1)
            self.length_bar.setValue(0)
            self.length_bar.setFormat("")
            self.preview_facts.setText("" if error else message)
            self.preview_error.setText(message if error else "")
            self.preview_error.setVisible(error and bool(message))
            self.references_title.setText("Reference images attached: none")
            self.trimmed_label.clear()
            self.warnings_label.clear()
            return
        self.preview_error.hide()
        self.prompt_view.setPlainText(composed.text)
        limit = bible.max_prompt_chars
        self.length_bar.setRange(0, limit)
        self.length_bar.setValue(min(len(composed.text), limit))
        self.length_bar.setFormat(f"{len(composed.text):,} / {limit:,} characters")
        facts = [f"Composed with {composed.bible_name}, version {composed.bible_version}"]
        for label, names in (
            ("Characters", composed.characters),
            ("Setting", composed.locations),
            ("Props", composed.props),
        ):
            facts.append(f"{label}: {', '.join(names) if names else '—'}")
        self.preview_facts.setText("\n".join(facts))
        for ref in composed.references:
            item = QtWidgets.QListWidgetItem(reference_icon(ref, PREVIEW_THUMBNAIL), ref.name)
            item.setToolTip(f"{reference_text(ref)}\n{ref.path}")
            self.references_list.addItem(item)
        count = len(composed.references)
        self.references_title.setText(
            f"Reference images attached ({count} of at most {bible.max_references})"
            if count
            else "Reference images attached: none"
        )
        self.trimmed_label.setText(
            "Trimmed to fit: " + "; ".join(composed.trimmed) if composed.trimmed else ""
        )
        self.warnings_label.setText("\n".join(f"Warning: {w}" for w in composed.warnings))

    # --- scripts for the preview -----------------------------------------------------------

    def choose_script(self) -> None:
        files, _filter = QtWidgets.QFileDialog.getOpenFileNames(
            self, "Open a script for the preview", str(self._base_dir), SCRIPT_FILTER
        )
        if files:
            self.load_script(files)

    def load_script(self, files: Sequence[str | Path]) -> None:
        """Read prompt files (off the UI thread) and offer their panels in the preview."""
        names = [str(f) for f in files]
        self.panels_status.setText("Reading the script…")
        self.loader.submit(lambda: load_prompt_files(names), lambda r: self._script_read(names, r))

    def _script_read(self, names: list[str], result: ImportResult) -> None:
        source = Path(names[0]).name + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        self.set_panels(result.specs, source)
        if result.errors:
            first = result.errors[0]
            self.panels_status.setText(
                f"{_plural(len(result.specs), 'panel')} from {source}; "
                f"{_plural(len(result.errors), 'error')} in the script (the first: {first})"
            )
        self.panels_loaded.emit()


# --- opening it ------------------------------------------------------------------------------


def open_style_editor(
    parent: QtWidgets.QWidget | None = None,
    *,
    path: str | Path | None = None,
    panels: Sequence[PromptSpec] = (),
    base_dir: Path | None = None,
) -> StyleEditor:
    """Show an editor for ``path`` (or the already open editor of that file, moved under
    ``parent``: a window-modal opener such as the import dialog would block it elsewhere),
    or a new bible from the template. The window deletes itself when closed."""
    if path is not None:
        wanted = Path(path).expanduser().resolve()
        for editor in open_editors():
            if editor.path is not None and editor.path.resolve() == wanted:
                if panels:
                    editor.set_panels(panels, editor.panels_source)
                if parent is not None and editor.parentWidget() is not parent:
                    editor.setParent(parent, editor.windowFlags())
                editor.show()
                editor.raise_()
                editor.activateWindow()
                return editor
    editor = StyleEditor(parent, path=path, panels=panels, base_dir=base_dir)
    editor.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    editor.show()
    return editor


def adopt_editors(children_of: QtWidgets.QWidget, new_parent: QtWidgets.QWidget | None) -> None:
    """Hand the editor windows opened from ``children_of`` (a dialog that is closing) to
    ``new_parent``, so they stay open with the author's text."""
    for editor in open_editors():
        if editor.parentWidget() is children_of:
            visible = editor.isVisible()
            editor.setParent(new_parent, editor.windowFlags())
            if visible:
                editor.show()


__all__ = [
    "CHECK_DELAY_MS",
    "TEMPLATE",
    "BibleCheck",
    "BibleTextEdit",
    "StyleEditor",
    "adopt_editors",
    "check_bible",
    "issue_text",
    "open_editors",
    "open_style_editor",
    "panel_label",
    "reference_icon",
]
