"""Every message of protocol version 1, and ``decode``/``encode``.

A frame is one JSON object: ``{"v": 1, "type": "<type>", ...fields}``. Field names are
snake_case, timestamps are epoch seconds (float), ids are strings (the engine's integer task
ids travel as decimal strings). ``decode`` is the only entry point for untrusted text: it
raises :class:`ProtocolError` with a stable :class:`ErrorCode` and a message naming the field,
and nothing else, whatever the input. ``encode`` runs the same checks before serialising, so
the hub can never send a frame its peers would refuse. ``docs/protocol.md`` is the spec.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from novelgen_desktop.engine.model import (
    MAX_CHAT_TURNS,
    MAX_REFERENCE_BYTES,
    MAX_REFERENCES,
    ChatStrategy,
    ErrorKind,
    JobState,
    MemoryLevel,
)
from novelgen_desktop.protocol.codes import ErrorCode, ProtocolError
from novelgen_desktop.protocol.schema import Metadata, Schema, field_error, rule, schema_for

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

# -- limits (bytes unless said otherwise) -----------------------------------------------------
MAX_IMAGE_BYTES = 32 * 2**20
"""Largest image a worker may send (ChatGPT PNGs are 1–4 MB)."""
MAX_HELLO_FRAME = 16 * 2**10
"""Before authentication the hub reads one frame of at most this size."""
MAX_CONTROL_FRAME = 256 * 2**10
"""Any text frame other than ``submit`` and ``result``."""
MAX_SUBMIT_FRAME = 16 * 2**20
"""A ``submit`` with inline prompts."""
MAX_RESULT_FRAME = 4 * ((MAX_IMAGE_BYTES + 2) // 3) + 64 * 2**10
"""A ``result`` carrying its image in base64."""
MAX_TEXT_FRAME = max(MAX_SUBMIT_FRAME, MAX_RESULT_FRAME)
"""The transport's ``max_size`` once authenticated."""
MAX_PROMPTS = 20_000
MAX_PROMPT_CHARS = 32_000
MAX_REFERENCE_FRAME = 4 * ((MAX_REFERENCE_BYTES + 2) // 3) + 64 * 2**10
"""A ``reference_image`` carrying its bytes in base64."""

# -- timing (seconds) ---------------------------------------------------------------------------
AUTH_TIMEOUT = 5.0
"""A connection that has not presented a valid hello by then is closed with 4002."""
HEARTBEAT_INTERVAL = 15.0
"""Peers send a data message at least this often (the spec requires < 20 s)."""
IDLE_TIMEOUT = 45.0
"""The hub drops a peer after this long without any data message (close 4004)."""

ID = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"
TASK_ID = r"(0|[1-9][0-9]{0,15})"
SHA256 = r"[0-9a-f]{64}"
TOKEN = r"[A-Za-z0-9_-]{22,128}"  # 22 base64url characters = 132 bits; 32 hex = 128 bits
TOKEN_RULE = rule(min_len=22, max_len=128, pattern=TOKEN)
ID_RULE = rule(min_len=1, max_len=128, pattern=ID)
TASK_RULE = rule(min_len=1, max_len=16, pattern=TASK_ID)
ATTEMPT_RULE = rule(ge=1, le=1000)
TIME_RULE = rule(ge=0.0, le=1e11)  # epoch seconds, up to year 5138
SECONDS_RULE = rule(ge=0.0, le=7 * 86400.0)
COUNT_RULE = rule(ge=0, le=10**9)
URL_RULE = rule(min_len=1, max_len=2048, pattern=r"https?://\S+")
TEXT_RULE = rule(max_len=4096)


class Role(enum.StrEnum):
    WORKER = "worker"  # a ChatGPT tab (through the extension) or a simulated worker
    CLIENT = "client"  # a GUI, CLI or script controlling jobs
    HUB = "hub"  # the desktop app: the server side of every connection


class ImageMime(enum.StrEnum):
    PNG = "image/png"
    JPEG = "image/jpeg"
    WEBP = "image/webp"


class ImageEncoding(enum.StrEnum):
    BINARY = "binary"  # the bytes follow in the next binary frame (see framing.py)
    BASE64 = "base64"  # the bytes are in the ``data`` field


class Stage(enum.StrEnum):
    """Where a worker is in one attempt (``progress``)."""

    ACCEPTED = "accepted"
    TYPING = "typing"
    SUBMITTED = "submitted"
    GENERATING = "generating"
    DOWNLOADING = "downloading"


class TabHealth(enum.StrEnum):
    OK = "ok"
    LOADING = "loading"
    UNRESPONSIVE = "unresponsive"
    CRASHED = "crashed"
    DISCARDED = "discarded"
    LOGGED_OUT = "logged_out"


class ByeReason(enum.StrEnum):
    SHUTDOWN = "shutdown"  # the process or app is quitting
    RESTART = "restart"  # coming back soon: keep the worker's leases for their deadline
    TAB_CLOSED = "tab_closed"
    USER = "user"  # the user asked (disconnect button, CLI exit)
    REPLACED = "replaced"  # a newer connection took over this worker id
    ERROR = "error"  # giving up after an error; ``detail`` says which


class ChatMode(enum.StrEnum):
    """When a browser worker starts a new ChatGPT conversation (``configure``)."""

    PER_TASK = "per_task"  # every attempt in a fresh chat: no earlier image colours the next
    PER_SEQUENCE = "per_sequence"  # one chat per job/chapter/page: the model sees the page so far


class CleanupAction(enum.StrEnum):
    """What the hub asks a browser worker to do to give memory back (``cleanup``)."""

    RELOAD_TAB = "reload_tab"  # reload the idle tab; answered once the page is back and healthy
    NEW_CHAT = "new_chat"  # open a fresh chat in the idle tab (a long conversation's DOM goes)
    DROP_IMAGES = "drop_images"  # forget image bytes of results the hub already acknowledged


class ControlAction(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


WORKER_ERROR_KINDS = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.REFUSED,
        ErrorKind.TIMEOUT,
        ErrorKind.PAGE_ERROR,
        ErrorKind.NETWORK,
        ErrorKind.LOGIN_REQUIRED,
    }
)
"""The kinds a worker may report; the others are decided by the engine."""

