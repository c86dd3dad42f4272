"""Rows as the rest of the program sees them, and the write operations the engine emits.

The engine never writes SQL: it produces these small operation records, and the store applies
a batch of them in one transaction (group commit), which is what makes ≥1,000 durable
completions per second possible while each one is still fsynced before it counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from novelgen_desktop.engine.model import ErrorKind, JobState, TaskState


@dataclass(slots=True)
class JobRecord:
    id: str
    name: str
    created_at: float
    updated_at: float
    state: JobState
    out_dir: str
    naming_template: str
    sources: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    manifest_offset: int = 0
    snapshot_seq: int = 0


@dataclass(slots=True)
class TaskRecord:
    """A task row. ``planned_path`` is fixed at job creation (unique within the job) so that a
    crashed run and its resume agree on where each image goes; ``output_path`` is set only when
    the image is on disk (it may differ from the plan by its extension, e.g. a JPEG result)."""

    id: int
    job_id: str
    seq: int
    prompt: str
    planned_path: str
    state: TaskState = TaskState.QUEUED
    chapter: str | None = None
    page: int | None = None
    panel: int | None = None
    variant: int = 1
    priority: int = 0
    characters: list[str] = field(default_factory=list)
    style: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    attempts: int = 0
    failures: int = 0
    not_before: float = 0.0
    last_error_kind: str | None = None
    last_error: str | None = None
    output_path: str | None = None
    sha256: str | None = None
    size: int | None = None
    done_attempt: int | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    queue_rank: float | None = None  # the author's queue position; None: script order


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    task_id: int
    attempt: int
    worker_id: str | None
    account_id: str | None
    started_at: float
    ended_at: float | None
    outcome: str | None
    error_kind: str | None
    error_message: str | None
    conversation_url: str | None
    image_id: str | None


# --- write operations -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    task_id: int
    attempt: int
    worker_id: str
    account_id: str
    started_at: float
    prompt_sent: str | None = None
    style_version: str | None = None  # the style bible the prompt was composed with
    variants: dict[str, str] | None = None  # feature-flag experiment → variant it ran under
    flags_version: int | None = None  # the feature-flag set in force when it started


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    task_id: int
    attempt: int
    ended_at: float
    outcome: str  # "done", "failed", "rate_limited", "refused", "expired", "duplicate", ...
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    conversation_url: str | None = None
    image_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskUpdated:
    """Any state change except completion (requeue with backoff, dead, refused, cancelled)."""

    task_id: int
    state: TaskState
    failures: int
    not_before: float = 0.0
    error_kind: ErrorKind | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    """The image is already on disk (fsynced, renamed); this makes it count."""

    task_id: int
    attempt: int
    output_path: str
    sha256: str
    size: int
    finished_at: float
    worker_id: str | None
    manifest_row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskQueuePlaced:
    """The author moved a task in the queue or changed its priority."""

    task_id: int
    priority: int
    queue_rank: float | None


@dataclass(frozen=True, slots=True)
class TaskRequeued:
    """The author sent a finished-without-image task (dead, refused, cancelled) back to the
    queue, possibly with an edited prompt."""

    task_id: int
    prompt: str | None = None  # None: unchanged


@dataclass(frozen=True, slots=True)
class JobUpdated:
    job_id: str
    state: JobState


@dataclass(frozen=True, slots=True)
class AccountCooldown:
    account_id: str
    until: float
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerSeen:
    worker_id: str
    account_id: str
    kind: str
    seen_at: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventLogged:
    ts: float
    level: str  # "info", "warning", "error"
    kind: str
    message: str
    job_id: str | None = None
    worker_id: str | None = None
    task_id: int | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TaskReplaced:
    """The author asked for a finished image again: the task's done attempt becomes
    ``replaced`` (one ``done`` per task is allowed), the task is queued with its file fields
    cleared. Its old image was set aside under ``.replaced/`` first, never deleted."""

    task_id: int


StoreOp = (
    AttemptStarted
    | AttemptEnded
    | TaskUpdated
    | TaskCompleted
    | TaskQueuePlaced
    | TaskRequeued
    | JobUpdated
    | AccountCooldown
    | WorkerSeen
    | EventLogged
    | TaskReplaced
)
