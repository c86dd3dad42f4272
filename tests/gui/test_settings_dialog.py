"""The Settings dialog: edits reach the saved file; bad input is refused in the dialog with
the message shown and every typed value kept; the pairing token is hidden, shown, copied and
regenerated."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.desktop.settings import DesktopSettings, load_settings, settings_path
from novelgen_desktop.gui.qt import QtCore, QtGui, QtWidgets
from novelgen_desktop.gui.settings_dialog import SettingsDialog

Accepted = QtWidgets.QDialog.DialogCode.Accepted


@pytest.fixture
def dialogs(qtbot: Any, session: DesktopSession) -> Iterator[Any]:
    """Make dialogs; delete them here, on the GUI thread (not in whatever thread the garbage
    collector happens to run next)."""
    made: list[SettingsDialog] = []

    def make() -> SettingsDialog:
        dialog = SettingsDialog(session)
        qtbot.addWidget(dialog)
        made.append(dialog)
        return dialog

    yield make
    for dialog in made:
        dialog.deleteLater()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    gc.collect()


def test_every_field_is_edited_and_saved(
    dialogs: Any, session: DesktopSession, tmp_path: Path
) -> None:
    dialog = dialogs()
    assert dialog.settings() == session.settings  # opens on the current settings
    chosen = tmp_path / "images"
    dialog.choose_folder = lambda: str(chosen)  # type: ignore[method-assign]
    dialog.browse_button.click()
    assert dialog.output_dir.text() == str(chosen)
    dialog.naming_template.setText("{chapter}/{seq:04d}-{slug}.png")
    assert dialog.template_note.text() == "For example: 02/0007-a-lighthouse-at-dusk.png"
    dialog.default_workers.setValue(7)
    dialog.memory_pause.setValue(90)
    dialog.memory_resume.setValue(70)
    dialog.memory_critical.setValue(95)
    dialog.memory_governor.setChecked(False)
    dialog.checkpoint_interval.setValue(200)
    dialog.hub_port.setValue(9123)
    dialog.simulate.setChecked(True)
    assert dialog.sim_latency.isEnabled()
    dialog.sim_latency.setValue(0.75)
    dialog.minimize_to_tray.setChecked(False)
    dialog.notifications.setChecked(True)
    bible = tmp_path / "book.toml"
    dialog.choose_bible = lambda: str(bible)  # type: ignore[method-assign]
    dialog.style_browse_button.click()
    assert dialog.style_bible.text() == str(bible)
    dialog.chat_strategy.setCurrentIndex(dialog.chat_strategy.findData("chapter"))
    dialog.max_chat_turns.setValue(30)
    assert dialog.restart_needed() == ["the hub port", "demo mode (simulated tabs)"]
    assert "next time NovelGen starts: the hub port" in dialog.restart_note.text()

    dialog.accept()

    assert dialog.result() == Accepted
    expected = DesktopSettings(
        output_dir=str(chosen),
        naming_template="{chapter}/{seq:04d}-{slug}.png",
        default_workers=7,
        memory_pause_percent=90.0,
        memory_resume_percent=70.0,
        memory_critical_percent=95.0,
        memory_governor=False,
        checkpoint_interval=200,
        hub_port=9123,
        simulate=True,
        sim_latency=0.75,
        minimize_to_tray=False,
        notifications=True,
        style_bible=str(bible),
        chat_strategy="chapter",
        max_chat_turns=30,
    )
    assert dialog.settings() == expected
    saved, problems = load_settings(session.paths)
    assert (saved, problems) == (expected, [])
    assert json.loads(settings_path(session.paths).read_text())["hub_port"] == 9123


def test_a_bad_template_is_refused_in_place_and_nothing_is_lost(
    dialogs: Any, session: DesktopSession
) -> None:
    dialog = dialogs()
    dialog.default_workers.setValue(5)
    dialog.naming_template.setText("{chapter}/{nonsense}.png")
    assert "cannot be used" in dialog.template_note.text()
    assert "nonsense" in dialog.template_note.text()
    ok = dialog.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)
    assert "cannot be used" in ok.toolTip()

    ok.click()

    assert dialog.result() != Accepted
    assert not dialog.error_label.isHidden()
    assert "nonsense" in dialog.error_label.text()
    assert dialog.naming_template.text() == "{chapter}/{nonsense}.png"  # kept to fix
    assert dialog.default_workers.value() == 5
    assert not settings_path(session.paths).exists()

    dialog.naming_template.setText("{seq:05d}.png")  # fixed: now it saves
    ok.click()
    assert dialog.result() == Accepted
    assert load_settings(session.paths)[0].naming_template == "{seq:05d}.png"


def test_resume_must_stay_below_pause(dialogs: Any, session: DesktopSession) -> None:
    dialog = dialogs()
    assert dialog.memory_note.text() == (
        "New images stop while memory use is above 80 % and start again below 60 %."
    )
    dialog.memory_pause.setValue(60)
    dialog.memory_resume.setValue(70)
    assert "Resume (70 %) must be below pause (60 %)" in dialog.memory_note.text()

    dialog.accept()

    assert dialog.result() != Accepted
    assert "must be below pause" in dialog.error_label.text()
    assert (dialog.memory_pause.value(), dialog.memory_resume.value()) == (60, 70)
    assert not settings_path(session.paths).exists()
    dialog.memory_resume.setValue(50)
    assert "must be below" not in dialog.memory_note.text()
    dialog.accept()
    assert dialog.result() == Accepted


def test_a_save_that_fails_is_reported_in_the_dialog(dialogs: Any, session: DesktopSession) -> None:
    settings_path(session.paths).mkdir(parents=True)  # something in the way of the file
    dialog = dialogs()
    dialog.default_workers.setValue(4)
    dialog.accept()
    assert dialog.result() != Accepted
    assert dialog.error_label.text().startswith("Could not save the settings")
    assert dialog.default_workers.value() == 4


def test_pairing_token_hidden_shown_copied_and_regenerated(
    dialogs: Any, session: DesktopSession, run: Any
) -> None:
    dialog = dialogs()
    old = session.token
    assert dialog.token_field.text() == old
    assert dialog.token_field.echoMode() is QtWidgets.QLineEdit.EchoMode.Password
    dialog.show_token.setChecked(True)
    assert dialog.token_field.echoMode() is QtWidgets.QLineEdit.EchoMode.Normal
    dialog.show_token.setChecked(False)

    dialog.copy_link_button.click()
    link = QtGui.QGuiApplication.clipboard().text()
    assert link == session.pairing_link() and old in link and session.hub_url in link

    asked: list[bool] = []
    dialog.confirm_regenerate_token = lambda: bool(asked.append(True))  # type: ignore[method-assign]
    dialog.regenerate_button.click()
    assert asked == [True] and dialog.regenerating is None
    assert session.token == old

    dialog.confirm_regenerate_token = lambda: True  # type: ignore[method-assign]
    renewed: list[str] = []
    dialog.token_regenerated.connect(renewed.append)
    dialog.regenerate_button.click()
    assert not dialog.regenerate_button.isEnabled()
    assert dialog.regenerating is not None
    new = run(dialog.regenerating)

    assert new == session.token != old
    assert renewed == [new]
    assert dialog.token_field.text() == new
    assert dialog.token_field.echoMode() is QtWidgets.QLineEdit.EchoMode.Normal  # shown now
    assert dialog.regenerate_button.isEnabled()
    assert "no longer works" in dialog.pairing_note.text()
    dialog.copy_link_button.click()
    assert new in QtGui.QGuiApplication.clipboard().text()


def test_critical_must_stay_above_pause(dialogs: Any, session: DesktopSession) -> None:
    dialog = dialogs()
    dialog.memory_critical.setValue(75)
    assert "must come above the pause threshold (80 %)" in dialog.memory_note.text()
    dialog.accept()
    assert dialog.result() != Accepted
    assert not settings_path(session.paths).exists()
    dialog.memory_critical.setValue(92)
    dialog.accept()
    assert dialog.result() == Accepted
    assert load_settings(session.paths)[0].memory_critical_percent == 92
