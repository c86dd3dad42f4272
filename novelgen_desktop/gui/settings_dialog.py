"""The Settings dialog: every desktop setting, and pairing with the browser extension.

Mistakes are caught where they are typed (a naming template that cannot work, a resume
threshold not below the pause threshold) and again on OK, where the whole set is validated
and saved atomically. A refused OK keeps the dialog open with everything as typed: nothing
the author entered is lost to an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import fields
from pathlib import Path
from typing import Any

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.desktop.settings import DesktopSettings, save_settings
from novelgen_desktop.engine.model import MAX_CHAT_TURNS, ChatStrategy
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets
from novelgen_desktop.output.naming import NameFields, NamingTemplate, TemplateError

_ERROR_STYLE = "color: #c92a2a;"
_NOTE_STYLE = "color: #5c677d;"
SAMPLE = NameFields(
    seq=7,
    extension=".png",
    chapter="02",
    page=3,
    panel=1,
    job="lighthouse",
    task=7,
    slug="a-lighthouse-at-dusk",
)
"""The example name shown under the template: a panel with every field present."""

RESTART_FIELDS = {"hub_port": "the hub port", "simulate": "demo mode (simulated tabs)"}
"""Settings read only when NovelGen starts."""


class SettingsDialog(QtWidgets.QDialog):
    """Edit, validate and save :class:`DesktopSettings`; show and renew the pairing token."""

    token_regenerated = QtCore.Signal(str)

    def __init__(self, session: DesktopSession, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.original = session.settings
        self.regenerating: asyncio.Future[str] | None = None
        self.setWindowTitle("Settings — NovelGen Desktop")
        current = session.settings

        # --- output -------------------------------------------------------------------------
        self.output_dir = QtWidgets.QLineEdit(current.output_dir)
        self.output_dir.setPlaceholderText(str(session.paths.default_output_dir))
        self.browse_button = QtWidgets.QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse)
        folder_row = QtWidgets.QHBoxLayout()
        folder_row.addWidget(self.output_dir, 1)
        folder_row.addWidget(self.browse_button)
        self.naming_template = QtWidgets.QLineEdit(current.naming_template)
        self.template_note = QtWidgets.QLabel()
        self.template_note.setWordWrap(True)
        self.naming_template.textChanged.connect(self._check_template)
        # The style choices new jobs start from (the import dialog remembers the last ones).
        self.style_bible = QtWidgets.QLineEdit(current.style_bible)
        self.style_bible.setPlaceholderText("None: prompts are sent as written")
        self.style_bible.setClearButtonEnabled(True)
        self.style_browse_button = QtWidgets.QPushButton("Browse…")
        self.style_browse_button.clicked.connect(self.browse_bible)
        bible_row = QtWidgets.QHBoxLayout()
        bible_row.addWidget(self.style_bible, 1)
        bible_row.addWidget(self.style_browse_button)
        self.chat_strategy = QtWidgets.QComboBox()
        for strategy, label in (
            (ChatStrategy.PANEL, "New chat per panel"),
            (ChatStrategy.PAGE, "One chat per page"),
            (ChatStrategy.CHAPTER, "One chat per chapter"),
        ):
            self.chat_strategy.addItem(label, strategy.value)
        self.chat_strategy.setCurrentIndex(
            max(0, self.chat_strategy.findData(current.chat_strategy))
        )
        self.max_chat_turns = QtWidgets.QSpinBox()
        self.max_chat_turns.setRange(1, MAX_CHAT_TURNS)
        self.max_chat_turns.setValue(current.max_chat_turns)
        self.max_chat_turns.setSuffix(" messages")
        output = QtWidgets.QFormLayout()
        output.addRow("Output folder:", folder_row)
        output.addRow("File names:", self.naming_template)
        output.addRow("", self.template_note)
        output.addRow("Style bible:", bible_row)
        output.addRow("Chats:", self.chat_strategy)
        output.addRow("New chat after:", self.max_chat_turns)

        # --- work -------------------------------------------------------------------------
        self.default_workers = QtWidgets.QSpinBox()
        self.default_workers.setRange(1, 10)
        self.default_workers.setValue(current.default_workers)
        self.default_workers.setSuffix(" tab(s)")
        self.checkpoint_interval = QtWidgets.QSpinBox()
        self.checkpoint_interval.setRange(1, 100_000)
        self.checkpoint_interval.setValue(current.checkpoint_interval)
        self.checkpoint_interval.setSuffix(" images")
        self.memory_pause = _percent_box(current.memory_pause_percent)
        self.memory_resume = _percent_box(current.memory_resume_percent)
        self.memory_critical = _percent_box(current.memory_critical_percent)
        self.memory_governor = QtWidgets.QCheckBox(
            "Hold dispatch back and free memory when it runs short"
        )
        self.memory_governor.setChecked(current.memory_governor)
        self.memory_note = QtWidgets.QLabel()
        self.memory_note.setWordWrap(True)
        self.memory_pause.valueChanged.connect(self._check_memory)
        self.memory_resume.valueChanged.connect(self._check_memory)
        self.memory_critical.valueChanged.connect(self._check_memory)
        work = QtWidgets.QFormLayout()
        work.addRow("Tabs per browser:", self.default_workers)
        work.addRow("Snapshot every:", self.checkpoint_interval)
        work.addRow("Pause dispatch at memory:", self.memory_pause)
        work.addRow("Resume dispatch below:", self.memory_resume)
        work.addRow("Call back unsent prompts at:", self.memory_critical)
        work.addRow("", self.memory_governor)
        work.addRow("", self.memory_note)

        # --- hub and demo -------------------------------------------------------------------
        self.hub_port = QtWidgets.QSpinBox()
        self.hub_port.setRange(0, 65535)
        self.hub_port.setValue(current.hub_port)
        self.hub_port.setSpecialValueText("any free port")
        self.simulate = QtWidgets.QCheckBox("Demo mode: simulated tabs instead of ChatGPT")
        self.simulate.setChecked(current.simulate)
        self.sim_latency = QtWidgets.QDoubleSpinBox()
        self.sim_latency.setRange(0.0, 600.0)
        self.sim_latency.setDecimals(2)
        self.sim_latency.setSingleStep(0.25)
        self.sim_latency.setSuffix(" s per image")
        self.sim_latency.setValue(current.sim_latency)
        self.simulate.toggled.connect(self.sim_latency.setEnabled)
        self.sim_latency.setEnabled(current.simulate)
        self.minimize_to_tray = QtWidgets.QCheckBox(
            "Closing the window while a job runs keeps it running in the tray"
        )
        self.minimize_to_tray.setChecked(current.minimize_to_tray)
        self.notifications = QtWidgets.QCheckBox(
            "Notify when a job ends, a tab needs a login, tabs cool down or memory is short"
        )
        self.notifications.setChecked(current.notifications)
        self.restart_note = QtWidgets.QLabel()
        self.restart_note.setWordWrap(True)
        self.restart_note.setStyleSheet(_NOTE_STYLE)
        self.hub_port.valueChanged.connect(self._note_restart)
        self.simulate.toggled.connect(self._note_restart)
        app = QtWidgets.QFormLayout()
        app.addRow("Hub port:", self.hub_port)
        app.addRow("", self.simulate)
        app.addRow("Simulated speed:", self.sim_latency)
        app.addRow("", self.minimize_to_tray)
        app.addRow("", self.notifications)
        app.addRow("", self.restart_note)

        # --- pairing ------------------------------------------------------------------------
        self.token_field = QtWidgets.QLineEdit(session.token)
        self.token_field.setReadOnly(True)
        self.token_field.setEchoMode(QtWidgets.QLineEdit.EchoMode.Password)
        self.show_token = QtWidgets.QCheckBox("Show")
        self.show_token.toggled.connect(self._show_token)
        self.copy_link_button = QtWidgets.QPushButton("Copy pairing link")
        self.copy_link_button.clicked.connect(self.copy_pairing_link)
        self.regenerate_button = QtWidgets.QPushButton("Regenerate token…")
        self.regenerate_button.clicked.connect(self.regenerate_token)
        self.pairing_note = QtWidgets.QLabel(
            "Open the link in the Chrome profile that has the NovelGen extension: it fills in "
            f"the hub ({session.hub_url if session.port else 'not listening'}) and the token."
        )
        self.pairing_note.setWordWrap(True)
        self.pairing_note.setStyleSheet(_NOTE_STYLE)
        token_row = QtWidgets.QHBoxLayout()
        token_row.addWidget(self.token_field, 1)
        token_row.addWidget(self.show_token)
        pairing_buttons = QtWidgets.QHBoxLayout()
        pairing_buttons.addWidget(self.copy_link_button)
        pairing_buttons.addWidget(self.regenerate_button)
        pairing_buttons.addStretch(1)
        pairing = QtWidgets.QFormLayout()
        pairing.addRow("Token:", token_row)
        pairing.addRow("", pairing_buttons)
        pairing.addRow("", self.pairing_note)

        # --- the whole ----------------------------------------------------------------------
        self.error_label = QtWidgets.QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(_ERROR_STYLE)
        self.error_label.hide()
        self.buttons = QtWidgets.QDialogButtonBox(
            QtWidgets.QDialogButtonBox.StandardButton.Ok
            | QtWidgets.QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        for title, section in (
            ("Output", output),
            ("Work", work),
            ("App", app),
            ("Pairing with the browser extension", pairing),
        ):
            box = QtWidgets.QGroupBox(title)
            box.setLayout(section)
            layout.addWidget(box)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self._check_template()
        self._check_memory()
        self._note_restart()

    # --- live checks --------------------------------------------------------------------------

    def template_problem(self) -> str | None:
        try:
            NamingTemplate(self.naming_template.text())
        except TemplateError as exc:
            return f"This template cannot be used: {exc}"
        return None

    def memory_problem(self) -> str | None:
        pause, resume = self.memory_pause.value(), self.memory_resume.value()
        critical = self.memory_critical.value()
        if resume >= pause:
            return (
                f"Resume ({resume:g} %) must be below pause ({pause:g} %): otherwise dispatch "
                "would stop and start again on every memory sample."
            )
        if critical <= pause:
            return (
                f"Calling back unsent prompts ({critical:g} %) must come above the pause "
                f"threshold ({pause:g} %)."
            )
        return None

    def _check_template(self) -> None:
        problem = self.template_problem()
        if problem is None:
            example = NamingTemplate(self.naming_template.text()).render(SAMPLE).as_posix()
            self.template_note.setText(f"For example: {example}")
            self.template_note.setStyleSheet(_NOTE_STYLE)
        else:
            self.template_note.setText(problem)
            self.template_note.setStyleSheet(_ERROR_STYLE)
        self._update_ok()

    def _check_memory(self) -> None:
        """Always a line of text (an explanation or the problem): a note that appears and
        disappears would make the dialog jump as the author types."""
        problem = self.memory_problem()
        if problem is None:
            self.memory_note.setText(
                f"New images stop while memory use is above {self.memory_pause.value():g} % "
                f"and start again below {self.memory_resume.value():g} %."
            )
            self.memory_note.setStyleSheet(_NOTE_STYLE)
        else:
            self.memory_note.setText(problem)
            self.memory_note.setStyleSheet(_ERROR_STYLE)
        self._update_ok()

    def _update_ok(self) -> None:
        """OK stays clickable (it explains itself); its tooltip says what is wrong."""
        button = self.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)
        problems = [p for p in (self.template_problem(), self.memory_problem()) if p]
        button.setToolTip("\n".join(problems))
        self._grow_to_fit()

    def _grow_to_fit(self) -> None:
        """A note that wraps onto another line needs height the dialog may not have (Qt
        does not grow a window for its labels' word wrap): grow, never shrink."""
        layout = self.layout()
        if layout is None:
            return
        layout.activate()
        wanted = layout.totalHeightForWidth(self.width())
        if wanted > self.height():
            self.resize(self.width(), wanted)

    def restart_needed(self) -> list[str]:
        """What the edited settings change that only takes effect after a restart."""
        edited = self.settings()
        return [
            label
            for name, label in RESTART_FIELDS.items()
            if getattr(edited, name) != getattr(self.original, name)
        ]

    def _note_restart(self) -> None:
        changed = self.restart_needed()
        if changed:
            self.restart_note.setText(
                f"Takes effect the next time NovelGen starts: {', '.join(changed)}."
            )
        else:
            self.restart_note.setText(
                "The hub port and demo mode take effect the next time NovelGen starts."
            )
        self._grow_to_fit()

    # --- the settings ---------------------------------------------------------------------

    def settings(self) -> DesktopSettings:
        """The settings as edited (after OK: as saved)."""
        values: dict[str, Any] = {
            "output_dir": self.output_dir.text().strip(),
            "naming_template": self.naming_template.text(),
            "default_workers": self.default_workers.value(),
            "memory_pause_percent": self.memory_pause.value(),
            "memory_resume_percent": self.memory_resume.value(),
            "memory_critical_percent": self.memory_critical.value(),
            "memory_governor": self.memory_governor.isChecked(),
            "checkpoint_interval": self.checkpoint_interval.value(),
            "hub_port": self.hub_port.value(),
            "simulate": self.simulate.isChecked(),
            "sim_latency": self.sim_latency.value(),
            "minimize_to_tray": self.minimize_to_tray.isChecked(),
            "notifications": self.notifications.isChecked(),
            "style_bible": self.style_bible.text().strip(),
            "chat_strategy": str(self.chat_strategy.currentData()),
            "max_chat_turns": self.max_chat_turns.value(),
        }
        missing = {f.name for f in fields(DesktopSettings)} - set(values)
        assert not missing, f"the dialog does not edit {missing}"
        return DesktopSettings(**values)

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))
        self._grow_to_fit()

    def accept(self) -> None:
        """Validate and save; on a problem say what, keep the dialog open and every value."""
        problem = self.template_problem() or self.memory_problem()
        if problem is not None:
            self.show_error(problem)
            return
        edited = self.settings()
        try:
            edited.validate()
            save_settings(self.session.paths, edited)
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        except OSError as exc:
            self.show_error(f"Could not save the settings: {exc.strerror or exc}")
            return
        self.show_error("")
        super().accept()

    # --- output folder --------------------------------------------------------------------

    def choose_folder(self) -> str:
        """Ask for a folder ("" when cancelled; tests replace this)."""
        start = self.output_dir.text() or str(self.session.paths.default_output_dir)
        return QtWidgets.QFileDialog.getExistingDirectory(self, "Output folder", start)

    def browse(self) -> None:
        chosen = self.choose_folder()
        if chosen:
            self.output_dir.setText(str(Path(chosen)))

    def choose_bible(self) -> str:
        """Ask for a style bible file ("" when cancelled; tests replace this)."""
        start = self.style_bible.text() or str(Path.home())
        chosen, _filter = QtWidgets.QFileDialog.getOpenFileName(
            self, "Style bible", start, "Style bibles (*.toml);;All files (*)"
        )
        return chosen

    def browse_bible(self) -> None:
        chosen = self.choose_bible()
        if chosen:
            self.style_bible.setText(str(Path(chosen)))

    # --- pairing --------------------------------------------------------------------------

    def _show_token(self, shown: bool) -> None:
        self.token_field.setEchoMode(
            QtWidgets.QLineEdit.EchoMode.Normal if shown else QtWidgets.QLineEdit.EchoMode.Password
        )

    def copy_pairing_link(self) -> None:
        QtGui.QGuiApplication.clipboard().setText(self.session.pairing_link())
        self.pairing_note.setText("Pairing link copied: paste it into the extension's Chrome.")

    def confirm_regenerate_token(self) -> bool:
        """Ask first: every paired browser must pair again (tests replace this)."""
        answer = QtWidgets.QMessageBox.question(
            self,
            "Regenerate the pairing token?",
            "Every connected browser is disconnected and must be paired again with the new "
            "link. Do this if the token may have leaked.",
        )
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def regenerate_token(self) -> None:
        if not self.confirm_regenerate_token():
            return
        self.regenerate_button.setEnabled(False)
        self.regenerating = asyncio.ensure_future(self.session.regenerate_token())
        self.regenerating.add_done_callback(self._token_done)

    def _token_done(self, future: asyncio.Future[str]) -> None:
        with contextlib.suppress(RuntimeError):  # the dialog may be gone by now
            self.regenerate_button.setEnabled(True)
            if future.cancelled():
                return
            error = future.exception()
            if error is not None:
                self.show_error(f"Could not regenerate the token: {error}")
                return
            token = future.result()
            self.token_field.setText(token)
            self.show_token.setChecked(True)  # the author asked for it: show what changed
            self.pairing_note.setText(
                "New token in use: the old one no longer works. Pair each browser again "
                "with Copy pairing link."
            )
            self.token_regenerated.emit(token)


def _percent_box(value: float) -> QtWidgets.QDoubleSpinBox:
    box = QtWidgets.QDoubleSpinBox()
    box.setRange(10.0, 99.0)
    box.setDecimals(1)
    box.setSuffix(" %")
    box.setValue(value)
    box.setAlignment(Qt.AlignmentFlag.AlignRight)
    return box


__all__ = ["RESTART_FIELDS", "SettingsDialog"]
