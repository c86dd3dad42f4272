"""Value types shared by the scheduler, the store, the workers and the CLI.

They carry no behaviour and no I/O, so every layer can use them without importing another.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class TaskState(enum.StrEnum):
    """Where a task is in its life: ``queued → leased → done | failed → queued | dead``.

    ``failed`` is not stored as a resting state: a failed attempt sends the task back to
    ``queued`` with a ``not_before`` time (backoff) or on to ``dead``. ``refused`` (content
    policy) and ``cancelled`` are terminal and never retried automatically.
    """

    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"
    REFUSED = "refused"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.DONE, TaskState.DEAD, TaskState.REFUSED, TaskState.CANCELLED})


class JobState(enum.StrEnum):
    """A job is ``running`` until every task is terminal; then ``finished`` (all done) or
    ``incomplete`` (some dead or refused). ``paused`` stops dispatch, ``cancelled`` is final."""

    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    INCOMPLETE = "incomplete"
    CANCELLED = "cancelled"


class MemoryLevel(enum.StrEnum):
    """The memory governor's state (``memory.governor``): how hard dispatch is held back."""

    NORMAL = "normal"  # dispatch as usual
    PRESSURE = "pressure"  # no new attempts; those in flight finish
    CRITICAL = "critical"  # as pressure, and attempts not yet sent to ChatGPT are called back
    RECOVERING = "recovering"  # below the resume threshold: workers are let back a few at a time


class ChatStrategy(enum.StrEnum):
    """How a job's prompts share ChatGPT conversations.

    ``panel``: a new chat for every panel (nothing earlier colours the next image).
    ``page``/``chapter``: one conversation per page or chapter of the script, kept on one
    worker, so the model sees the earlier panels (consistency) at the price of parallelism
    within that page or chapter.
    """

    PANEL = "panel"
    PAGE = "page"
    CHAPTER = "chapter"

    def sequence_of(self, chapter: str | None, page: int | None) -> str | None:
        """The conversation key of a task, or None for a chat of its own. A task without a
        page number has no page to share under ``page``; without a chapter label the whole
        job is one chapter."""
        if self is ChatStrategy.PANEL:
            return None
        label = "" if chapter is None else chapter
        if self is ChatStrategy.CHAPTER:
            return f"ch:{label}"
        if page is None:
            return None
        return f"ch:{label}/p:{page}"


DEFAULT_MAX_CHAT_TURNS = 12
"""Attempts in one conversation before a sequence continues in a fresh chat."""
MAX_REFERENCE_BYTES = 8 * 2**20
"""Largest reference image a bible may name (a character sheet; the protocol's bound too)."""
MAX_REFERENCES = 8
"""Reference images attached to one prompt, at most."""
MAX_CHAT_TURNS = 200
"""The most a job may allow (1..this): past it a ChatGPT conversation is too slow to use."""


@dataclass(frozen=True, slots=True)
class ReferenceFile:
    """A reference image an attempt attaches (``path`` is the job's own copy)."""

    sha256: str
    name: str
    mime: str
    path: str


class ErrorKind(enum.StrEnum):
    """Why an attempt did not produce an image. Mirrors the worker protocol's error kinds."""

    RATE_LIMITED = "rate_limited"  # not a failure: the account cools down until reset
    REFUSED = "refused"  # content policy: terminal, not retried
    TIMEOUT = "timeout"
    PAGE_ERROR = "page_error"
    NETWORK = "network"
    LOGIN_REQUIRED = "login_required"
    LEASE_EXPIRED = "lease_expired"  # engine-side: the worker never answered in time
    WORKER_LOST = "worker_lost"  # engine-side: the worker vanished and did not come back
    INVALID_IMAGE = "invalid_image"  # engine-side: the bytes were not a PNG/JPEG/WebP
    OUTPUT_ERROR = "output_error"  # engine-side: the file could not be written


@dataclass(frozen=True, slots=True)
class Assignment:
    """What a worker is asked to do: draw ``prompt`` for attempt ``attempt`` of ``task_id``."""

    task_id: int
    attempt: int
    prompt: str
    deadline: float  # wall-clock seconds (time.time()); the lease expires after this
    metadata: dict[str, Any] = field(default_factory=dict)
    references: tuple[ReferenceFile, ...] = ()  # attached before the prompt is sent


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """A finished image for one attempt. ``conversation_url`` lets a lost transfer be refetched."""

    task_id: int
    attempt: int
    image: bytes
    conversation_url: str | None = None
    image_id: str | None = None
    mime: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    """An attempt that ended without an image.

    ``retry_after`` (seconds) is only meaningful for ``RATE_LIMITED``: the reset time the page
    announced, after which the account may be used again.
    """

    task_id: int
    attempt: int
    kind: ErrorKind
    message: str = ""
    retry_after: float | None = None
    conversation_url: str | None = None


WorkerOutcome = WorkerResult | WorkerFailure
