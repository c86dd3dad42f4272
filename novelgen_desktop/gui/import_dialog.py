"""From dropped files to a job: what was dropped, what it parses to, and the job's settings.

The author drops a script (or a folder of them) on the window. :func:`scan_mime` keeps the
local prompt files (a folder becomes the prompt files inside it) and says in words what it
left out (a PNG, a web link), so one stray image in a drop never blocks the script next to
it. :func:`open_import` parses the files in a worker thread — a 10,000-panel script must not
freeze the window — and shows :class:`ImportPreviewDialog`: the chapters, pages and panels
the job will draw, the format detected for each file, every error and warning with its
``file:line``, and the job's settings. Errors block "Create job" and the dialog says why;
a refused creation (a bad output folder, say) is shown in the dialog and keeps everything the
author typed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from novelgen_desktop.engine.model import DEFAULT_MAX_CHAT_TURNS, MAX_CHAT_TURNS, ChatStrategy
from novelgen_desktop.errors import NovelGenError
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.gui.style_editor import (
    StyleEditor,
    adopt_editors,
    open_style_editor,
    reference_text,
)
from novelgen_desktop.output.naming import NameFields, NamingTemplate, TemplateError, slugify
from novelgen_desktop.prompts import detect
from novelgen_desktop.prompts.issues import WARNING, ImportIssue, ImportResult
from novelgen_desktop.prompts.model import PromptSpec
from novelgen_desktop.style.bible import StyleBible
from novelgen_desktop.style.composer import ComposedPrompt, ComposeError, Composer, panel_of
from novelgen_desktop.style.loader import StyleBibleError, load_style_bible

NODE_CAP = 500
"""Children shown under one tree node; the rest are summarised in one line. Opening a node
of a 10,000-prompt list stays instant, and nobody reads 10,000 rows in a preview."""
MAX_FOLDER_ENTRIES = 20_000
"""Entries looked at when a folder is dropped: a home folder dropped by mistake must not
freeze the window while it is walked."""
SNIFF_BYTES = 8192
PROMPT_EXTENSIONS = (".txt", ".csv", ".tsv", ".json", ".jsonl", ".md", ".script", ".fountain")
"""For messages only; :func:`detect.is_known_extension` decides."""

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_BINARY_HINTS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF; export the script as plain text"),
    (b"PK\x03\x04", "a .docx/.xlsx/.odt document or a zip; save the script as plain text or CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Word/Excel document; save it as plain text or CSV"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a WebP image or another binary file"),
)


# --- what was dropped ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DroppedFiles:
    """The prompt files found in a drop, and one sentence per thing left out."""

    paths: list[str]
    rejected: list[str]


def _binary_reason(path: Path) -> str | None:
    """Why ``path`` is clearly not a text file, or None if it may be one (the importer will
    look closer and report anything subtler with a line number)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if head.startswith(_UTF16_BOMS):
        return None
    for magic, hint in _BINARY_HINTS:
        if head.startswith(magic):
            return f"not a prompt file: it is {hint}"
    if b"\x00" in head:
        return "not a prompt file: it is binary (it contains NUL bytes)"
    return None


def _prompt_files_in(folder: Path, rejected: list[str]) -> list[str]:
    found: list[str] = []
    seen = skipped = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            seen += 1
            if name.startswith("."):
                continue
            if detect.is_known_extension(Path(name).suffix):
                found.append(str(Path(root) / name))
            else:
                skipped += 1
        seen += len(dirs)
        if seen >= MAX_FOLDER_ENTRIES:
            rejected.append(
                f"{folder}: stopped looking after {MAX_FOLDER_ENTRIES:,} entries; "
                "drop the script's own folder"
            )
            break
    if not found:
        rejected.append(f"{folder}: no prompt files inside ({', '.join(PROMPT_EXTENSIONS)})")
    elif skipped:
        rejected.append(
            f"{folder}: {_plural(skipped, 'other file')} left out (not prompt files: "
            f"{', '.join(PROMPT_EXTENSIONS)})"
        )
    return found


def scan_paths(paths: Iterable[str]) -> DroppedFiles:
    """Expand folders into their prompt files and leave out what cannot be a prompt file.

    A file dropped on its own is kept even with an unusual extension if it is text (the
    importer reads it and warns about the extension); binary files and missing paths are
    reported. Each path appears once, in the order dropped."""
    kept: list[str] = []
    rejected: list[str] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            kept.extend(_prompt_files_in(path, rejected))
        elif not path.exists():
            rejected.append(f"{path}: file not found")
        elif not path.is_file():
            rejected.append(f"{path}: not a regular file")
        else:
            reason = _binary_reason(path)
            if reason is None:
                kept.append(str(path))
            else:
                rejected.append(f"{path}: {reason}")
    return DroppedFiles(list(dict.fromkeys(kept)), rejected)


def scan_mime(mime: QtCore.QMimeData) -> DroppedFiles:
    """The prompt files in a drag-and-drop payload (local files only)."""
    local: list[str] = []
    remote: list[str] = []
    for url in mime.urls():
        if url.isLocalFile():
            local.append(url.toLocalFile())
        else:
            remote.append(f"{url.toDisplayString()}: only files on this computer can be imported")
    scanned = scan_paths(local)
    return DroppedFiles(scanned.paths, remote + scanned.rejected)


