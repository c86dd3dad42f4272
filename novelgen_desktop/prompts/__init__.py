"""Prompt import: scripts and lists of prompts in, validated :class:`PromptSpec` objects out.

A job is only as good as its input: a misread page number reorders a book, a caption drawn
into an image ruins a panel, and a crash on line 2,941 of a script wastes an evening. So every
format is parsed leniently where writers differ (``PAGE ONE`` vs ``Page 1``) and strictly
where mistakes cost images (types, ranges, encodings), and every problem is reported with its
file, line and field in one pass.

Formats: ``text`` (.txt), ``csv`` (.csv/.tsv), ``json`` (.json), ``jsonl`` (.jsonl/.ndjson),
``markdown`` (.md/.markdown) and ``fullscript`` (.script/.fountain, or a .txt with
``PAGE``/``Panel`` headings). Each parser module documents its rules.
"""

from __future__ import annotations

from novelgen_desktop.prompts.detect import FORMATS, detect_format
from novelgen_desktop.prompts.fields import MAX_PROMPT_CHARS
from novelgen_desktop.prompts.issues import ImportIssue, ImportResult, PromptImportError
from novelgen_desktop.prompts.loader import load_prompt_files, parse_text, require_prompts
from novelgen_desktop.prompts.model import PromptSpec, SourceLocation
from novelgen_desktop.prompts.reader import DEFAULT_MAX_BYTES
from novelgen_desktop.prompts.report import format_validation_report, summarize

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMATS",
    "MAX_PROMPT_CHARS",
    "ImportIssue",
    "ImportResult",
    "PromptImportError",
    "PromptSpec",
    "SourceLocation",
    "detect_format",
    "format_validation_report",
    "load_prompt_files",
    "parse_text",
    "require_prompts",
    "summarize",
]
