"""The style bible: one book's look, written once and composed into every prompt.

``loader`` reads and validates the TOML file, ``bible`` holds it as data, ``composer`` turns
a panel into the exact text sent (pure, deterministic), ``apply`` composes a whole script.
"""

from novelgen_desktop.engine.composition import COMPOSITION_KEY
from novelgen_desktop.style.apply import ComposeReport, StyledJob, compose_specs, style_job
from novelgen_desktop.style.bible import Entity, EntityKind, ReferenceImage, StyleBible
from novelgen_desktop.style.composer import (
    ComposedPrompt,
    ComposeError,
    Composer,
    PanelInput,
    compose,
)
from novelgen_desktop.style.loader import StyleBibleError, load_style_bible, parse_style_bible

__all__ = [
    "COMPOSITION_KEY",
    "ComposeError",
    "ComposeReport",
    "ComposedPrompt",
    "Composer",
    "Entity",
    "EntityKind",
    "PanelInput",
    "ReferenceImage",
    "StyleBible",
    "StyleBibleError",
    "StyledJob",
    "compose",
    "compose_specs",
    "load_style_bible",
    "parse_style_bible",
    "style_job",
]