def paths_from_mime(mime: QtCore.QMimeData) -> list[str]:
    """The prompt files a drop holds; see :func:`scan_mime` for what is left out and why."""
    return scan_mime(mime).paths


def mime_has_local_files(mime: QtCore.QMimeData) -> bool:
    """Whether a drag is worth accepting (a drag enter event must answer at once)."""
    return mime.hasUrls() and any(url.isLocalFile() for url in mime.urls())


# --- the outline of the script -------------------------------------------------------------


@dataclasses.dataclass
class ChapterOutline:
    label: str | None
    pages: dict[int | None, list[PromptSpec]] = dataclasses.field(default_factory=dict)

    @property
    def panel_count(self) -> int:
        return sum(len(specs) for specs in self.pages.values())


def outline(specs: Sequence[PromptSpec]) -> list[ChapterOutline]:
    """Chapters → pages → panels, in the order they first appear (as the job numbers them)."""
    chapters: dict[str | None, ChapterOutline] = {}
    for spec in specs:
        chapter = chapters.get(spec.chapter)
        if chapter is None:
            chapter = chapters[spec.chapter] = ChapterOutline(spec.chapter)
        chapter.pages.setdefault(spec.page, []).append(spec)
    return list(chapters.values())


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def _where(issue: ImportIssue) -> str:
    if issue.line is None:
        return issue.file
    if issue.column is None:
        return f"{issue.file}:{issue.line}"
    return f"{issue.file}:{issue.line}:{issue.column}"


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- the style bible and chats ------------------------------------------------------------

STYLE_CHECK_DELAY_MS = 300
"""Typing a bible's path or the default style rechecks every panel once this long passes."""

CHAT_STRATEGIES: tuple[tuple[ChatStrategy, str, str], ...] = (
    (
        ChatStrategy.PANEL,
        "New chat per panel (default)",
        "Every panel in a fresh chat: nothing earlier colours the next image, and every tab "
        "draws at once.",
    ),
    (
        ChatStrategy.PAGE,
        "One chat per page",
        "The panels of a page share one conversation on one tab, so neighbours match; pages "
        "still run in parallel.",
    ),
    (
        ChatStrategy.CHAPTER,
        "One chat per chapter",
        "Per chapter keeps a whole chapter in one conversation on one tab: consistent but serial.",
    ),
)


def conversations(specs: Sequence[PromptSpec], strategy: ChatStrategy) -> int | None:
    """How many conversations ``strategy`` makes of ``specs`` (None: every panel its own)."""
    if strategy is ChatStrategy.PANEL:
        return None
    keys = {strategy.sequence_of(spec.chapter, spec.page) for spec in specs}
    alone = None in keys
    keys.discard(None)
    return None if alone and not keys else len(keys)


@dataclasses.dataclass(frozen=True, slots=True)
class StyleCheck:
    """A style bible read and every panel composed with it (done off the UI thread).

    ``results`` has one entry per panel, in script order: its composed prompt, or why it
    cannot be composed. ``issues`` are the bible's own errors when it cannot be read, or
    else the panels' compose errors (at their script ``file:line``) and warnings."""

    path: str
    bible: StyleBible | None
    results: list[ComposedPrompt | str]
    issues: list[ImportIssue]
    file_key: tuple[str, int, int] | None  # what was read: path, mtime, size

    @property
    def errors(self) -> list[ImportIssue]:
        return [issue for issue in self.issues if issue.is_error]


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def check_style(
    path: str,
    specs: Sequence[PromptSpec],
    cached: tuple[tuple[str, int, int], StyleBible] | None = None,
) -> StyleCheck:
    """Read the bible at ``path`` (``cached`` if the file is unchanged since) and compose
    every panel with it, as the engine will when the job is created."""
    target = Path(path).expanduser()
    key = _file_key(target)
    if cached is not None and key is not None and cached[0] == key:
        bible = cached[1]
    else:
        try:
            bible = load_style_bible(target)
        except StyleBibleError as exc:
            return StyleCheck(path, None, [], list(exc.issues), key)
    composer = Composer(bible)
    results: list[ComposedPrompt | str] = []
    issues: list[ImportIssue] = []
    for spec in specs:
        where = (spec.source.file, spec.source.line)
        try:
            composed = composer.compose(panel_of(spec))
        except ComposeError as exc:
            results.append(str(exc))
            issues.append(ImportIssue(*where, str(exc), field="text"))
            continue
        results.append(composed)
        issues.extend(ImportIssue(*where, w, severity=WARNING) for w in composed.warnings)
    chapters = {spec.chapter.casefold() for spec in specs if spec.chapter is not None}
    for label, override in bible.chapters.items():
        if specs and label.casefold() not in chapters:
            issues.append(
                ImportIssue(
                    bible.source or path,
                    override.line,
                    f"chapter {label!r} matches no panel of the script",
                    field=f"chapters.{label}",
                    severity=WARNING,
                )
            )
    return StyleCheck(path, bible, results, issues, key)


def composed_summary(composed: ComposedPrompt, limit: int) -> str:
    """One line about a composed prompt: length, cast, references, cuts."""
    facts = [f"{len(composed.text):,}/{limit:,} characters"]
    if composed.characters:
        facts.append("characters: " + ", ".join(composed.characters))
    if composed.locations:
        facts.append("setting: " + ", ".join(composed.locations))
    if composed.props:
        facts.append("props: " + ", ".join(composed.props))
    if composed.references:
        facts.append("attaches " + ", ".join(r.name for r in composed.references))
    if composed.trimmed:
        facts.append("trimmed: " + "; ".join(composed.trimmed))
    return " · ".join(facts)


