"""One valid instance of every message: used by the tests, the fuzzer's seeds and the docs."""

from __future__ import annotations

import base64
import hashlib

from novelgen_desktop.engine.model import ErrorKind, JobState, MemoryLevel
from novelgen_desktop.protocol.codes import ErrorCode
from novelgen_desktop.protocol.messages import (
    MAX_IMAGE_BYTES,
    MAX_TEXT_FRAME,
    Ack,
    Assign,
    AttemptRef,
    Bye,
    ByeReason,
    Cancel,
    ChatMode,
    Cleanup,
    CleanupAction,
    CleanupDone,
    Configure,
    Control,
    ControlAction,
    Error,
    ErrorGroup,
    Errors,
    Heartbeat,
    Hello,
    ImageEncoding,
    ImageMime,
    JobProgress,
    Jobs,
    JobSummary,
    ListJobs,
    MemoryState,
    Message,
    Progress,
    ReferenceImage,
    ReferenceRef,
    Result,
    Role,
    Stage,
    Status,
    Submit,
    Submitted,
    Subscribe,
    TabHealth,
    TaskError,
    Welcome,
    WorkerStat,
)

_REFERENCE_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
)
_REFERENCE_SHA = hashlib.sha256(_REFERENCE_PNG).hexdigest()

TOKEN = "q3X9vJ2mK8wR5tY7uI0oP4aS6dF1gH3jL5zX7cV9bN2"
CONVERSATION = "https://chatgpt.com/c/6741d0b5-1f2e-8000-a000-0123456789ab"
TINY_IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(24))