_WORKERS = frozenset({Role.WORKER})
_CLIENTS = frozenset({Role.CLIENT})
_PEERS = frozenset({Role.WORKER, Role.CLIENT})
_HUB = frozenset({Role.HUB})
_ANYONE = frozenset(Role)


# == session (both roles) ====================================================================


@dataclass(frozen=True, slots=True)
class AttemptRef:
    """One attempt a reconnecting worker still holds (``hello.holding``)."""

    task_id: str = field(metadata=TASK_RULE)
    attempt: int = field(metadata=ATTEMPT_RULE)


MAX_HOLDING = 64


@dataclass(frozen=True, slots=True)
class Hello:
    """Peer → hub, first frame: token, role, versions and (workers) who it is."""

    type: ClassVar[str] = "hello"
    senders: ClassVar[frozenset[Role]] = _PEERS
    token: str = field(metadata=TOKEN_RULE)
    role: Role
    versions: tuple[int, ...] = field(
        metadata=rule(min_items=1, max_items=16, item=rule(ge=1, le=1000)["rule"])
    )
    agent: str | None = field(default=None, metadata=rule(max_len=200))
    worker_id: str | None = field(default=None, metadata=ID_RULE)
    account_id: str | None = field(default=None, metadata=ID_RULE)
    kind: str | None = field(default=None, metadata=rule(min_len=1, max_len=32, pattern=r"[a-z_]+"))
    tab_id: str | None = field(default=None, metadata=rule(min_len=1, max_len=32, pattern=ID))
    capabilities: tuple[str, ...] = field(
        default=(),
        metadata=rule(max_items=32, item=rule(min_len=1, max_len=64, pattern=ID)["rule"]),
    )
    instance_id: str | None = field(default=None, metadata=ID_RULE)
    holding: tuple[AttemptRef, ...] = field(default=(), metadata=rule(max_items=MAX_HOLDING))

    def validate(self) -> None:
        if self.role is Role.HUB:
            raise field_error("role", "a peer cannot claim the hub role")
        worker_fields = ("worker_id", "account_id", "kind", "tab_id", "instance_id")
        if self.role is Role.WORKER:
            for name in ("worker_id", "account_id", "kind"):
                if getattr(self, name) is None:
                    raise field_error(name, "required when role is worker", ErrorCode.MISSING_FIELD)
        else:
            for name in worker_fields:
                if getattr(self, name) is not None:
                    raise field_error(name, "only allowed when role is worker")
            if self.capabilities:
                raise field_error("capabilities", "only allowed when role is worker")
            if self.holding:
                raise field_error("holding", "only allowed when role is worker")