# --- the dialog ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class JobChoices:
    """What the author chose for the new job."""

    name: str
    out_root: Path
    naming: str
    priority: int
    tabs: int
    specs: list[PromptSpec]
    style: StyleBible | None = None
    chat_strategy: ChatStrategy = ChatStrategy.PANEL
    max_chat_turns: int = DEFAULT_MAX_CHAT_TURNS


_NODE_ROLE = int(Qt.ItemDataRole.UserRole) + 1
_SPEC_ROLE = int(Qt.ItemDataRole.UserRole) + 2
CHECKING_STYLE = "Checking the style bible and composing every panel…"


class ImportPreviewDialog(QtWidgets.QDialog):
    """Preview parsed prompt files and create a job from them."""

    job_created = QtCore.Signal(str)  # the new job's id

    def __init__(
        self,
        bridge: EngineBridge,
        paths: Sequence[str],
        result: ImportResult,
        parent: QtWidgets.QWidget | None = None,
        *,
        dropped_problems: Sequence[str] = (),
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.paths = list(paths)
        self.import_result = result
        self.dropped_problems = list(dropped_problems)
        self.created_job_id: str | None = None
        self._creating = False
        self._closed = False
        self._failure: str | None = None  # why the last Create was refused
        self._chapters = outline(result.specs)
        self._spec_index = {id(spec): index for index, spec in enumerate(result.specs)}
        self._panel_items: dict[int, QtWidgets.QTreeWidgetItem] = {}  # spec index -> item
        # The style bible: the last finished check, whether one is due, and the bible last
        # read (reused while its file does not change).
        self.style_check: StyleCheck | None = None
        self._style_generation = 0
        self._style_pending = False
        self._bible_cache: tuple[tuple[str, int, int], StyleBible] | None = None
        self.style_editor: StyleEditor | None = None  # the last editor opened from here
        self._editors: list[StyleEditor] = []  # editors whose saves recheck the bible here
        session = bridge.session
        self.setWindowTitle("Import prompts")
        self.resize(900, 680)

        self.summary = QtWidgets.QLabel(self._summary_text())
        self.summary.setWordWrap(True)

        self.tabs = QtWidgets.QTabWidget(self)
        self.tree = QtWidgets.QTreeWidget(self)
        self.tree.setHeaderLabels(["Chapter / page / panel", "Panels", "Prompt", "Source"])
        self.tree.setUniformRowHeights(True)
        self.tree.setColumnWidth(0, 190)
        self.tree.setColumnWidth(1, 60)
        self.tree.setColumnWidth(2, 420)
        self.tree.itemExpanded.connect(self._fill)
        self.tree.currentItemChanged.connect(self._show_composed)
        self.composed_view = QtWidgets.QPlainTextEdit(self)
        self.composed_view.setReadOnly(True)
        self.composed_view.setPlaceholderText("The selected panel's composed prompt")
        self.composed_facts = QtWidgets.QLabel(self)
        self.composed_facts.setWordWrap(True)
        self.composed_facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.composed_pane = QtWidgets.QWidget(self)
        pane_layout = QtWidgets.QVBoxLayout(self.composed_pane)
        pane_layout.setContentsMargins(0, 0, 0, 0)
        pane_layout.addWidget(self.composed_facts)
        pane_layout.addWidget(self.composed_view, 1)
        self.composed_pane.hide()
        script = QtWidgets.QSplitter(Qt.Orientation.Vertical, self)
        script.addWidget(self.tree)
        script.addWidget(self.composed_pane)
        script.setStretchFactor(0, 3)
        script.setStretchFactor(1, 2)
        self.files = QtWidgets.QTreeWidget(self)
        self.files.setRootIsDecorated(False)
        self.files.setHeaderLabels(["File", "Format", "Prompts", "Errors", "Warnings"])
        self.files.setColumnWidth(0, 420)
        self.problems = QtWidgets.QTreeWidget(self)
        self.problems.setRootIsDecorated(False)
        self.problems.setHeaderLabels(["", "Where", "Message"])
        self.problems.setColumnWidth(0, 100)
        self.problems.setColumnWidth(1, 300)
        self.problems.setWordWrap(True)
        self.tabs.addTab(script, "Script")
        self.tabs.addTab(self.files, "Files")
        self.tabs.addTab(self.problems, "Problems")

        self.name_edit = QtWidgets.QLineEdit(Path(self.paths[0]).stem if self.paths else "")
        self.name_edit.setPlaceholderText("The job's name")
        self.folder_edit = QtWidgets.QLineEdit(str(session.settings.output_root(session.paths)))
        self.browse_button = QtWidgets.QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse_folder)
        folder_row = QtWidgets.QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)
        self.template_edit = QtWidgets.QLineEdit(session.settings.naming_template)
        self.template_status = QtWidgets.QLabel()
        self.template_status.setWordWrap(True)
        self.workers_spin = QtWidgets.QSpinBox()
        self.workers_spin.setRange(1, 10)
        self.workers_spin.setValue(session.browser_tab_count())
        self.workers_spin.setSuffix(" tabs")
        self.workers_spin.setToolTip("ChatGPT tabs each connected browser runs (1–10)")
        self.priority_spin = QtWidgets.QSpinBox()
        self.priority_spin.setRange(-1000, 1000)
        self.priority_spin.setToolTip("Jobs with a higher priority run first")
        self.style_edit = QtWidgets.QLineEdit()
        self.style_edit.setPlaceholderText("e.g. ink and watercolour (for prompts without one)")
        self.style_edit.setToolTip(
            "A style for panels that have none; with a style bible it becomes the prompt's "
            "“Panel style:” line"
        )
        self.bible_edit = QtWidgets.QLineEdit()
        self.bible_edit.setPlaceholderText("None: the prompts are sent as written")
        self.bible_edit.setClearButtonEnabled(True)
        self.bible_edit.setToolTip(
            "A style bible (.toml): the look, the cast and the places of the book, composed "
            "into every prompt so that panel 2,400 looks like panel 1"
        )
        self.bible_browse_button = QtWidgets.QPushButton("Browse…")
        self.bible_browse_button.clicked.connect(self.browse_bible)
        self.bible_edit_button = QtWidgets.QPushButton("Edit…")
        self.bible_edit_button.setToolTip(
            "Open the style bible editor (a new bible from the template when none is chosen), "
            "with these panels in its preview"
        )
        self.bible_edit_button.clicked.connect(self.edit_bible)
        bible_row = QtWidgets.QHBoxLayout()
        bible_row.addWidget(self.bible_edit, 1)
        bible_row.addWidget(self.bible_browse_button)
        bible_row.addWidget(self.bible_edit_button)
        self.bible_status = QtWidgets.QLabel()
        self.bible_status.setWordWrap(True)
        self.bible_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.chat_combo = QtWidgets.QComboBox()
        for strategy, label, _explanation in CHAT_STRATEGIES:
            self.chat_combo.addItem(label, strategy.value)
        self.chat_explanation = QtWidgets.QLabel()
        self.chat_explanation.setWordWrap(True)
        self.turns_spin = QtWidgets.QSpinBox()
        self.turns_spin.setRange(1, MAX_CHAT_TURNS)
        self.turns_spin.setSuffix(" messages")
        self.turns_spin.setToolTip(
            "A conversation that grows longer than this continues in a fresh chat: a long "
            "chat slows the page and dilutes what the model keeps in view"
        )
        remembered = session.settings
        self.turns_spin.setValue(remembered.max_chat_turns)
        self.set_chat_strategy(remembered.chat_strategy)
        self.chat_combo.currentIndexChanged.connect(self._chat_changed)
        self._style_timer = QtCore.QTimer(self)
        self._style_timer.setSingleShot(True)
        self._style_timer.setInterval(STYLE_CHECK_DELAY_MS)
        self._style_timer.timeout.connect(self.check_style_now)

        form = QtWidgets.QFormLayout()
        form.addRow("Job name", self.name_edit)
        form.addRow("Output folder", folder_row)
        form.addRow("Naming template", self.template_edit)
        form.addRow("", self.template_status)
        form.addRow("Workers", self.workers_spin)
        form.addRow("Priority", self.priority_spin)
        form.addRow("Default style", self.style_edit)
        form.addRow("Style bible", bible_row)
        form.addRow("", self.bible_status)
        form.addRow("Chats", self.chat_combo)
        form.addRow("", self.chat_explanation)
        form.addRow("New chat after", self.turns_spin)

        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QtWidgets.QDialogButtonBox()
        self.create_button = buttons.addButton(
            "Create job", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.create_button.setDefault(True)
        self.cancel_button = buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.create_job)
        buttons.rejected.connect(self.reject)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(buttons)

        self._fill_tree()
        self._fill_files()
        self._fill_problems()
        for edit in (self.name_edit, self.folder_edit, self.template_edit):
            edit.textChanged.connect(self._edited)
        self.bible_edit.textChanged.connect(self._style_inputs_changed)
        self.workers_spin.valueChanged.connect(self._chat_changed)
        self.style_edit.textChanged.connect(self._style_inputs_changed)
        last_bible = session.settings.style_bible
        if last_bible and Path(last_bible).is_file():  # the last job's bible: same book
            self.bible_edit.setText(last_bible)
        self._chat_changed()
        self._show_bible_status()
        self._update_state()

    # --- contents ----------------------------------------------------------------------

    def _summary_text(self) -> str:
        result = self.import_result
        files = len(result.format_by_file)
        parts = [f"{_plural(len(result.specs), 'prompt')} in {_plural(files, 'file')}"]
        images = sum(spec.images for spec in result.specs)
        if images != len(result.specs):
            parts.append(f"{_plural(images, 'image')} to draw")
        if result.errors:
            parts.append(_plural(len(result.errors), "error"))
        if result.warnings:
            parts.append(_plural(len(result.warnings), "warning"))
        if self.dropped_problems:
            parts.append(f"{_plural(len(self.dropped_problems), 'dropped item')} left out")
        return " · ".join(parts)

    def _fill_tree(self) -> None:
        self.tree.clear()
        items = [self._chapter_item(index) for index in range(min(NODE_CAP, len(self._chapters)))]
        self.tree.addTopLevelItems(items)
        hidden = len(self._chapters) - NODE_CAP
        if hidden > 0:
            self.tree.addTopLevelItem(self._more_item(hidden, "chapter"))
        if items:
            self.tree.expandItem(items[0])
            first_page = items[0].child(0)
            if first_page is not None:
                self.tree.expandItem(first_page)

    def _chapter_item(self, index: int) -> QtWidgets.QTreeWidgetItem:
        chapter = self._chapters[index]
        label = f"Chapter {chapter.label}" if chapter.label is not None else "(no chapter)"
        item = QtWidgets.QTreeWidgetItem([label, f"{chapter.panel_count:,}"])
        item.setToolTip(0, f"{label}: {_plural(len(chapter.pages), 'page')}")
        item.setData(0, _NODE_ROLE, ("chapter", index))
        item.setChildIndicatorPolicy(QtWidgets.QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
        return item

    def _more_item(self, hidden: int, word: str) -> QtWidgets.QTreeWidgetItem:
        item = QtWidgets.QTreeWidgetItem([f"… {_plural(hidden, 'more ' + word)} not shown"])
        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
        return item

    def _fill(self, item: QtWidgets.QTreeWidgetItem) -> None:
        """Create a node's children the first time it opens."""
        node = item.data(0, _NODE_ROLE)
        if node is None or item.childCount():
            return
        children: list[QtWidgets.QTreeWidgetItem] = []
        if node[0] == "chapter":
            chapter = self._chapters[node[1]]
            pages = list(chapter.pages.items())
            for page, specs in pages[:NODE_CAP]:
                label = f"Page {page}" if page is not None else "(no page)"
                child = QtWidgets.QTreeWidgetItem([label, f"{len(specs):,}"])
                child.setData(0, _NODE_ROLE, ("page", node[1], page))
                child.setChildIndicatorPolicy(
                    QtWidgets.QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator
                )
                children.append(child)
            if len(pages) > NODE_CAP:
                children.append(self._more_item(len(pages) - NODE_CAP, "page"))
        elif node[0] == "page":
            specs = self._chapters[node[1]].pages[node[2]]
            for number, spec in enumerate(specs[:NODE_CAP], start=1):
                label = f"Panel {spec.panel}" if spec.panel is not None else f"Prompt {number}"
                count = f"×{spec.images}" if spec.images > 1 else ""
                child = QtWidgets.QTreeWidgetItem(
                    [label, count, _one_line(spec.text), str(spec.source)]
                )
                index = self._spec_index[id(spec)]
                child.setData(0, _SPEC_ROLE, index)
                self._panel_items[index] = child
                self._dress_panel(child, index)
                children.append(child)
            if len(specs) > NODE_CAP:
                children.append(self._more_item(len(specs) - NODE_CAP, "panel"))
        item.addChildren(children)

    def _fill_files(self) -> None:
        counts: dict[str, list[int]] = {
            name: [0, 0, 0] for name in self.import_result.format_by_file
        }
        for spec in self.import_result.specs:
            counts.setdefault(spec.source.file, [0, 0, 0])[0] += 1
        for issue in self.import_result.issues:
            counts.setdefault(issue.file, [0, 0, 0])[1 if issue.is_error else 2] += 1
        for name, (prompts, errors, warnings) in counts.items():
            fmt = self.import_result.format_by_file.get(name, "unknown")
            item = QtWidgets.QTreeWidgetItem(
                [name, fmt, f"{prompts:,}", f"{errors:,}", f"{warnings:,}"]
            )
            item.setToolTip(0, name)
            self.files.addTopLevelItem(item)

    def _dress_panel(self, item: QtWidgets.QTreeWidgetItem, index: int) -> None:
        """A panel row's tooltip: its composed prompt (or why it cannot be composed) when a
        style bible is chosen, else its text and style."""
        spec = self.import_result.specs[index]
        check = self.style_check if self.bible_edit.text().strip() else None
        result = check.results[index] if check is not None and check.results else None
        if isinstance(result, ComposedPrompt) and check is not None and check.bible:
            item.setToolTip(
                2,
                f"{result.text}\n\n— {composed_summary(result, check.bible.max_prompt_chars)}",
            )
            item.setForeground(2, QtGui.QBrush())
        elif isinstance(result, str):
            item.setToolTip(2, f"Cannot be composed: {result}")
            item.setForeground(2, QtGui.QBrush(QtGui.QColor("#d93025")))
        else:
            style = spec.style or self.style_edit.text().strip() or None
            item.setToolTip(2, spec.text if style is None else f"{spec.text}\n\nstyle: {style}")
            item.setForeground(2, QtGui.QBrush())

    def _fill_problems(self) -> None:
        self.problems.clear()
        ordered = self.import_result.errors + self.import_result.warnings
        for issue in ordered:
            self.problems.addTopLevelItem(self._problem_item(issue, ""))
        style_issues = self._style_issues()
        for issue in style_issues[:NODE_CAP]:
            self.problems.addTopLevelItem(self._problem_item(issue, "style "))
        if len(style_issues) > NODE_CAP:
            self.problems.addTopLevelItem(
                self._more_item(len(style_issues) - NODE_CAP, "style problem")
            )
        for problem in self.dropped_problems:
            self.problems.addTopLevelItem(QtWidgets.QTreeWidgetItem(["left out", "", problem]))
        count = len(ordered) + len(style_issues) + len(self.dropped_problems)
        self.tabs.setTabText(2, f"Problems ({count})" if count else "Problems")
        if self.import_result.errors:
            self.tabs.setCurrentWidget(self.problems)

    @staticmethod
    def _problem_item(issue: ImportIssue, prefix: str) -> QtWidgets.QTreeWidgetItem:
        severity = prefix + ("error" if issue.is_error else "warning")
        message = f"field '{issue.field}': {issue.message}" if issue.field else issue.message
        item = QtWidgets.QTreeWidgetItem([severity, _where(issue), message])
        item.setToolTip(2, str(issue))
        if issue.is_error:
            item.setForeground(0, QtGui.QBrush(QtGui.QColor("#d93025")))
        return item

    def _style_issues(self) -> list[ImportIssue]:
        check = self.style_check
        if check is None or not self.bible_edit.text().strip():
            return []
        return check.errors + [issue for issue in check.issues if not issue.is_error]

    def problem_lines(self) -> list[str]:
        """Every row of the problems list as ``severity where: message`` (tests, copying)."""
        lines = []
        for row in range(self.problems.topLevelItemCount()):
            item = self.problems.topLevelItem(row)
            if item is not None:
                lines.append(f"{item.text(0)} {item.text(1)}: {item.text(2)}")
        return lines

    # --- the job's settings ------------------------------------------------------------

    def browse_folder(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Output folder", self.folder_edit.text()
        )
        if folder:
            self.folder_edit.setText(folder)

    def folder_problem(self) -> str | None:
        """Why the output folder cannot hold the job's images, when that is plain from here
        (a file in the way, a read-only parent); the engine has the last word."""
        text = self.folder_edit.text().strip()
        if not text:
            return "Choose the output folder."
        folder = Path(text).expanduser()
        existing = folder
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            what = "is a file" if existing == folder else f"cannot be created: {existing} is a file"
            return f"Output folder {folder} {what}."
        if not os.access(existing, os.W_OK):
            return f"Output folder {folder}: {existing} is not writable."
        return None

    def template_problem(self) -> str | None:
        """Why the naming template cannot be used, in words; None when it is fine."""
        try:
            NamingTemplate(self.template_edit.text())
        except TemplateError as exc:
            return f"Naming template {self.template_edit.text()!r}: {exc}"
        return None

    def _template_example(self) -> str:
        template = NamingTemplate(self.template_edit.text())
        if not self.import_result.specs:
            return "Template is valid."
        spec = self.import_result.specs[0]
        fields = NameFields(
            seq=1,
            extension=".png",
            chapter=spec.chapter,
            page=spec.page,
            panel=spec.panel,
            images=spec.images,
            job=self.name_edit.text().strip() or "job",
            task=1,
            slug=slugify(spec.text) or "panel",
        )
        return f"First image: {template.render(fields).as_posix()}"

    def blocking_reason(self) -> str | None:
        """Why "Create job" is disabled now, in words; None when it is enabled."""
        errors = self.import_result.errors
        if errors:
            first = errors[0]
            return (
                f"{_plural(len(errors), 'error')} in the prompt files (the first at "
                f"{_where(first)}: {first.message}). Fix the files and drop them again: "
                "a job cannot be created until they read cleanly."
            )
        if not self.import_result.specs:
            return "No prompts were found in these files: there is nothing to draw."
        if not self.name_edit.text().strip():
            return "Give the job a name."
        return self.style_problem() or self.folder_problem() or self.template_problem()

    # --- the style bible ---------------------------------------------------------------

    @property
    def bible(self) -> StyleBible | None:
        """The chosen style bible as last read (None: none chosen, or it has errors)."""
        check = self.style_check
        if not self.bible_edit.text().strip() or check is None or self._style_pending:
            return None
        return check.bible

    def chat_strategy(self) -> ChatStrategy:
        return ChatStrategy(self.chat_combo.currentData())

    def set_chat_strategy(self, strategy: ChatStrategy | str) -> None:
        index = self.chat_combo.findData(ChatStrategy(strategy).value)
        self.chat_combo.setCurrentIndex(max(0, index))

    def style_problem(self) -> str | None:
        """Why the chosen style bible stops the job, in words (with file:line); None when
        no bible is chosen or every panel composes."""
        path = self.bible_edit.text().strip()
        if not path:
            return None
        check = self.style_check
        if self._style_pending or check is None:
            return CHECKING_STYLE
        errors = check.errors
        if check.bible is None:
            first = errors[0] if errors else None
            where = f" (the first at {first})" if first is not None else ""
            return (
                f"The style bible {path} has {_plural(len(errors), 'error')}{where}. Fix it "
                "with Edit… or choose another bible."
            )
        if errors:
            first = errors[0]
            return (
                f"{_plural(len(errors), 'panel')} cannot be composed with style bible "
                f"{check.bible.name} (the first at {_where(first)}: {first.message}). Fix the "
                "script or the bible (Edit…)."
            )
        return None

    def _style_inputs_changed(self) -> None:
        self._failure = None
        path = self.bible_edit.text().strip()
        self._style_generation += 1
        self._style_pending = bool(path)
        if path:
            self._style_timer.start()
        else:
            self._style_timer.stop()
            self._style_applied()
        self._update_state()

    def check_style_now(self) -> None:
        """Read the chosen bible and compose every panel with it, off the UI thread (a
        script of 10,000 panels takes seconds); the dialog follows when it is done."""
        self._style_timer.stop()
        path = self.bible_edit.text().strip()
        if not path:
            return
        self._style_pending = True
        generation = self._style_generation
        specs = self.specs_with_style()
        cached = self._bible_cache
        self._show_bible_status()
        self._update_state()

        async def check() -> None:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, check_style, path, specs, cached)
            if generation != self._style_generation or self._closed:
                return  # the author changed something meanwhile: a newer check follows
            if result.bible is not None and result.file_key is not None:
                self._bible_cache = (result.file_key, result.bible)
            self.style_check = result
            self._style_pending = False
            self._style_applied()

        self.bridge.spawn("check the style bible", check())

    def _style_applied(self) -> None:
        for index, item in self._panel_items.items():
            self._dress_panel(item, index)
        self._fill_problems()
        self._show_bible_status()
        self._show_composed(self.tree.currentItem())
        self._chat_changed()
        self._update_state()

    def _show_bible_status(self) -> None:
        path = self.bible_edit.text().strip()
        check = self.style_check
        self.composed_pane.setVisible(bool(path))
        colour = ""
        if not path:
            text = "No style bible: each panel is sent as written (with its style, if any)."
        elif self._style_pending or check is None:
            text = CHECKING_STYLE
        elif check.bible is None:
            text = f"{_plural(len(check.errors), 'error')} in the style bible: see Problems."
            colour = "#d93025"
        else:
            bible = check.bible
            composed = sum(1 for r in check.results if isinstance(r, ComposedPrompt))
            text = (
                f"{bible.name}, version {bible.version} · "
                f"{_plural(len(bible.entities), 'entry', 'entries')} · "
                f"{composed:,} of {_plural(len(check.results), 'panel')} composed"
            )
            if check.errors:
                text += f" · {_plural(len(check.errors), 'panel')} cannot be"
                colour = "#d93025"
        self.bible_status.setText(text)
        self.bible_status.setStyleSheet(f"color: {colour};" if colour else "")

    def _show_composed(
        self,
        item: QtWidgets.QTreeWidgetItem | None,
        _previous: QtWidgets.QTreeWidgetItem | None = None,
    ) -> None:
        index = item.data(0, _SPEC_ROLE) if item is not None else None
        check = self.style_check
        if not isinstance(index, int):
            self.composed_facts.setText("Select a panel to see the prompt that will be sent.")
            self.composed_view.clear()
            return
        if self._style_pending or check is None or check.bible is None or not check.results:
            self.composed_facts.setText(self.bible_status.text())
            self.composed_view.clear()
            return
        result = check.results[index]
        spec = self.import_result.specs[index]
        if isinstance(result, str):
            self.composed_facts.setText(f"{spec.source}: cannot be composed: {result}")
            self.composed_facts.setStyleSheet("color: #d93025;")
            self.composed_view.clear()
            return
        facts = composed_summary(result, check.bible.max_prompt_chars)
        if result.references:
            facts += "\n" + "\n".join(reference_text(r) for r in result.references)
        if result.warnings:
            facts += "\n" + "\n".join(f"warning: {w}" for w in result.warnings)
        self.composed_facts.setText(f"{spec.source} · {facts}")
        self.composed_facts.setStyleSheet("")
        self.composed_view.setPlainText(result.text)

    def composed_text(self) -> str:
        """The composed prompt shown for the selected panel (tests)."""
        return self.composed_view.toPlainText()

    def browse_bible(self) -> None:
        current = self.bible_edit.text().strip()
        start = current or (str(Path(self.paths[0]).parent) if self.paths else "")
        name, _filter = QtWidgets.QFileDialog.getOpenFileName(
            self, "Style bible", start, "Style bible (*.toml);;All files (*)"
        )
        if name:
            self.bible_edit.setText(name)

    def edit_bible(self) -> StyleEditor:
        """Open the style bible editor on the chosen bible (or a new one from the template)
        with these panels to preview; saving it there rechecks it here."""
        path = self.bible_edit.text().strip() or None
        if path is not None and not Path(path).expanduser().is_file():
            path = None  # a path typed but not written yet: start from the template
        base = Path(self.paths[0]).resolve().parent if self.paths else None
        editor = open_style_editor(self, path=path, panels=self.specs_with_style(), base_dir=base)
        if all(watched is not editor for watched in self._editors):
            editor.saved.connect(self._bible_saved)
            self._editors.append(editor)
        self.style_editor = editor
        return editor

    def _bible_saved(self, path: str) -> None:
        if self._closed:
            return
        self._bible_cache = None  # read it again, whatever its time stamp says
        if self.bible_edit.text().strip() != path:
            self.bible_edit.setText(path)  # rechecks
        else:
            self._style_inputs_changed()

    def _chat_changed(self, _index: int = 0) -> None:
        strategy = self.chat_strategy()
        self.turns_spin.setEnabled(strategy is not ChatStrategy.PANEL)
        text = next(e for s, _label, e in CHAT_STRATEGIES if s is strategy)
        count = conversations(self.import_result.specs, strategy)
        tabs = self.workers_spin.value()
        if count is not None and count < tabs:
            text += (
                f" This script makes {_plural(count, 'conversation')}: at most {count:,} of "
                f"the {tabs} tabs draw at once."
            )
        self.chat_explanation.setText(text)

    def _edited(self) -> None:
        self._failure = None  # the author is fixing it: judge the new values
        self._update_state()

    def _update_state(self) -> None:
        problem = self.template_problem()
        self.template_status.setText(problem or self._template_example())
        self.template_status.setStyleSheet("color: #d93025;" if problem else "")
        reason = self.blocking_reason()
        self.create_button.setEnabled(reason is None and not self._creating)
        if self._creating:
            self._show("Creating the job…", error=False)
        elif self._failure is not None:
            self._show(self._failure, error=True)
        elif reason is not None:
            self._show(reason, error=True)
        else:
            self._show("", error=False)

    def _show(self, text: str, *, error: bool) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #d93025;" if error else "")

    def specs_with_style(self) -> list[PromptSpec]:
        """The specs, the default style filled in where the script gave none."""
        style = self.style_edit.text().strip()
        if not style:
            return list(self.import_result.specs)
        return [
            spec if spec.style else dataclasses.replace(spec, style=style)
            for spec in self.import_result.specs
        ]

    # --- creating ----------------------------------------------------------------------

    def choices(self) -> JobChoices:
        """The job's settings as the author typed them."""
        return JobChoices(
            name=self.name_edit.text().strip(),
            out_root=Path(self.folder_edit.text().strip()).expanduser(),
            naming=self.template_edit.text(),
            priority=self.priority_spin.value(),
            tabs=self.workers_spin.value(),
            specs=self.specs_with_style(),
            style=self.bible,
            chat_strategy=self.chat_strategy(),
            max_chat_turns=self.turns_spin.value(),
        )

    def create_job(self) -> None:
        """Create the job through the engine; the dialog closes only when it exists."""
        self._failure = None
        reason = self.blocking_reason()
        if reason is not None or self._creating:
            self._update_state()
            return
        self._creating = True
        self._update_state()
        self.bridge.spawn("create the job", self._create(self.choices()))

    async def _create(self, choices: JobChoices) -> None:
        session = self.bridge.session
        result = dataclasses.replace(self.import_result, specs=choices.specs)
        try:
            job_id = await session.create_job(
                choices.name,
                result,
                out_root=choices.out_root,
                naming=choices.naming,
                priority=choices.priority,
                style=choices.style,
                chat_strategy=choices.chat_strategy,
                max_chat_turns=choices.max_chat_turns,
            )
        except NovelGenError as exc:
            if self._closed:  # the author gave up waiting: say it in the main window
                self.bridge.failed.emit("create the job", str(exc))
            else:
                self._failure = f"The job was not created: {exc}"
            return
        finally:
            self._creating = False
            if not self._closed:
                self._update_state()
        if choices.tabs != session.browser_tab_count():
            try:
                await session.set_browser_tabs(choices.tabs)
            except NovelGenError as exc:
                self.bridge.failed.emit("set the number of tabs", str(exc))
        self.created_job_id = job_id
        styled = (
            f", composed with {choices.style.name} {choices.style.version}"
            if choices.style is not None
            else ""
        )
        self.bridge.info.emit(
            f"job {choices.name} created: {_plural(len(choices.specs), 'prompt')}{styled}"
        )
        self.job_created.emit(job_id)
        self.bridge.select_job(job_id)
        if not self._closed:
            self.accept()

    def done(self, result: int) -> None:
        self._closed = True
        self._style_timer.stop()
        # An editor opened from here outlives the dialog, with the author's text.
        adopt_editors(self, self.parentWidget())
        super().done(result)