def example_messages() -> list[Message]:
    """At least one of each type; ``MESSAGE_TYPES`` is covered (a test checks it)."""
    digest = hashlib.sha256(TINY_IMAGE).hexdigest()
    return [
        Hello(
            token=TOKEN,
            role=Role.WORKER,
            versions=(1,),
            agent="novelgen-extension/0.1.0 Chrome/131",
            worker_id="ext-7f3a-tab-1",
            account_id="profile-anna",
            kind="extension",
            tab_id="1234567",
            capabilities=("image_png", "image_webp", "binary_frames"),
        ),
        Hello(
            token=TOKEN,
            role=Role.WORKER,
            versions=(1,),
            worker_id="ext-7f3a-tab-1",
            account_id="profile-anna",
            kind="extension",
            tab_id="1234567",
            capabilities=("binary_frames",),
            instance_id="i-9c2e41d07b35a8f6",
            holding=(AttemptRef(task_id="4812", attempt=2),),
        ),
        Hello(token=TOKEN, role=Role.CLIENT, versions=(1,), agent="novelgen-cli/0.1.0"),
        Welcome(
            version=1,
            session_id="s-5c1e9a",
            heartbeat_interval=15.0,
            idle_timeout=45.0,
            max_frame_bytes=MAX_TEXT_FRAME,
            max_image_bytes=MAX_IMAGE_BYTES,
            server="novelgen-desktop/0.1.0",
        ),
        Heartbeat(ts=1795000000.25, seq=17),
        Bye(reason=ByeReason.TAB_CLOSED, detail="the user closed the tab"),
        Error(
            code=ErrorCode.BAD_FIELD,
            message="field 'attempt': 0 outside 1..1000",
            field="attempt",
        ),
        Ack(task_id="4812", attempt=2, outcome="accepted"),
        Ack(re="req-42"),
        Assign(
            task_id="4812",
            attempt=2,
            prompt="Panel 3 of page 12: the keeper climbs the spiral stair, ink and watercolour",
            deadline=1795000600.0,
            metadata={"job_id": "lighthouse-keeper-20261123-7f3a", "panel": 3},
        ),
        Assign(
            task_id="4813",
            attempt=1,
            prompt="Maren holds the storm lantern high.\n\nCharacters:\n- Maren: a tall woman",
            deadline=1795000600.0,
            metadata={"job_id": "lighthouse-keeper-20261123-7f3a", "sequence": "ch:1/p:3"},
            references=(ReferenceRef(sha256=_REFERENCE_SHA, name="maren.png", mime=ImageMime.PNG),),
        ),
        ReferenceImage(
            sha256=_REFERENCE_SHA,
            name="maren.png",
            mime=ImageMime.PNG,
            size=len(_REFERENCE_PNG),
            data=base64.b64encode(_REFERENCE_PNG).decode("ascii"),
        ),
        Cancel(task_id="4812", attempt=2, reason="job paused"),
        Cleanup(request_id="mem-12", action=CleanupAction.RELOAD_TAB, reason="memory pressure"),
        CleanupDone(
            re="mem-12",
            action=CleanupAction.RELOAD_TAB,
            ok=True,
            heap_before=612_000_000,
            heap_after=48_000_000,
        ),
        MemoryState(
            ts=1795000000.0,
            state=MemoryLevel.PRESSURE,
            previous=MemoryLevel.NORMAL,
            system_percent=81.5,
            reason="system memory 81.5 % >= 80 %",
            held_workers=("tab-1", "tab-2"),
        ),
        Configure(
            tabs=3,
            chat_mode=ChatMode.PER_TASK,
            selector_table='{"version": 7, "keys": {"sendButton": '
            '["button[data-testid=send-button]", "#composer-submit-button"]}}',
            flags={"multi_tab": True, "selector_updates": True, "reference_images": True},
        ),
        Progress(task_id="4812", attempt=2, stage=Stage.GENERATING, percent=40.0),
        Result(
            task_id="4812",
            attempt=2,
            sha256=digest,
            size=len(TINY_IMAGE),
            mime=ImageMime.PNG,
            encoding=ImageEncoding.BINARY,
            conversation_url=CONVERSATION,
            image_id="file-AbCdEf123456",
            width=1024,
            height=1536,
            elapsed=41.7,
        ),
        Result(
            task_id="4813",
            attempt=1,
            sha256=digest,
            size=len(TINY_IMAGE),
            mime=ImageMime.PNG,
            encoding=ImageEncoding.BASE64,
            data=base64.b64encode(TINY_IMAGE).decode("ascii"),
        ),
        TaskError(
            task_id="4814",
            attempt=1,
            kind=ErrorKind.RATE_LIMITED,
            message="You've hit the image generation limit. It resets in 12 minutes.",
            retry_after=720.0,
        ),
        TaskError(
            task_id="4815",
            attempt=1,
            kind=ErrorKind.REFUSED,
            message="I can't create that image because it violates our content policy.",
            conversation_url=CONVERSATION,
        ),
        Status(
            ts=1795000000.5,
            tab_health=TabHealth.OK,
            busy=True,
            memory_bytes=412_000_000,
            task_id="4812",
            url=CONVERSATION,
        ),
        Submit(
            request_id="req-41",
            name="Lighthouse keeper",
            prompts=("A lighthouse in a storm, ink", "The keeper's kitchen at dawn, watercolour"),
        ),
        Submit(
            request_id="req-41b",
            name="Lighthouse keeper",
            path="/home/anna/scripts/lighthouse.txt",
            naming="{chapter}/{page:03}-{panel}",
        ),
        Submitted(re="req-41", job_id="lighthouse-keeper-20261123-7f3a", tasks=2),
        Subscribe(request_id="req-43", job_ids=("lighthouse-keeper-20261123-7f3a",), interval=1.0),
        JobProgress(
            job_id="lighthouse-keeper-20261123-7f3a",
            ts=1795000000.0,
            state=JobState.RUNNING,
            total=3000,
            done=1250,
            failed_terminal=3,
            percent=41.67,
            throughput_per_min=18.5,
            eta_seconds=5660.0,
            workers=(
                WorkerStat(
                    worker_id="ext-7f3a-tab-1",
                    account_id="profile-anna",
                    done=640,
                    failed=4,
                    rate_limited=1,
                    success_rate=0.99,
                    mean_latency=38.2,
                    p95_latency=61.0,
                    connected=True,
                ),
            ),
        ),
        Errors(
            job_id="lighthouse-keeper-20261123-7f3a",
            ts=1795000000.0,
            groups=(
                ErrorGroup(
                    kind=ErrorKind.TIMEOUT,
                    count=7,
                    message="no image after 300 s",
                    last_at=1794999950.0,
                    task_ids=("4790", "4801"),
                ),
            ),
        ),
        Control(
            request_id="req-44",
            job_id="lighthouse-keeper-20261123-7f3a",
            action=ControlAction.PAUSE,
        ),
        ListJobs(request_id="req-45", states=(JobState.RUNNING, JobState.PAUSED), limit=20),
        Jobs(
            re="req-45",
            jobs=(
                JobSummary(
                    job_id="lighthouse-keeper-20261123-7f3a",
                    name="Lighthouse keeper",
                    state=JobState.RUNNING,
                    total=3000,
                    done=1250,
                    failed_terminal=3,
                    created_at=1794990000.0,
                ),
            ),
        ),
    ]
