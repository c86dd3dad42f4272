"""From a drop to a job: what the drop keeps, what the preview shows (errors with file:line
block "Create job"), and what "Create job" makes in the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.engine.model import JobState
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.import_dialog import (
    NODE_CAP,
    ImportPreviewDialog,
    open_import,
    paths_from_mime,
    scan_mime,
    scan_paths,
)
from novelgen_desktop.gui.jobs_view import JobsView
from novelgen_desktop.gui.qt import Qt, QtCore, QtGui, QtWidgets

# The dialog is shown, and the offscreen platform warns about every shown window.
pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")

GOOD_CSV = (
    "prompt,chapter,page,panel,style\n"
    "Wide shot of the lighthouse at dusk,1,1,1,\n"
    "Maren climbs the stairs,1,1,2,\n"
    "Close on the keeper's hands,1,2,1,pencil\n"
    "The harbour at dawn,2,1,1,\n"
)
BROKEN_CSV = "prompt,page\nA fox at the door,1\nA whale in the bay,x\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def mime_for(*paths: Path) -> QtCore.QMimeData:
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def tree_children(item: QtWidgets.QTreeWidgetItem) -> list[QtWidgets.QTreeWidgetItem]:
    return [c for c in (item.child(i) for i in range(item.childCount())) if c is not None]


def top_items(dialog: ImportPreviewDialog) -> list[QtWidgets.QTreeWidgetItem]:
    tree = dialog.tree
    items = (tree.topLevelItem(i) for i in range(tree.topLevelItemCount()))
    return [item for item in items if item is not None]


def preview(bridge: EngineBridge, run: Any, paths: list[str]) -> ImportPreviewDialog:
    dialog: ImportPreviewDialog = run(open_import(bridge, paths))
    return dialog


def test_a_drop_keeps_prompt_files_and_reports_the_rest(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, tmp_path: Path
) -> None:
    script = tmp_path / "script.csv"
    script.write_text(GOOD_CSV, encoding="utf-8")
    image = tmp_path / "cover.png"
    image.write_bytes(PNG_BYTES)
    view = JobsView(bridge)
    qtbot.addWidget(view)
    dropped: list[list[str]] = []
    failures: list[tuple[str, str]] = []
    view.files_dropped.connect(dropped.append)
    bridge.failed.connect(lambda what, message: failures.append((what, message)))

    text_only = QtCore.QMimeData()
    text_only.setText("not a file")
    refused = QtGui.QDragEnterEvent(
        QtCore.QPoint(10, 10),
        Qt.DropAction.CopyAction,
        text_only,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QtWidgets.QApplication.sendEvent(view, refused)
    assert not refused.isAccepted()

    mime = mime_for(script, image)
    mime.setUrls([*mime.urls(), QtCore.QUrl("https://example.com/script.txt")])
    # as a real drag does: the drop goes to the widget that accepted the drag's entry
    enter = QtGui.QDragEnterEvent(
        QtCore.QPoint(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QtWidgets.QApplication.sendEvent(view, enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(
        QtCore.QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QtWidgets.QApplication.sendEvent(view, drop)
    assert drop.isAccepted()
    assert dropped == [[str(script)]]
    assert len(failures) == 1
    what, message = failures[0]
    assert what == "import the dropped files"
    assert f"{image}: not a prompt file: it is a PNG image" in message
    assert "https://example.com/script.txt: only files on this computer" in message


def test_a_dropped_folder_becomes_the_prompt_files_inside_it(tmp_path: Path) -> None:
    folder = tmp_path / "book"
    (folder / "part-2").mkdir(parents=True)
    (folder / "a.txt").write_text("a fox\n", encoding="utf-8")
    (folder / "part-2" / "b.md").write_text("# Chapter 2\n", encoding="utf-8")
    (folder / "notes.docx").write_bytes(b"PK\x03\x04rest")
    (folder / ".hidden.txt").write_text("secret\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    odd = tmp_path / "script.prompts"  # an unknown extension dropped on its own: text, kept
    odd.write_text("a whale\n", encoding="utf-8")
    assert paths_from_mime(mime_for(folder)) == [
        str(folder / "a.txt"),
        str(folder / "part-2" / "b.md"),
    ]
    scanned = scan_mime(mime_for(folder, tmp_path / "empty", odd, tmp_path / "gone.txt"))
    assert scanned.paths == [str(folder / "a.txt"), str(folder / "part-2" / "b.md"), str(odd)]
    assert scanned.rejected == [
        f"{folder}: 1 other file left out (not prompt files: .txt, .csv, .tsv, .json, .jsonl, "
        ".md, .script, .fountain)",
        f"{tmp_path / 'empty'}: no prompt files inside (.txt, .csv, .tsv, .json, .jsonl, .md, "
        ".script, .fountain)",
        f"{tmp_path / 'gone.txt'}: file not found",
    ]
    docx = scan_paths([str(folder / "notes.docx")])
    assert docx.paths == []
    assert "a .docx/.xlsx/.odt document" in docx.rejected[0]


def test_a_broken_file_shows_its_errors_with_file_and_line_and_blocks_create(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, run: Any, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    good.write_text(GOOD_CSV, encoding="utf-8")
    broken = tmp_path / "broken.csv"
    broken.write_text(BROKEN_CSV, encoding="utf-8")
    dialog = preview(bridge, run, [str(good), str(broken)])
    qtbot.addWidget(dialog)
    assert dialog.isVisible()
    assert not dialog.create_button.isEnabled()
    assert (
        f"error {broken}:3: field 'page': expected a positive integer, got 'x'"
        in dialog.problem_lines()
    )
    reason = dialog.message.text()
    assert f"1 error in the prompt files (the first at {broken}:3" in reason
    assert "a job cannot be created until they read cleanly" in reason
    assert dialog.tabs.currentWidget() is dialog.problems
    assert dialog.tabs.tabText(2) == "Problems (1)"
    # the files tab says what each file was read as
    files = [dialog.files.topLevelItem(i) for i in range(dialog.files.topLevelItemCount())]
    assert [(f.text(0), f.text(1), f.text(2), f.text(3)) for f in files if f is not None] == [
        (str(good), "csv", "4", "0"),
        (str(broken), "csv", "1", "1"),
    ]
    dialog.create_job()  # even when asked directly, nothing is created
    run(bridge.settle())
    assert run(session.service.list_jobs()) == []


def test_the_preview_shows_chapters_pages_and_panels(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, run: Any, tmp_path: Path
) -> None:
    good = tmp_path / "lighthouse.csv"
    good.write_text(GOOD_CSV, encoding="utf-8")
    dialog = preview(bridge, run, [str(good)])
    qtbot.addWidget(dialog)
    assert dialog.summary.text() == "4 prompts in 1 file"
    chapters = top_items(dialog)
    assert [(c.text(0), c.text(1)) for c in chapters] == [("Chapter 1", "3"), ("Chapter 2", "1")]
    # the first chapter and its first page are open; the others fill in when opened
    pages = tree_children(chapters[0])
    assert [(p.text(0), p.text(1)) for p in pages] == [("Page 1", "2"), ("Page 2", "1")]
    panels = tree_children(pages[0])
    assert [(p.text(0), p.text(2), p.text(3)) for p in panels] == [
        ("Panel 1", "Wide shot of the lighthouse at dusk", f"{good}:2"),
        ("Panel 2", "Maren climbs the stairs", f"{good}:3"),
    ]
    assert tree_children(chapters[1]) == []
    dialog.tree.expandItem(chapters[1])
    assert [p.text(0) for p in tree_children(chapters[1])] == ["Page 1"]
    assert dialog.create_button.isEnabled()
    assert dialog.name_edit.text() == "lighthouse"
    assert dialog.template_status.text() == "First image: 1/001-01.png"


def test_create_makes_the_job_with_the_chosen_name_folder_and_settings(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, run: Any, tmp_path: Path
) -> None:
    good = tmp_path / "lighthouse.csv"
    good.write_text(GOOD_CSV, encoding="utf-8")
    dialog = preview(bridge, run, [str(good)])  # it deletes itself once the job exists
    created: list[str] = []
    results: list[int] = []
    dialog.job_created.connect(created.append)
    dialog.finished.connect(results.append)
    out = tmp_path / "my images"
    dialog.name_edit.setText("The Lighthouse Keeper")
    dialog.folder_edit.setText(str(out))
    dialog.priority_spin.setValue(5)
    dialog.workers_spin.setValue(4)
    dialog.style_edit.setText("ink and watercolour")
    dialog.create_button.click()
    run(bridge.settle())

    assert len(created) == 1
    job_id = created[0]
    assert results == [QtWidgets.QDialog.DialogCode.Accepted]
    views = run(session.service.list_jobs())
    assert [(v.job_id, v.name, v.total, v.state) for v in views] == [
        (job_id, "The Lighthouse Keeper", 4, JobState.RUNNING)
    ]
    job = run(session.service.find_job(job_id))
    assert Path(job.out_dir).parent == out
    assert job.settings["priority"] == 5
    assert session.browser_tab_count() == 4
    assert bridge.selected_job == job_id
    styles = [task.style for task in session.service.store.load_tasks(job_id)]
    assert styles == ["ink and watercolour", "ink and watercolour", "pencil", "ink and watercolour"]


def test_a_bad_naming_template_is_refused_with_a_clear_message(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, run: Any, tmp_path: Path
) -> None:
    good = tmp_path / "lighthouse.csv"
    good.write_text(GOOD_CSV, encoding="utf-8")
    dialog = preview(bridge, run, [str(good)])
    qtbot.addWidget(dialog)
    dialog.template_edit.setText("{chapter}/{colour}.png")
    assert not dialog.create_button.isEnabled()
    assert dialog.message.text().startswith("Naming template '{chapter}/{colour}.png': ")
    assert "colour" in dialog.template_status.text()
    dialog.create_job()
    run(bridge.settle())
    assert run(session.service.list_jobs()) == []

    dialog.template_edit.setText("{chapter}/{page:02d}-{panel}.png")
    assert dialog.create_button.isEnabled()
    assert dialog.template_status.text() == "First image: 1/01-1.png"
    assert dialog.message.text() == ""


def test_an_output_folder_in_the_way_of_a_file_is_refused_before_create(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, run: Any, tmp_path: Path
) -> None:
    good = tmp_path / "lighthouse.csv"
    good.write_text(GOOD_CSV, encoding="utf-8")
    a_file = tmp_path / "taken"
    a_file.write_text("a file where the folder should go", encoding="utf-8")
    dialog = preview(bridge, run, [str(good)])
    qtbot.addWidget(dialog)
    dialog.folder_edit.setText(str(a_file))
    assert not dialog.create_button.isEnabled()
    assert dialog.message.text() == f"Output folder {a_file} is a file."
    dialog.folder_edit.setText(str(a_file / "images"))
    assert dialog.message.text() == (
        f"Output folder {a_file / 'images'} cannot be created: {a_file} is a file."
    )
    dialog.folder_edit.setText(str(tmp_path / "new" / "images"))  # created with the job
    assert dialog.create_button.isEnabled()


def test_a_refused_create_keeps_what_the_author_typed(
    qtbot: Any,
    session: DesktopSession,
    bridge: EngineBridge,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = tmp_path / "lighthouse.csv"
    good.write_text(GOOD_CSV, encoding="utf-8")
    dialog = preview(bridge, run, [str(good)])
    qtbot.addWidget(dialog)
    real_create = session.create_job

    async def refuse(*args: Any, **kwargs: Any) -> str:
        raise ConfigError("cannot create the output folder under /media/usb: disk full")

    monkeypatch.setattr(session, "create_job", refuse)
    dialog.name_edit.setText("Keeper")
    dialog.folder_edit.setText(str(tmp_path / "images"))
    dialog.style_edit.setText("charcoal")
    dialog.create_button.click()
    run(bridge.settle())
    assert dialog.isVisible()
    assert dialog.message.text() == (
        "The job was not created: cannot create the output folder under /media/usb: disk full"
    )
    assert dialog.name_edit.text() == "Keeper"
    assert dialog.folder_edit.text() == str(tmp_path / "images")
    assert dialog.style_edit.text() == "charcoal"
    assert dialog.create_button.isEnabled()
    assert run(session.service.list_jobs()) == []

    monkeypatch.setattr(session, "create_job", real_create)
    dialog.name_edit.setText("Keeper 2")  # editing clears the old message
    assert dialog.message.text() == ""
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)  # qtbot closes it
    dialog.create_button.click()
    run(bridge.settle())
    assert [v.name for v in run(session.service.list_jobs())] == ["Keeper 2"]


def test_a_ten_thousand_prompt_list_opens_with_capped_nodes(
    qtbot: Any, session: DesktopSession, bridge: EngineBridge, run: Any, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_text("".join(f"prompt {i}\n" for i in range(10_000)), encoding="utf-8")
    dialog = preview(bridge, run, [str(big)])
    qtbot.addWidget(dialog)
    assert dialog.summary.text() == "10,000 prompts in 1 file"
    [chapter] = top_items(dialog)
    assert (chapter.text(0), chapter.text(1)) == ("(no chapter)", "10,000")
    [page] = tree_children(chapter)
    leaves = tree_children(page)
    assert len(leaves) == NODE_CAP + 1
    assert leaves[0].text(0) == "Prompt 1" and leaves[0].text(2) == "prompt 0"
    assert leaves[-1].text(0) == f"… {10_000 - NODE_CAP:,} more panels not shown"
    assert dialog.create_button.isEnabled()