@dataclass(frozen=True, slots=True)
class Welcome:
    """Hub → peer, answer to a valid hello: the chosen version and the session's limits."""

    type: ClassVar[str] = "welcome"
    senders: ClassVar[frozenset[Role]] = _HUB
    version: int = field(metadata=rule(ge=1, le=1000))
    session_id: str = field(metadata=ID_RULE)
    heartbeat_interval: float = field(metadata=rule(ge=1.0, le=19.0))
    idle_timeout: float = field(metadata=rule(ge=5.0, le=600.0))
    max_frame_bytes: int = field(metadata=rule(ge=1024, le=2**31))
    max_image_bytes: int = field(metadata=rule(ge=1024, le=2**31))
    server: str | None = field(default=None, metadata=rule(max_len=200))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Either way, whenever nothing else was sent for HEARTBEAT_INTERVAL seconds."""

    type: ClassVar[str] = "heartbeat"
    senders: ClassVar[frozenset[Role]] = _ANYONE
    ts: float = field(metadata=TIME_RULE)
    seq: int | None = field(default=None, metadata=COUNT_RULE)


@dataclass(frozen=True, slots=True)
class Bye:
    """Either way, last frame before a graceful close."""

    type: ClassVar[str] = "bye"
    senders: ClassVar[frozenset[Role]] = _ANYONE
    reason: ByeReason
    detail: str | None = field(default=None, metadata=TEXT_RULE)


@dataclass(frozen=True, slots=True)
class Error:
    """A protocol error frame: the frame ``re`` (or the last frame) was refused.

    Not a failed attempt: that is :class:`TaskError`. The connection stays open unless a close
    frame follows.
    """

    type: ClassVar[str] = "error"
    senders: ClassVar[frozenset[Role]] = _ANYONE
    code: ErrorCode
    message: str = field(metadata=TEXT_RULE)
    re: str | None = field(default=None, metadata=ID_RULE)
    # Last on purpose: after this line ``field`` names the attribute in the class body.
    field: str | None = field(default=None, metadata=rule(max_len=256))


@dataclass(frozen=True, slots=True)
class Ack:
    """Hub → peer: a request (``re``) or a result / task error (``task_id``+``attempt``) was
    received and handled. A worker keeps an image until its result is acked."""

    type: ClassVar[str] = "ack"
    senders: ClassVar[frozenset[Role]] = _HUB
    re: str | None = field(default=None, metadata=ID_RULE)
    task_id: str | None = field(default=None, metadata=TASK_RULE)
    attempt: int | None = field(default=None, metadata=ATTEMPT_RULE)
    outcome: str | None = field(default=None, metadata=rule(max_len=32, pattern=r"[a-z_]+"))

    def validate(self) -> None:
        by_task = self.task_id is not None or self.attempt is not None
        if by_task and (self.task_id is None or self.attempt is None):
            name = "attempt" if self.attempt is None else "task_id"
            raise field_error(name, "task_id and attempt go together", ErrorCode.MISSING_FIELD)
        if by_task == (self.re is not None):
            raise field_error("re", "give either re or task_id+attempt", ErrorCode.BAD_FIELD)


# == worker role ===============================================================================


FILE_NAME_RULE = rule(min_len=1, max_len=255, pattern=r"[^/\\\x00-\x1f]+")


@dataclass(frozen=True, slots=True)
class ReferenceRef:
    """One reference image an ``assign`` wants attached (its bytes came in ``reference_image``)."""

    sha256: str = field(metadata=rule(min_len=64, max_len=64, pattern=SHA256))
    name: str = field(metadata=FILE_NAME_RULE)
    mime: ImageMime


@dataclass(frozen=True, slots=True)
class Assign:
    """Hub → worker: draw ``prompt`` for this attempt before ``deadline``.

    ``references`` are images to attach to the composer before the prompt (a character's
    reference sheet); each one's bytes reached this connection in a ``reference_image`` first.
    ``metadata`` may carry ``sequence`` and ``new_chat``: the job's chat strategy.
    """

    type: ClassVar[str] = "assign"
    senders: ClassVar[frozenset[Role]] = _HUB
    task_id: str = field(metadata=TASK_RULE)
    attempt: int = field(metadata=ATTEMPT_RULE)
    prompt: str = field(metadata=rule(min_len=1, max_len=MAX_PROMPT_CHARS))
    deadline: float = field(metadata=TIME_RULE)
    metadata: Metadata | None = field(default=None, metadata=rule(max_items=64))
    references: tuple[ReferenceRef, ...] = field(
        default=(), metadata=rule(max_items=MAX_REFERENCES)
    )


@dataclass(frozen=True, slots=True)
class ReferenceImage:
    """Hub → worker: the bytes of a reference image, sent at most once per connection, before
    the first ``assign`` that lists it, and only to workers with the ``references`` capability.
    No answer: a worker that could not keep it fails that assign with ``page_error``."""

    type: ClassVar[str] = "reference_image"
    senders: ClassVar[frozenset[Role]] = _HUB
    sha256: str = field(metadata=rule(min_len=64, max_len=64, pattern=SHA256))
    name: str = field(metadata=FILE_NAME_RULE)
    mime: ImageMime
    size: int = field(metadata=rule(ge=1, le=MAX_REFERENCE_BYTES))
    data: str = field(metadata=rule(min_len=4, max_len=4 * ((MAX_REFERENCE_BYTES + 2) // 3)))


@dataclass(frozen=True, slots=True)
class Cancel:
    """Hub → worker: stop this attempt (job paused/cancelled, lease expired)."""

    type: ClassVar[str] = "cancel"
    senders: ClassVar[frozenset[Role]] = _HUB
    task_id: str = field(metadata=TASK_RULE)
    attempt: int = field(metadata=ATTEMPT_RULE)
    reason: str | None = field(default=None, metadata=TEXT_RULE)


MAX_SELECTOR_TABLE_CHARS = 64 * 2**10
"""A pushed selector table (JSON text) is far smaller; the bound keeps a frame small."""


@dataclass(frozen=True, slots=True)
class Configure:
    """Hub → worker: how the browser behind this worker should run. Sent after ``welcome``
    when the hub has settings for browser workers, and again when they change. A worker that
    drives no browser (the simulated one) ignores it; every field is optional and an absent
    field leaves the worker's own setting as it is."""

    type: ClassVar[str] = "configure"
    senders: ClassVar[frozenset[Role]] = _HUB
    tabs: int | None = field(default=None, metadata=rule(ge=1, le=10))
    chat_mode: ChatMode | None = None
    selector_table: str | None = field(
        default=None, metadata=rule(min_len=2, max_len=MAX_SELECTOR_TABLE_CHARS)
    )
    # The feature flags the browser side obeys (name → value; see docs/flags.md): the hub
    # sends them so a kill switch reaches every extension without reinstalling it.
    flags: Metadata | None = field(default=None, metadata=rule(max_items=64, max_len=64))


