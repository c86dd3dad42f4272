"""The style bible editor as the author uses it: open a bible, read its problems (each with
its line, a click away), see what it composes, and never lose the text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.gui.qt import Qt, QtCore, QtWidgets
from novelgen_desktop.gui.style_editor import (
    TEMPLATE,
    StyleEditor,
    check_bible,
    issue_text,
    open_editors,
)
from novelgen_desktop.prompts.loader import load_prompt_files
from novelgen_desktop.style import (
    Composer,
    PanelInput,
    StyleBibleError,
    load_style_bible,
    parse_style_bible,
)
from novelgen_desktop.style.composer import panel_of
from tests.gui.style_util import BIBLE, line_of, write_bible, write_script

# The editor is shown, and the offscreen platform warns about every shown window.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

BROKEN = BIBLE.replace(
    'palette = "cold slate and teal"\n', 'palette = "cold slate and teal"\ncolour = "red"\n'
).replace('references = ["refs/maren.png"]', 'references = ["refs/missing.png"]')


def editor_for(qtbot: Any, path: Path | None = None, **kwargs: Any) -> StyleEditor:
    editor = StyleEditor(path=path, **kwargs)
    qtbot.addWidget(editor)
    editor.show()
    editor.wait_checked()
    return editor


def click_issue(qtbot: Any, editor: StyleEditor, row: int) -> None:
    """A real mouse click on the issue's row."""
    item = editor.issue_list.item(row)
    editor.issue_list.scrollToItem(item)
    rect = editor.issue_list.visualItemRect(item)
    qtbot.mouseClick(editor.issue_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_a_valid_bible_reads_cleanly_and_its_summary_shows_the_cast(
    qtbot: Any, tmp_path: Path
) -> None:
    path = write_bible(tmp_path)
    editor = editor_for(qtbot, path)
    bible = load_style_bible(path)
    assert editor.text() == BIBLE
    assert not editor.modified
    assert editor.windowTitle() == "bible.toml[*] — Style bible"
    assert editor.issues == [] and editor.issue_lines() == []
    assert editor.issue_title.text() == "Problems: none"
    assert editor.bible is not None and editor.bible.version == bible.version
    assert editor.check_status.text() == (
        f"Reads cleanly: Lighthouse, version {bible.version} · 4 entries"
    )
    size = (tmp_path / "refs" / "maren.png").stat().st_size
    assert editor.summary_lines() == [
        "Name: Lighthouse",
        f"Version: {bible.version}",
        "Limits: 4,000 characters a prompt · 4 reference images a panel",
        "Style: 2 fields",
        "  medium: ink and watercolour graphic-novel panel",
        "  palette: cold slate and teal",
        "  avoid: text or lettering, speech balloons",
        "Characters: 2",
        "  Maren: aka Mar · a tall woman of 40 in a red wool coat. Grey braid.",
        f"    : maren.png · 16×16 · {size} bytes",
        "  Old Tobias: aka Tobias · the last keeper, 70, white beard, scarred hands",
        "Locations: 1",
        "  Lamp room: the glass lantern room at the top of the tower",
        "Props: 1",
        "  Storm lantern: a dented tin storm lantern",
        "Chapter overrides: 1",
        "  chapter 2: Maren's sheet",
    ]
    # the reference image is drawn as a thumbnail, beside the character and on its own row
    characters = editor.summary.topLevelItem(4)
    assert characters is not None
    maren = characters.child(0)
    assert maren is not None and maren.child(0) is not None
    assert not maren.icon(0).isNull()
    thumbnail = maren.child(0).icon(0).pixmap(48, 48).toImage()
    assert thumbnail.pixelColor(8, 8).name() == "#c0392b"
    # an entry of the summary goes to its definition
    editor.summary.itemDoubleClicked.emit(characters.child(1), 0)
    assert editor.editor.cursor_line() == line_of(BIBLE, '[characters."Old Tobias"]')


def test_an_invalid_bible_lists_every_issue_with_its_line_and_a_click_goes_there(
    qtbot: Any, tmp_path: Path
) -> None:
    path = write_bible(tmp_path, BROKEN)
    editor = editor_for(qtbot, path)
    with pytest.raises(StyleBibleError) as raised:
        load_style_bible(path)
    expected = [issue_text(issue) for issue in raised.value.issues]
    colour = line_of(BROKEN, "colour =")
    missing = line_of(BROKEN, "missing.png")
    assert editor.issue_lines() == expected
    assert [line.split(": ")[:2] for line in expected] == [
        [str(colour), "style.colour"],
        [str(missing), "characters.Maren.references[0]"],
    ]
    assert "unknown key 'colour' in [style]" in expected[0]
    assert "reference image 'refs/missing.png' not found" in expected[1]
    assert editor.issue_title.text() == "Problems (2)"
    assert editor.check_status.text() == "2 errors: a job cannot use this bible yet"
    assert editor.editor.marked_lines == {colour, missing}
    assert editor.bible is None
    assert editor.text() == BROKEN  # nothing the author wrote is touched

    click_issue(qtbot, editor, 1)
    assert editor.editor.cursor_line() == missing
    click_issue(qtbot, editor, 0)
    assert editor.editor.cursor_line() == colour

    # the preview says why it cannot compose rather than showing a stale prompt
    editor.set_test_description("Maren climbs the stairs")
    assert editor.composed is None
    assert editor.prompt_view.toPlainText() == ""
    assert editor.preview_error.text() == (
        "The bible has 2 errors (see Problems): no prompt can be composed until it reads cleanly."
    )


def test_a_toml_syntax_error_names_its_line_and_column(qtbot: Any, tmp_path: Path) -> None:
    text = BIBLE.replace('version = "3"', 'version = "3')
    editor = editor_for(qtbot, write_bible(tmp_path, text))
    [line] = editor.issue_lines()
    number = line_of(text, 'version = "3')
    assert line.startswith(f"{number}:")
    assert ": not valid TOML: " in line
    column = int(line.split(":")[1])
    click_issue(qtbot, editor, 0)
    cursor = editor.editor.textCursor()
    assert (cursor.blockNumber() + 1, cursor.positionInBlock() + 1) == (number, column)


def test_typing_is_checked_after_a_pause_and_an_error_keeps_the_text(
    qtbot: Any, tmp_path: Path
) -> None:
    editor = editor_for(qtbot, write_bible(tmp_path))
    version = editor.bible.version if editor.bible else None
    cursor = editor.editor.textCursor()
    cursor.movePosition(cursor.MoveOperation.End)
    editor.editor.setTextCursor(cursor)
    qtbot.keyClicks(editor.editor, "mood = 1")
    qtbot.keyClick(editor.editor, Qt.Key.Key_Return)
    assert editor.modified
    assert editor.windowTitle() == "bible.toml[*] — Style bible"
    assert editor.checking
    qtbot.wait(100)  # still typing, as far as the editor knows: nothing checked yet
    assert editor.issues == [] and editor.check_status.text() == "Checking…"
    with qtbot.waitSignal(editor.validated, timeout=5000):
        pass
    assert not editor.checking
    [issue] = editor.issue_lines()
    # the table of the last chapter override gets the stray key
    assert issue.startswith(f"{line_of(editor.text(), 'mood =')}: chapters.2.characters.Maren")
    assert editor.text().endswith("mood = 1\n")
    # the summary keeps the bible as it last read, under the error
    assert editor.summary_lines()[:2] == [
        "Not readable: 1 error: see Problems; below, the bible as it last read cleanly",
        "Name: Lighthouse",
    ]

    for _ in range(len("mood = 1\n")):
        qtbot.keyClick(editor.editor, Qt.Key.Key_Backspace)
    with qtbot.waitSignal(editor.validated, timeout=5000):
        pass
    assert editor.issues == []
    assert editor.bible is not None and editor.bible.version == version  # same content
    assert editor.text() == BIBLE


def test_the_preview_shows_exactly_what_the_composer_makes(qtbot: Any, tmp_path: Path) -> None:
    path = write_bible(tmp_path)
    specs = load_prompt_files([str(write_script(tmp_path))]).specs
    editor = editor_for(qtbot, path, panels=specs)
    bible = load_style_bible(path)
    composer = Composer(bible)
    editor.side.setCurrentIndex(1)
    assert editor.panel_combo.count() == 1 + len(specs)
    assert editor.panel_combo.itemText(2) == "ch 1 · p 1 · panel 2 — Maren climbs to the lamp room"
    assert editor.current_panel() is specs[0]  # the first panel is shown at once

    for index, spec in enumerate(specs):
        editor.select_panel(index)
        expected = composer.compose(panel_of(spec))
        assert editor.composed == expected
        assert editor.prompt_view.toPlainText() == expected.text
        assert editor.length_bar.format() == f"{len(expected.text):,} / 4,000 characters"
        assert editor.length_bar.value() == len(expected.text)
        shown = editor.references_list
        names = [shown.item(i).text() for i in range(shown.count())]
        assert names == [ref.name for ref in expected.references]
        assert editor.description_edit.isReadOnly()

    # panel 4 of chapter 2: Maren's chapter sheet and her reference image
    editor.select_panel(3)
    assert "- Maren (reference image: maren.png): Maren with a bandaged left hand" in (
        editor.prompt_view.toPlainText()
    )
    assert editor.preview_facts.text().splitlines()[1:] == [
        "Characters: Maren, Old Tobias",
        "Setting: —",
        "Props: —",
    ]
    assert editor.references_title.text() == "Reference images attached (1 of at most 4)"

    # a test description, composed in its chapter
    editor.set_test_description("Mar carries the storm lantern up to the lamp room", "2")
    expected = composer.compose(
        PanelInput("Mar carries the storm lantern up to the lamp room", chapter="2")
    )
    assert not editor.description_edit.isReadOnly()
    assert editor.prompt_view.toPlainText() == expected.text
    assert expected.locations == ("Lamp room",) and expected.props == ("Storm lantern",)

    # a name the bible does not know: the composer's own message, nothing to send
    editor.set_test_description("@Marn waits on the rocks")
    assert editor.composed is None
    assert editor.prompt_view.toPlainText() == ""
    assert editor.preview_error.isVisible()
    assert editor.preview_error.text() == (
        "Cannot compose this panel: @Marn is not in style bible 'Lighthouse' "
        "(did you mean @Maren or @Mar?)"
    )


def test_the_preview_reports_what_was_trimmed_to_fit(qtbot: Any, tmp_path: Path) -> None:
    text = BIBLE.replace('version = "3"', 'version = "3"\nmax_prompt_chars = 300')
    editor = editor_for(qtbot, write_bible(tmp_path, text))
    bible = parse_style_bible(text, file="b.toml", base_dir=tmp_path)
    description = "Maren and Tobias carry the storm lantern into the lamp room at night"
    editor.set_test_description(description)
    expected = Composer(bible).compose(PanelInput(description))
    assert expected.trimmed  # the test is about cuts
    assert editor.prompt_view.toPlainText() == expected.text
    assert len(expected.text) <= 300
    assert editor.length_bar.format() == f"{len(expected.text)} / 300 characters"
    assert editor.trimmed_label.text() == "Trimmed to fit: " + "; ".join(expected.trimmed)


def test_closing_with_unsaved_changes_asks_and_cancel_keeps_everything(
    qtbot: Any, tmp_path: Path
) -> None:
    path = write_bible(tmp_path)
    editor = editor_for(qtbot, path)
    editor.editor.appendPlainText("# a note")
    assert editor.modified

    editor.close()
    assert editor.isVisible()
    box = editor.save_box
    assert box is not None and box.isVisible()
    assert box.text() == "bible.toml has unsaved changes."
    box.button(QtWidgets.QMessageBox.StandardButton.Cancel).click()
    assert editor.isVisible() and editor.modified
    assert editor.text().endswith("# a note")
    assert path.read_text(encoding="utf-8") == BIBLE

    editor.close()
    assert editor.save_box is not None
    editor.save_box.button(QtWidgets.QMessageBox.StandardButton.Discard).click()
    assert not editor.isVisible()
    assert path.read_text(encoding="utf-8") == BIBLE  # discarded: the file is as it was


def test_save_on_close_writes_the_file_and_says_so(qtbot: Any, tmp_path: Path) -> None:
    path = write_bible(tmp_path)
    editor = editor_for(qtbot, path)
    saved: list[str] = []
    editor.saved.connect(saved.append)
    editor.editor.appendPlainText("# a note")
    editor.close()
    assert editor.save_box is not None
    editor.save_box.button(QtWidgets.QMessageBox.StandardButton.Save).click()
    assert not editor.isVisible()
    assert path.read_text(encoding="utf-8") == BIBLE + "\n# a note"
    assert saved == [str(path)]
    assert not editor.modified


def test_a_bible_with_errors_is_saved_as_written(qtbot: Any, tmp_path: Path) -> None:
    editor = editor_for(qtbot, write_bible(tmp_path, BROKEN))
    target = tmp_path / "drafts" / "lighthouse.toml"
    saved: list[str] = []
    editor.saved.connect(saved.append)
    assert editor.save_as(target)
    assert target.read_text(encoding="utf-8") == BROKEN
    assert saved == [str(target)]
    assert editor.path == target
    assert editor.windowTitle() == "lighthouse.toml[*] — Style bible"
    # the references are looked for beside the new file now: one more error than before
    assert len(editor.issues) == 2
    assert editor.statusBar().currentMessage() == (
        f"Saved {target} with 2 errors: a job cannot use it until they are fixed"
    )
    # an unwritable place: the text stays, with the reason
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    editor.editor.appendPlainText("# more")
    assert not editor.save_to(blocker / "bible.toml")
    assert editor.modified and editor.text().endswith("# more")
    assert editor.last_warning.text().startswith(f"Could not save {blocker / 'bible.toml'}: ")
    editor.last_warning.close()
    editor.editor.document().setModified(False)


def test_new_from_template_reads_cleanly_and_asks_before_replacing_work(
    qtbot: Any, tmp_path: Path
) -> None:
    assert check_bible(TEMPLATE, "t.toml", tmp_path).issues == ()
    editor = editor_for(qtbot)
    assert editor.path is None and editor.text() == TEMPLATE
    assert editor.windowTitle() == "untitled.toml[*] — Style bible"
    assert editor.issues == [] and editor.bible is not None
    assert editor.bible.name == "My graphic novel"

    assert editor.load_file(write_bible(tmp_path))
    editor.editor.appendPlainText("# mine")
    editor.new_action.trigger()
    assert editor.save_box is not None and editor.text().endswith("# mine")
    editor.save_box.button(QtWidgets.QMessageBox.StandardButton.Discard).click()
    assert editor.text() == TEMPLATE and editor.path is None and not editor.modified


def test_a_file_that_cannot_be_read_keeps_the_text_shown(qtbot: Any, tmp_path: Path) -> None:
    path = write_bible(tmp_path)
    editor = editor_for(qtbot, path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("name = 'caf\xe9'".encode("latin-1"))
    assert not editor.load_file(bad)
    assert editor.text() == BIBLE and editor.path == path
    assert editor.last_warning.text() == f"Could not open {bad}: it is not UTF-8 text."
    editor.last_warning.close()


def test_a_script_opened_in_the_editor_offers_its_panels(qtbot: Any, tmp_path: Path) -> None:
    editor = editor_for(qtbot, write_bible(tmp_path))
    script = write_script(tmp_path)
    with qtbot.waitSignal(editor.panels_loaded, timeout=10000):
        editor.load_script([script])
    assert len(editor.panels) == 4
    assert editor.panels_status.text() == "4 panels from script.csv"
    assert editor.panel_combo.currentIndex() == 1
    assert editor.prompt_view.toPlainText().startswith("Wide shot of the lighthouse at dusk")


def test_every_editor_is_known_until_it_is_gone(qapp: Any, tmp_path: Path) -> None:
    editor = StyleEditor(path=write_bible(tmp_path))  # not qtbot's: it is deleted here
    editor.show()
    assert editor in open_editors()
    editor.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    editor.close()
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete)
    assert all(e is not editor for e in open_editors())
