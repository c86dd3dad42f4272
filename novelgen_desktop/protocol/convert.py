"""Between engine value types and protocol messages (the hub's side of the Worker protocol)."""

from __future__ import annotations

import base64
from typing import Any

from novelgen_desktop.engine.model import Assignment, ReferenceFile, WorkerFailure, WorkerResult
from novelgen_desktop.protocol.messages import (
    Assign,
    ImageMime,
    ReferenceImage,
    ReferenceRef,
    Result,
    TaskError,
)
from novelgen_desktop.protocol.schema import Metadata, Scalar


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


def assign_from(assignment: Assignment, *, references: bool = True) -> Assign:
    """The ``assign`` frame for an engine assignment (non-scalar metadata becomes text).

    ``references=False`` for a worker without the ``references`` capability.
    """
    metadata: Metadata = {str(k): _scalar(v) for k, v in assignment.metadata.items()}
    return Assign(
        task_id=str(assignment.task_id),
        attempt=assignment.attempt,
        prompt=assignment.prompt,
        deadline=float(assignment.deadline),
        metadata=metadata or None,
        references=tuple(
            ReferenceRef(sha256=ref.sha256, name=ref.name, mime=ImageMime(ref.mime))
            for ref in assignment.references
        )
        if references
        else (),
    )


def reference_image_from(reference: ReferenceFile, data: bytes) -> ReferenceImage:
    """The ``reference_image`` frame carrying ``data`` (the bytes of ``reference``)."""
    return ReferenceImage(
        sha256=reference.sha256,
        name=reference.name,
        mime=ImageMime(reference.mime),
        size=len(data),
        data=base64.b64encode(data).decode("ascii"),
    )


def assignment_from(assign: Assign) -> Assignment:
    """The engine assignment for an ``assign`` frame (the inverse of :func:`assign_from`)."""
    return Assignment(
        task_id=int(assign.task_id),
        attempt=assign.attempt,
        prompt=assign.prompt,
        deadline=assign.deadline,
        metadata=dict(assign.metadata or {}),
        # Where the bytes are is the receiving worker's business: it fills ``path`` in.
        references=tuple(
            ReferenceFile(sha256=ref.sha256, name=ref.name, mime=ref.mime.value, path="")
            for ref in assign.references
        ),
    )


def worker_result(result: Result, image: bytes) -> WorkerResult:
    """The engine's result for a verified image (see ``framing.ImageReceiver``)."""
    return WorkerResult(
        task_id=int(result.task_id),
        attempt=result.attempt,
        image=image,
        conversation_url=result.conversation_url,
        image_id=result.image_id,
        mime=result.mime.value,
    )


def worker_failure(error: TaskError) -> WorkerFailure:
    return WorkerFailure(
        task_id=int(error.task_id),
        attempt=error.attempt,
        kind=error.kind,
        message=error.message,
        retry_after=error.retry_after,
        conversation_url=error.conversation_url,
    )


def task_error_from(failure: WorkerFailure) -> TaskError:
    """For the Python simulated worker: its failure as a ``task_error`` frame."""
    return TaskError(
        task_id=str(failure.task_id),
        attempt=failure.attempt,
        kind=failure.kind,
        message=failure.message[:4096],
        retry_after=failure.retry_after,
        conversation_url=failure.conversation_url,
    )