@dataclass(frozen=True, slots=True)
class Cleanup:
    """Hub → worker: give memory back (the memory governor). Only sent to workers whose hello
    lists the ``cleanup`` capability; answered by exactly one ``cleanup_done``. A tab with an
    attempt in hand refuses ``reload_tab`` and ``new_chat`` (``ok: false``): nothing paid for
    is ever thrown away."""

    type: ClassVar[str] = "cleanup"
    senders: ClassVar[frozenset[Role]] = _HUB
    request_id: str = field(metadata=ID_RULE)
    action: CleanupAction
    reason: str | None = field(default=None, metadata=TEXT_RULE)


@dataclass(frozen=True, slots=True)
class CleanupDone:
    """Worker → hub: the answer to ``cleanup`` (``re`` is its ``request_id``)."""

    type: ClassVar[str] = "cleanup_done"
    senders: ClassVar[frozenset[Role]] = _WORKERS
    re: str = field(metadata=ID_RULE)
    action: CleanupAction
    ok: bool
    heap_before: int | None = field(default=None, metadata=rule(ge=0, le=2**48))
    heap_after: int | None = field(default=None, metadata=rule(ge=0, le=2**48))
    freed_bytes: int | None = field(default=None, metadata=rule(ge=0, le=2**48))
    detail: str | None = field(default=None, metadata=TEXT_RULE)


