"""The project's own exception hierarchy.

Everything the user can cause (bad input files, unknown job ids, a damaged store) raises a
subclass of :class:`NovelGenError`, so the CLI can print one clear message and choose an exit
code without ever showing a traceback for a user mistake.
"""

from __future__ import annotations


class NovelGenError(Exception):
    """Base class for every error NovelGen reports to the user on purpose."""


class ConfigError(NovelGenError):
    """A setting, option or path given by the user cannot be used."""


class JobNotFoundError(NovelGenError):
    """A job id (or prefix) names no job, or names more than one."""


class StoreError(NovelGenError):
    """The durable store cannot be read or written."""


class StoreCorruptError(StoreError):
    """The SQLite database failed its integrity check or could not be opened as a database."""


class OutputError(NovelGenError):
    """An image could not be validated or written to the output folder."""
