"""``novelgen compose`` and the style options of ``run``/``submit``.

``compose`` prints the exact text each panel would be sent with, without running anything:
the author reads the prompts (and the bible's errors) before paying for a single image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novelgen_desktop.engine.model import DEFAULT_MAX_CHAT_TURNS, MAX_CHAT_TURNS, ChatStrategy
from novelgen_desktop.errors import ConfigError

if TYPE_CHECKING:
    from novelgen_desktop.style.bible import Entity, StyleBible

EXIT_OK, EXIT_USAGE = 0, 2


def chat_turns(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_CHAT_TURNS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_CHAT_TURNS}, got {value}")
    return value


def add_style_options(parser: argparse.ArgumentParser, *, chat: bool = True) -> None:
    group = parser.add_argument_group("style")
    group.add_argument(
        "--style",
        metavar="BIBLE",
        help="style bible (TOML): every prompt is composed from it (see docs/style-bible.md)",
    )
    if chat:
        group.add_argument(
            "--chat-strategy",
            choices=[s.value for s in ChatStrategy],
            help="new chat per panel (default), or one conversation per page / per chapter, "
            "kept on one tab",
        )
        group.add_argument(
            "--max-chat-turns",
            type=chat_turns,
            help=f"attempts in one conversation before a fresh chat (default "
            f"{DEFAULT_MAX_CHAT_TURNS}; page and chapter strategies)",
        )


def print_issues(issues: Sequence[Any], *, limit: int = 50) -> None:
    for issue in issues[:limit]:
        print(f"  {issue}", file=sys.stderr)
    if len(issues) > limit:
        print(f"  … and {len(issues) - limit} more", file=sys.stderr)


def load_bible(path: str) -> StyleBible:
    """The bible at ``path``; ConfigError listing every problem when it is not usable."""
    from novelgen_desktop.style import StyleBibleError, load_style_bible  # noqa: PLC0415

    try:
        return load_style_bible(path)
    except StyleBibleError as exc:
        count = len(exc.issues)
        raise ConfigError(
            f"style bible {path} has {count} error{'s' if count != 1 else ''}; "
            f"nothing was started:\n" + "\n".join(f"  {issue}" for issue in exc.issues)
        ) from None


def summarise_warnings(issues: Sequence[Any]) -> None:
    """One line per kind of warning (a script of 900 panels with an uncast extra would
    otherwise print 900 lines), then the first few."""
    warnings = [issue for issue in issues if not issue.is_error]
    if not warnings:
        return
    kinds = Counter(issue.message for issue in warnings)
    print(f"novelgen: style: {len(warnings)} warning(s):", file=sys.stderr)
    for message, count in kinds.most_common(8):
        first = next(i for i in warnings if i.message == message)
        where = f"{first.file}:{first.line}" if first.line else first.file
        more = f" (and {count - 1} more panel(s))" if count > 1 else ""
        print(f"  {where}: warning: {message}{more}", file=sys.stderr)


def parallelism_note(specs: Sequence[Any], strategy: ChatStrategy, workers: int) -> str | None:
    """What a page or chapter strategy costs: a sequence runs on one tab at a time."""
    if strategy is ChatStrategy.PANEL:
        return None
    sequences = {strategy.sequence_of(spec.chapter, spec.page) for spec in specs}
    sequences.discard(None)
    if not sequences or len(sequences) >= workers:
        return None
    return (
        f"chat strategy {strategy.value}: {len(sequences)} conversation(s) for {workers} "
        f"worker(s): at most {len(sequences)} tab(s) work at once"
    )


def cmd_compose(args: argparse.Namespace, paths: object = None) -> int:
    from novelgen_desktop.prompts import load_prompt_files  # noqa: PLC0415 - parsers
    from novelgen_desktop.style import compose_specs  # noqa: PLC0415

    bible = load_bible(args.style)
    if not args.files:
        _describe_bible(bible)
        return EXIT_OK
    result = load_prompt_files(args.files, format=args.format)
    if result.errors:
        print("novelgen: the prompt files have errors:", file=sys.stderr)
        print_issues(result.errors)
        return EXIT_USAGE
    specs = [spec for spec in result.specs if _selected(spec, args)]
    if not specs:
        raise ConfigError("no panel matches --chapter/--page/--panel")
    filtered = len(specs) != len(result.specs)
    report = compose_specs(specs, bible, check_chapters=not filtered)
    pairs = list(zip(report.specs, report.composed, strict=True))
    if args.json:
        for spec, prompt in pairs:
            row = {
                "source": str(spec.source),
                "chapter": spec.chapter,
                "page": spec.page,
                "panel": spec.panel,
                "prompt": prompt.text,
                "chars": len(prompt.text),
                "description": prompt.description,
                "characters": list(prompt.characters),
                "locations": list(prompt.locations),
                "props": list(prompt.props),
                "references": [r.name for r in prompt.references],
                "trimmed": list(prompt.trimmed),
                "warnings": list(prompt.warnings),
                "bible": prompt.bible_name,
                "version": prompt.bible_version,
            }
            print(json.dumps(row, ensure_ascii=False))
    else:
        for spec, prompt in pairs:
            where = ", ".join(
                f"{label} {value}"
                for label, value in (
                    ("chapter", spec.chapter),
                    ("page", spec.page),
                    ("panel", spec.panel),
                )
                if value is not None
            )
            facts = [f"{len(prompt.text)}/{bible.max_prompt_chars} chars"]
            if prompt.references:
                facts.append("attaches " + ", ".join(r.name for r in prompt.references))
            if prompt.trimmed:
                facts.append("trimmed: " + "; ".join(prompt.trimmed))
            print(f"=== {where or 'prompt'} ({spec.source}) — {' · '.join(facts)}")
            print(prompt.text)
            print()
    summarise_warnings(report.issues)
    if report.errors:
        print(
            f"novelgen: {len(report.errors)} panel(s) cannot be composed with "
            f"{bible.name} {bible.version}:",
            file=sys.stderr,
        )
        print_issues(report.errors)
        return EXIT_USAGE
    print(
        f"novelgen: {len(report.composed)} prompt(s) composed with style bible {bible.name} "
        f"{bible.version}",
        file=sys.stderr,
    )
    return EXIT_OK


def _selected(spec: Any, args: argparse.Namespace) -> bool:
    if args.chapter is not None and (spec.chapter or "").casefold() != args.chapter.casefold():
        return False
    if args.page is not None and spec.page != args.page:
        return False
    return args.panel is None or spec.panel == args.panel


def _describe_bible(bible: StyleBible) -> None:
    from novelgen_desktop.style import EntityKind  # noqa: PLC0415

    print(f"{bible.name} — version {bible.version} ({bible.source})")
    for key, value in bible.style.items():
        print(f"  {key}: {value}")
    if bible.negative:
        print(f"  avoid: {', '.join(bible.negative)}")
    for kind in EntityKind:
        entries = list(bible.by_kind(kind))
        if entries:
            print(f"{kind.table}: " + ", ".join(_entry(e) for e in entries))
    if bible.chapters:
        print("chapter overrides: " + ", ".join(bible.chapters))


def _entry(entity: Entity) -> str:
    extra = []
    if entity.aliases:
        extra.append("aka " + ", ".join(entity.aliases))
    if entity.references:
        extra.append(f"{len(entity.references)} reference image(s)")
    return entity.name + (f" ({'; '.join(extra)})" if extra else "")


def add_compose_command(commands: Any) -> None:
    compose = commands.add_parser(
        "compose",
        help="print the prompts a style bible composes for a script; run nothing",
        description="Compose every panel of the prompt files with a style bible and print the "
        "exact text each would be sent with (and what was trimmed, which reference images are "
        "attached). Without FILE, check the bible and summarise it.",
    )
    compose.add_argument("files", nargs="*", metavar="FILE")
    compose.add_argument("--style", metavar="BIBLE", required=True, help="style bible (TOML)")
    compose.add_argument("--format", help="force the input format")
    compose.add_argument("--chapter", help="only this chapter (its label)")
    compose.add_argument("--page", type=int, help="only this page")
    compose.add_argument("--panel", type=int, help="only this panel")
    compose.add_argument(
        "--json", action="store_true", help="one JSON object per panel (JSON Lines)"
    )


def resolve_style_path(text: str | None) -> str | None:
    return str(Path(text).expanduser().resolve()) if text else None