@dataclass(frozen=True, slots=True)
class Progress:
    """Worker → hub: an attempt moved on (optional; also counts as a data message)."""

    type: ClassVar[str] = "progress"
    senders: ClassVar[frozenset[Role]] = _WORKERS
    task_id: str = field(metadata=TASK_RULE)
    attempt: int = field(metadata=ATTEMPT_RULE)
    stage: Stage
    percent: float | None = field(default=None, metadata=rule(ge=0.0, le=100.0))
    conversation_url: str | None = field(default=None, metadata=URL_RULE)
    detail: str | None = field(default=None, metadata=TEXT_RULE)


@dataclass(frozen=True, slots=True)
class Result:
    """Worker → hub: the image of one attempt. With ``encoding: binary`` the next frame on the
    connection is a binary frame whose header repeats ``task_id`` and ``attempt``."""

    type: ClassVar[str] = "result"
    senders: ClassVar[frozenset[Role]] = _WORKERS
    task_id: str = field(metadata=TASK_RULE)
    attempt: int = field(metadata=ATTEMPT_RULE)
    sha256: str = field(metadata=rule(min_len=64, max_len=64, pattern=SHA256))
    size: int = field(metadata=rule(ge=1, le=MAX_IMAGE_BYTES))
    mime: ImageMime
    encoding: ImageEncoding
    data: str | None = field(default=None, metadata=rule(max_len=4 * ((MAX_IMAGE_BYTES + 2) // 3)))
    conversation_url: str | None = field(default=None, metadata=URL_RULE)
    image_id: str | None = field(default=None, metadata=rule(min_len=1, max_len=256))
    width: int | None = field(default=None, metadata=rule(ge=1, le=65535))
    height: int | None = field(default=None, metadata=rule(ge=1, le=65535))
    elapsed: float | None = field(default=None, metadata=SECONDS_RULE)

    def validate(self) -> None:
        if self.encoding is ImageEncoding.BASE64:
            if self.data is None:
                raise field_error(
                    "data", "required when encoding is base64", ErrorCode.MISSING_FIELD
                )
            expected = 4 * ((self.size + 2) // 3)
            if len(self.data) != expected:
                raise field_error(
                    "data", f"{len(self.data)} base64 characters, expected {expected} for size"
                )
        elif self.data is not None:
            raise field_error("data", "only allowed when encoding is base64")


@dataclass(frozen=True, slots=True)
class TaskError:
    """Worker → hub: an attempt ended without an image (a failed attempt, not a protocol
    error). ``retry_after`` (seconds) only with ``rate_limited``; ``refused`` needs the text."""

    type: ClassVar[str] = "task_error"
    senders: ClassVar[frozenset[Role]] = _WORKERS
    task_id: str = field(metadata=TASK_RULE)
    attempt: int = field(metadata=ATTEMPT_RULE)
    kind: ErrorKind
    message: str = field(default="", metadata=TEXT_RULE)
    retry_after: float | None = field(default=None, metadata=SECONDS_RULE)
    conversation_url: str | None = field(default=None, metadata=URL_RULE)

    def validate(self) -> None:
        if self.kind not in WORKER_ERROR_KINDS:
            allowed = ", ".join(sorted(WORKER_ERROR_KINDS))
            raise field_error("kind", f"{self.kind.value!r} is decided by the hub; use {allowed}")
        if self.retry_after is not None and self.kind is not ErrorKind.RATE_LIMITED:
            raise field_error("retry_after", "only allowed with kind rate_limited")
        if self.kind is ErrorKind.REFUSED and not self.message.strip():
            raise field_error("message", "kind refused needs the refusal text")


@dataclass(frozen=True, slots=True)
class Status:
    """Worker → hub: health of the tab or process, on change and at most every 5 s."""

    type: ClassVar[str] = "status"
    senders: ClassVar[frozenset[Role]] = _WORKERS
    ts: float = field(metadata=TIME_RULE)
    tab_health: TabHealth
    busy: bool
    memory_bytes: int | None = field(default=None, metadata=rule(ge=0, le=2**48))
    task_id: str | None = field(default=None, metadata=TASK_RULE)
    url: str | None = field(default=None, metadata=URL_RULE)
    detail: str | None = field(default=None, metadata=TEXT_RULE)
    conversation_turns: int | None = field(default=None, metadata=COUNT_RULE)


# == client role ===============================================================================

REQUEST_ID_RULE = ID_RULE


@dataclass(frozen=True, slots=True)
class Submit:
    """Client → hub: create a bulk job from inline prompts or from a script file on the hub's
    machine (exactly one of ``prompts`` and ``path``)."""

    type: ClassVar[str] = "submit"
    senders: ClassVar[frozenset[Role]] = _CLIENTS
    request_id: str = field(metadata=REQUEST_ID_RULE)
    name: str = field(metadata=rule(min_len=1, max_len=200))
    prompts: tuple[str, ...] | None = field(
        default=None,
        metadata=rule(
            min_items=1,
            max_items=MAX_PROMPTS,
            item=rule(min_len=1, max_len=MAX_PROMPT_CHARS)["rule"],
        ),
    )
    path: str | None = field(default=None, metadata=rule(min_len=1, max_len=4096))
    out_dir: str | None = field(default=None, metadata=rule(min_len=1, max_len=4096))
    naming: str | None = field(default=None, metadata=rule(min_len=1, max_len=512))
    priority: int | None = field(default=None, metadata=rule(ge=-1000, le=1000))
    style: str | None = field(default=None, metadata=rule(min_len=1, max_len=4096))
    chat_strategy: ChatStrategy | None = None
    max_chat_turns: int | None = field(default=None, metadata=rule(ge=1, le=MAX_CHAT_TURNS))

    def validate(self) -> None:
        if (self.prompts is None) == (self.path is None):
            name = "prompts" if self.prompts is None else "path"
            raise field_error(name, "give exactly one of prompts and path", ErrorCode.BAD_FIELD)


@dataclass(frozen=True, slots=True)
class Submitted:
    """Hub → client: the job was created (its tasks are durable before this is sent)."""

    type: ClassVar[str] = "submitted"
    senders: ClassVar[frozenset[Role]] = _HUB
    re: str = field(metadata=REQUEST_ID_RULE)
    job_id: str = field(metadata=ID_RULE)
    tasks: int = field(metadata=COUNT_RULE)
    skipped: int = field(default=0, metadata=COUNT_RULE)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Client → hub: send ``job_progress`` (and ``errors``) for these jobs (empty: all) every
    ``interval`` seconds until the connection closes or another subscribe replaces it."""

    type: ClassVar[str] = "subscribe"
    senders: ClassVar[frozenset[Role]] = _CLIENTS
    request_id: str = field(metadata=REQUEST_ID_RULE)
    job_ids: tuple[str, ...] = field(default=(), metadata=rule(max_items=64, item=ID_RULE["rule"]))
    interval: float = field(default=1.0, metadata=rule(ge=0.25, le=60.0))
    workers: bool = True
    errors: bool = True


@dataclass(frozen=True, slots=True)
class WorkerStat:
    """One worker's line in ``job_progress`` (mirrors engine.progress.WorkerStats)."""

    worker_id: str = field(metadata=ID_RULE)
    account_id: str = field(metadata=rule(max_len=128))
    done: int = field(metadata=COUNT_RULE)
    failed: int = field(metadata=COUNT_RULE)
    rate_limited: int = field(metadata=COUNT_RULE)
    success_rate: float | None = field(default=None, metadata=rule(ge=0.0, le=1.0))
    mean_latency: float | None = field(default=None, metadata=SECONDS_RULE)
    p95_latency: float | None = field(default=None, metadata=SECONDS_RULE)
    connected: bool | None = None
    cooling_until: float | None = field(default=None, metadata=TIME_RULE)


@dataclass(frozen=True, slots=True)
class JobProgress:
    """Hub → client: counts, throughput and ETA of one job (mirrors ProgressSnapshot)."""

    type: ClassVar[str] = "job_progress"
    senders: ClassVar[frozenset[Role]] = _HUB
    job_id: str = field(metadata=ID_RULE)
    ts: float = field(metadata=TIME_RULE)
    state: JobState
    total: int = field(metadata=COUNT_RULE)
    done: int = field(metadata=COUNT_RULE)
    failed_terminal: int = field(metadata=COUNT_RULE)
    percent: float = field(metadata=rule(ge=0.0, le=100.0))
    throughput_per_min: float = field(metadata=rule(ge=0.0, le=1e9))
    eta_seconds: float | None = field(default=None, metadata=rule(ge=0.0, le=1e10))
    cooling_until: float | None = field(default=None, metadata=TIME_RULE)
    workers: tuple[WorkerStat, ...] = field(default=(), metadata=rule(max_items=256))


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Failed attempts of one kind (and message) in a job, aggregated."""

    kind: ErrorKind
    count: int = field(metadata=rule(ge=1, le=10**9))
    message: str = field(default="", metadata=TEXT_RULE)
    last_at: float | None = field(default=None, metadata=TIME_RULE)
    task_ids: tuple[str, ...] = field(
        default=(), metadata=rule(max_items=20, item=TASK_RULE["rule"])
    )


@dataclass(frozen=True, slots=True)
class Errors:
    """Hub → client: a job's failed attempts grouped by kind and message (a sample of task ids)."""

    type: ClassVar[str] = "errors"
    senders: ClassVar[frozenset[Role]] = _HUB
    job_id: str = field(metadata=ID_RULE)
    ts: float = field(metadata=TIME_RULE)
    groups: tuple[ErrorGroup, ...] = field(default=(), metadata=rule(max_items=100))


@dataclass(frozen=True, slots=True)
class MemoryState:
    """Hub → client: the memory governor changed state (sent to every subscribed client, and
    once right after ``subscribe`` while the state is not ``normal``)."""

    type: ClassVar[str] = "memory_state"
    senders: ClassVar[frozenset[Role]] = _HUB
    ts: float = field(metadata=TIME_RULE)
    state: MemoryLevel
    previous: MemoryLevel
    system_percent: float = field(metadata=rule(ge=0.0, le=100.0))
    reason: str = field(default="", metadata=TEXT_RULE)
    held_workers: tuple[str, ...] = field(
        default=(), metadata=rule(max_items=256, item=ID_RULE["rule"])
    )


@dataclass(frozen=True, slots=True)
class Control:
    """Client → hub: pause, resume or cancel a job; answered by ``ack`` or ``error``."""

    type: ClassVar[str] = "control"
    senders: ClassVar[frozenset[Role]] = _CLIENTS
    request_id: str = field(metadata=REQUEST_ID_RULE)
    job_id: str = field(metadata=ID_RULE)
    action: ControlAction


@dataclass(frozen=True, slots=True)
class ListJobs:
    """Client → hub: list jobs, newest first, optionally only in some states."""

    type: ClassVar[str] = "list_jobs"
    senders: ClassVar[frozenset[Role]] = _CLIENTS
    request_id: str = field(metadata=REQUEST_ID_RULE)
    states: tuple[JobState, ...] = field(default=(), metadata=rule(max_items=len(JobState)))
    limit: int = field(default=100, metadata=rule(ge=1, le=1000))


@dataclass(frozen=True, slots=True)
class JobSummary:
    job_id: str = field(metadata=ID_RULE)
    name: str = field(metadata=rule(max_len=200))
    state: JobState
    total: int = field(metadata=COUNT_RULE)
    done: int = field(metadata=COUNT_RULE)
    failed_terminal: int = field(metadata=COUNT_RULE)
    created_at: float = field(metadata=TIME_RULE)


@dataclass(frozen=True, slots=True)
class Jobs:
    """Hub → client: the answer to ``list_jobs``."""

    type: ClassVar[str] = "jobs"
    senders: ClassVar[frozenset[Role]] = _HUB
    re: str = field(metadata=REQUEST_ID_RULE)
    jobs: tuple[JobSummary, ...] = field(default=(), metadata=rule(max_items=1000))


Message = (
    Hello
    | Welcome
    | Heartbeat
    | Bye
    | Error
    | Ack
    | Assign
    | ReferenceImage
    | Cancel
    | Configure
    | Cleanup
    | CleanupDone
    | Progress
    | Result
    | TaskError
    | Status
    | Submit
    | Submitted
    | Subscribe
    | JobProgress
    | Errors
    | MemoryState
    | Control
    | ListJobs
    | Jobs
)

MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.type: cls
    for cls in (
        Hello,
        Welcome,
        Heartbeat,
        Bye,
        Error,
        Ack,
        Assign,
        ReferenceImage,
        Cancel,
        Configure,
        Cleanup,
        CleanupDone,
        Progress,
        Result,
        TaskError,
        Status,
        Submit,
        Submitted,
        Subscribe,
        JobProgress,
        Errors,
        MemoryState,
        Control,
        ListJobs,
        Jobs,
    )
}

_FRAME_LIMITS: dict[str, int] = {
    "submit": MAX_SUBMIT_FRAME,
    "result": MAX_RESULT_FRAME,
    "reference_image": MAX_REFERENCE_FRAME,
}
_ENVELOPE = frozenset({"v", "type"})
_SCHEMAS: dict[str, Schema] = {name: schema_for(cls) for name, cls in MESSAGE_TYPES.items()}


def negotiate(offered: tuple[int, ...]) -> int | None:
    """The highest version both sides speak, or None (→ error bad_version, close 4009)."""
    common = set(offered) & set(SUPPORTED_VERSIONS)
    return max(common) if common else None


def _reject_constant(name: str) -> Any:
    raise ProtocolError(ErrorCode.BAD_JSON, f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ProtocolError(ErrorCode.BAD_JSON, f"duplicate key {key[:64]!r}", field=key)
            seen.add(key)
    return obj


def _show(value: object) -> str:
    """A short, safe rendering of an untrusted JSON value for an error message."""
    if isinstance(value, str):
        return json.dumps(value[:40] + ("…" if len(value) > 40 else ""))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return "a huge number"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return "an array" if isinstance(value, list) else "an object"


def decode(text: str, *, sender: Role | None = None, max_chars: int = MAX_TEXT_FRAME) -> Message:
    """Parse and validate one text frame. Raises only :class:`ProtocolError`.

    ``sender`` is the authenticated role of the peer; a message that role may not send is
    refused with ``forbidden_role``. ``max_chars`` bounds the frame before parsing (the
    transport bounds bytes; a character is at least one byte).
    """
    if len(text) > max_chars:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frame of {len(text)} characters > {max_chars}")
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise ProtocolError(ErrorCode.BAD_JSON, f"not JSON: {str(err)[:200]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "a frame must be a JSON object")
    if "v" not in obj:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "missing field 'v'", field="v")
    version = obj["v"]
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            ErrorCode.BAD_VERSION,
            f"field 'v': {_show(version)} is not a supported version {list(SUPPORTED_VERSIONS)}",
            field="v",
        )
    if "type" not in obj:
        raise ProtocolError(ErrorCode.MISSING_FIELD, "missing field 'type'", field="type")
    name = obj["type"]
    schema = _SCHEMAS.get(name) if isinstance(name, str) else None
    if schema is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"field 'type': unknown type {_show(name)}", field="type"
        )
    if len(text) > _FRAME_LIMITS.get(name, MAX_CONTROL_FRAME):
        limit = _FRAME_LIMITS.get(name, MAX_CONTROL_FRAME)
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{name} frame of {len(text)} characters > {limit}"
        )
    message: Message = schema.check_object(obj, skip=_ENVELOPE)
    if sender is not None and sender not in message.senders:
        raise ProtocolError(
            ErrorCode.FORBIDDEN_ROLE,
            f"field 'type': a {sender} may not send {name!r}",
            field="type",
        )
    return message


def to_wire(message: Message) -> dict[str, Any]:
    """The JSON object of a message, envelope included (validated like a received frame)."""
    schema = _SCHEMAS[message.type]
    body = schema.dump(message)
    schema.check_object(body)  # what we send obeys what we accept
    return {"v": PROTOCOL_VERSION, "type": message.type, **body}


def encode(message: Message) -> str:
    """One compact text frame (UTF-8 safe: lone surrogates are refused by validation)."""
    return json.dumps(to_wire(message), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
