"""The import dialog with a style bible: every panel composed as the engine will compose it,
compose errors blocking "Create job" with their file:line, the bible and the chat strategy
handed to the engine, and the style bible editor a click away."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from novelgen_desktop.desktop.session import DesktopSession
from novelgen_desktop.engine.model import ChatStrategy
from novelgen_desktop.gui.bridge import EngineBridge
from novelgen_desktop.gui.import_dialog import (
    CHECKING_STYLE,
    ImportPreviewDialog,
    conversations,
    open_import,
)
from novelgen_desktop.gui.qt import Qt, QtWidgets
from novelgen_desktop.prompts.loader import load_prompt_files
from novelgen_desktop.style import Composer, load_style_bible
from novelgen_desktop.style.composer import panel_of
from tests.gui.style_util import BIBLE, SCRIPT_CSV, line_of, write_bible, write_script

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def preview(qtbot: Any, bridge: EngineBridge, run: Any, paths: list[Path]) -> ImportPreviewDialog:
    dialog: ImportPreviewDialog = run(open_import(bridge, [str(p) for p in paths]))
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)  # qtbot closes it
    qtbot.addWidget(dialog)
    return dialog


def choose_bible(dialog: ImportPreviewDialog, wait_until: Any, path: Path | str) -> None:
    """Type the bible's path as the author would, then let the check finish."""
    dialog.bible_edit.setText(str(path))
    assert dialog.style_problem() == CHECKING_STYLE  # nothing is created meanwhile
    assert not dialog.create_button.isEnabled()
    wait_until(lambda: dialog.style_check is not None and dialog.style_problem() != CHECKING_STYLE)


def panel_items(dialog: ImportPreviewDialog) -> list[QtWidgets.QTreeWidgetItem]:
    """Every panel row of the script tree (opening every node)."""
    found = []
    for c in range(dialog.tree.topLevelItemCount()):
        chapter = dialog.tree.topLevelItem(c)
        assert chapter is not None
        dialog.tree.expandItem(chapter)
        for p in range(chapter.childCount()):
            page = chapter.child(p)
            assert page is not None
            dialog.tree.expandItem(page)
            found += [page.child(i) for i in range(page.childCount())]
    return [item for item in found if item is not None]