# --- opening it ----------------------------------------------------------------------------

_UNPARENTED: set[ImportPreviewDialog] = set()


async def preview_import(
    bridge: EngineBridge,
    paths: Sequence[str],
    parent: QtWidgets.QWidget | None = None,
    *,
    dropped_problems: Sequence[str] = (),
) -> ImportPreviewDialog:
    """Parse ``paths`` in a worker thread, then open the preview dialog (window-modal, not
    blocking the loop) and return it."""
    loop = asyncio.get_running_loop()
    files = list(paths)
    result = await loop.run_in_executor(None, bridge.session.preview_files, files)
    dialog = ImportPreviewDialog(bridge, files, result, parent, dropped_problems=dropped_problems)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if parent is None:
        # A dialog without a parent belongs to Python: it would be destroyed (and vanish
        # from the screen) as soon as the caller drops the task that returned it.
        _UNPARENTED.add(dialog)
        dialog.finished.connect(lambda _result: _UNPARENTED.discard(dialog))
    dialog.open()
    return dialog


def open_import(
    bridge: EngineBridge,
    paths: Sequence[str],
    parent: QtWidgets.QWidget | None = None,
    *,
    dropped_problems: Sequence[str] = (),
) -> asyncio.Task[ImportPreviewDialog]:
    """Start the import of ``paths`` (the main window calls this for dropped files and for
    File → Import); the task's result is the open dialog."""
    return bridge.spawn(
        "read the prompt files",
        preview_import(bridge, paths, parent, dropped_problems=dropped_problems),
    )


__all__ = [
    "CHAT_STRATEGIES",
    "NODE_CAP",
    "ChapterOutline",
    "DroppedFiles",
    "ImportPreviewDialog",
    "JobChoices",
    "StyleCheck",
    "check_style",
    "composed_summary",
    "conversations",
    "mime_has_local_files",
    "open_import",
    "outline",
    "paths_from_mime",
    "preview_import",
    "scan_mime",
    "scan_paths",
]
