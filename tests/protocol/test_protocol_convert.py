"""Engine value types ↔ protocol messages."""

from __future__ import annotations

import hashlib

from novelgen_desktop.engine.model import Assignment, ErrorKind, WorkerFailure
from novelgen_desktop.protocol import messages as m
from novelgen_desktop.protocol.convert import (
    assign_from,
    task_error_from,
    worker_failure,
    worker_result,
)


def test_assignment_round_trip_through_the_wire() -> None:
    assignment = Assignment(
        4812, 2, "a lighthouse", 1795000600.0, {"chapter": "1", "page": 3, "panel": None}
    )
    frame = m.decode(m.encode(assign_from(assignment)))
    assert isinstance(frame, m.Assign)
    assert (int(frame.task_id), frame.attempt, frame.prompt, frame.deadline) == (
        4812,
        2,
        "a lighthouse",
        1795000600.0,
    )
    assert frame.metadata == {"chapter": "1", "page": 3, "panel": None}
    weird = Assignment(1, 1, "p", 10.0, {"tags": ["a", "b"]})
    assert assign_from(weird).metadata == {"tags": "['a', 'b']"}
    assert assign_from(Assignment(1, 1, "p", 10.0)).metadata is None


def test_result_and_failure() -> None:
    image = b"\x89PNG\r\n\x1a\nxyz"
    result = m.Result(
        task_id="9",
        attempt=1,
        sha256=hashlib.sha256(image).hexdigest(),
        size=len(image),
        mime=m.ImageMime.PNG,
        encoding=m.ImageEncoding.BINARY,
        image_id="img-1",
    )
    engine = worker_result(result, image)
    assert (engine.task_id, engine.attempt, engine.image, engine.mime) == (9, 1, image, "image/png")
    failure = WorkerFailure(9, 2, ErrorKind.RATE_LIMITED, "resets in 1 hour", retry_after=3600.0)
    frame = m.decode(m.encode(task_error_from(failure)))
    assert isinstance(frame, m.TaskError)
    assert worker_failure(frame) == failure