def test_a_chosen_bible_composes_every_panel_and_create_hands_it_to_the_engine(
    qtbot: Any,
    session: DesktopSession,
    bridge: EngineBridge,
    run: Any,
    wait_until: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bible_path = write_bible(tmp_path)
    script = write_script(tmp_path)
    dialog = preview(qtbot, bridge, run, [script])
    assert dialog.bible_status.text().startswith("No style bible")
    assert not dialog.composed_pane.isVisibleTo(dialog)
    dialog.style_edit.setText("soft pencil")
    choose_bible(dialog, wait_until, bible_path)

    bible = load_style_bible(bible_path)
    composer = Composer(bible)
    specs = [
        dataclasses.replace(spec, style="soft pencil")
        for spec in load_prompt_files([str(script)]).specs
    ]
    expected = [composer.compose(panel_of(spec)) for spec in specs]
    assert dialog.bible_status.text() == (
        f"Lighthouse, version {bible.version} · 4 entries · 4 of 4 panels composed"
    )
    assert dialog.create_button.isEnabled() and dialog.message.text() == ""
    assert dialog.composed_pane.isVisibleTo(dialog)
    # the selected panel shows the exact prompt that will be sent; every panel's tooltip too
    items = panel_items(dialog)
    assert len(items) == 4
    for item, composed in zip(items, expected, strict=True):
        dialog.tree.setCurrentItem(item)
        assert dialog.composed_text() == composed.text
        assert item.toolTip(2).startswith(composed.text + "\n\n— ")
    assert "Panel style: soft pencil." in expected[3].text
    assert dialog.composed_facts.text().startswith(
        f"{script}:5 · {len(expected[3].text)}/4,000 characters · characters: Maren, "
        "Old Tobias · attaches maren.png"
    )

    dialog.set_chat_strategy(ChatStrategy.CHAPTER)
    assert dialog.chat_combo.currentText() == "One chat per chapter"
    serial = (
        "Per chapter keeps a whole chapter in one conversation on one tab: consistent but serial."
    )
    dialog.workers_spin.setValue(2)
    assert dialog.chat_explanation.text() == serial
    dialog.workers_spin.setValue(4)
    assert dialog.chat_explanation.text() == (
        f"{serial} This script makes 2 conversations: at most 2 of the 4 tabs draw at once."
    )

    calls: list[dict[str, Any]] = []
    real_create = session.create_job

    async def spy(*args: Any, **kwargs: Any) -> str:
        calls.append(kwargs)
        job_id: str = await real_create(*args, **kwargs)
        return job_id

    monkeypatch.setattr(session, "create_job", spy)
    created: list[str] = []
    dialog.job_created.connect(created.append)
    dialog.create_button.click()
    run(bridge.settle())

    [kwargs] = calls
    assert kwargs["style"] is not None and kwargs["style"].version == bible.version
    assert kwargs["chat_strategy"] is ChatStrategy.CHAPTER
    assert kwargs["max_chat_turns"] == 12
    [job_id] = created
    job = run(session.service.find_job(job_id))
    assert job.settings["chat_strategy"] == "chapter"
    assert job.settings["max_chat_turns"] == 12
    assert job.settings["style_bible"]["version"] == bible.version
    tasks = session.service.store.load_tasks(job_id)
    assert [t.prompt for t in tasks] == [c.text for c in expected]
    assert [t.metadata["composition"]["version"] for t in tasks] == [bible.version] * 4


def test_a_panel_that_cannot_be_composed_blocks_create_with_its_file_and_line(
    qtbot: Any,
    session: DesktopSession,
    bridge: EngineBridge,
    run: Any,
    wait_until: Any,
    tmp_path: Path,
) -> None:
    bible_path = write_bible(tmp_path)
    script = write_script(tmp_path, SCRIPT_CSV + "@Marn looks out to sea,3,1,1\n")
    dialog = preview(qtbot, bridge, run, [script])
    choose_bible(dialog, wait_until, bible_path)

    message = "@Marn is not in style bible 'Lighthouse' (did you mean @Maren or @Mar?)"
    assert not dialog.create_button.isEnabled()
    assert dialog.message.text() == (
        f"1 panel cannot be composed with style bible Lighthouse (the first at {script}:6: "
        f"{message}). Fix the script or the bible (Edit…)."
    )
    assert f"style error {script}:6: field 'text': {message}" in dialog.problem_lines()
    assert dialog.tabs.tabText(2) == "Problems (1)"
    assert dialog.bible_status.text().endswith("4 of 5 panels composed · 1 panel cannot be")
    bad = panel_items(dialog)[-1]
    assert bad.toolTip(2) == f"Cannot be composed: {message}"
    dialog.tree.setCurrentItem(bad)
    assert dialog.composed_text() == ""
    assert dialog.composed_facts.text() == f"{script}:6: cannot be composed: {message}"

    dialog.create_job()  # even when asked directly, nothing is created
    run(bridge.settle())
    assert run(session.service.list_jobs()) == []

    # without the bible the same script is fine (sent as written)
    dialog.bible_edit.clear()
    assert dialog.create_button.isEnabled()
    assert dialog.problem_lines() == []


def test_a_broken_bible_blocks_create_until_it_is_fixed_in_the_editor(
    qtbot: Any,
    session: DesktopSession,
    bridge: EngineBridge,
    run: Any,
    wait_until: Any,
    tmp_path: Path,
) -> None:
    broken = BIBLE.replace("[style]\n", '[style]\ncolour = "red"\n')
    bible_path = write_bible(tmp_path, broken)
    dialog = preview(qtbot, bridge, run, [write_script(tmp_path)])
    choose_bible(dialog, wait_until, bible_path)
    line = line_of(broken, "colour =")
    first = (
        f"{bible_path}:{line}: field 'style.colour': unknown key 'colour' in [style]; "
        "expected one of: medium, palette, line_work, lighting, aspect, extra, negative"
    )
    assert dialog.message.text() == (
        f"The style bible {bible_path} has 1 error (the first at {first}). Fix it with Edit… "
        "or choose another bible."
    )
    assert dialog.bible_status.text() == "1 error in the style bible: see Problems."
    assert not dialog.create_button.isEnabled()

    editor = dialog.edit_bible()
    assert editor.isVisible() and editor.path == bible_path
    editor.wait_checked()
    assert [issue.line for issue in editor.issues] == [line]
    assert len(editor.panels) == 4  # the dialog's panels, for the preview
    # fix it there and save: the dialog reads the bible again
    editor.editor.setPlainText(BIBLE)
    assert editor.save()
    wait_until(lambda: dialog.style_problem() is None)
    assert dialog.create_button.isEnabled()
    assert dialog.bible is not None and dialog.bible.name == "Lighthouse"

    # the editor outlives the dialog (its text is the author's)
    main = QtWidgets.QWidget()
    qtbot.addWidget(main)
    dialog.setParent(main, dialog.windowFlags())
    dialog.reject()
    assert editor.parentWidget() is main
    assert editor.isVisible()


def test_edit_without_a_bible_starts_from_the_template_and_saving_chooses_it(
    qtbot: Any,
    session: DesktopSession,
    bridge: EngineBridge,
    run: Any,
    wait_until: Any,
    tmp_path: Path,
) -> None:
    script = write_script(tmp_path)
    dialog = preview(qtbot, bridge, run, [script])
    editor = dialog.edit_bible()
    assert editor.path is None and editor.windowTitle() == "untitled.toml[*] — Style bible"
    target = tmp_path / "book.toml"
    assert editor.save_as(target)
    assert dialog.bible_edit.text() == str(target)
    wait_until(lambda: dialog.style_check is not None and dialog.style_problem() != CHECKING_STYLE)
    assert dialog.bible is not None and dialog.bible.name == "My graphic novel"
    # the template knows Maren, not Tobias: the script's @Tobias is named, with its line
    assert dialog.message.text().startswith(
        f"1 panel cannot be composed with style bible My graphic novel (the first at "
        f"{script}:5: @Tobias is not in style bible 'My graphic novel'"
    )


def test_the_chat_strategy_says_how_many_conversations_the_script_makes(tmp_path: Path) -> None:
    specs = load_prompt_files([str(write_script(tmp_path))]).specs
    assert conversations(specs, ChatStrategy.PANEL) is None
    assert conversations(specs, ChatStrategy.PAGE) == 3  # ch 1 p 1, ch 2 p 1, ch 2 p 2
    assert conversations(specs, ChatStrategy.CHAPTER) == 2
    plain = write_script(tmp_path, "a fox\na whale\n", name="plain.txt")
    unpaged = load_prompt_files([str(plain)]).specs
    assert conversations(unpaged, ChatStrategy.PAGE) is None  # no pages: a chat each
    assert conversations(unpaged, ChatStrategy.CHAPTER) == 1


def test_the_next_import_offers_the_last_jobs_bible_and_chat_choices(
    qtbot: Any,
    session: DesktopSession,
    bridge: EngineBridge,
    run: Any,
    wait_until: Any,
    tmp_path: Path,
) -> None:
    """The next job of the same book starts from the last job's bible, strategy and turn
    limit, and they survive a restart (the settings file)."""
    from novelgen_desktop.desktop.settings import load_settings

    bible_path = write_bible(tmp_path)
    script = write_script(tmp_path)
    first = preview(qtbot, bridge, run, [script])
    assert first.turns_spin.value() == 12 and not first.turns_spin.isEnabled()  # per panel
    choose_bible(first, wait_until, bible_path)
    first.set_chat_strategy(ChatStrategy.PAGE)
    assert first.turns_spin.isEnabled()
    first.turns_spin.setValue(5)
    first.create_button.click()
    run(bridge.settle())
    assert first.created_job_id is not None
    job = run(session.service.find_job(first.created_job_id))
    assert (job.settings["chat_strategy"], job.settings["max_chat_turns"]) == ("page", 5)

    saved, problems = load_settings(session.paths)
    assert problems == []
    assert (saved.style_bible, saved.chat_strategy, saved.max_chat_turns) == (
        str(bible_path.resolve()),
        "page",
        5,
    )
    second = preview(qtbot, bridge, run, [script])
    assert second.bible_edit.text() == str(bible_path.resolve())
    assert second.chat_strategy() is ChatStrategy.PAGE and second.turns_spin.value() == 5
    wait_until(lambda: second.style_check is not None and second.style_problem() is None)
    assert second.bible is not None

    bible_path.unlink()  # a bible that is gone is not offered
    third = preview(qtbot, bridge, run, [script])
    assert third.bible_edit.text() == ""
