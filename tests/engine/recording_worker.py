"""A simulated tab that remembers every assignment it was given (what was asked, in order)."""

from __future__ import annotations

from novelgen_desktop.engine.model import Assignment, WorkerOutcome
from novelgen_desktop.sim.worker import SimBehaviour, SimulatedWorker

FAST = SimBehaviour(latency_median=0.01, latency_sigma=0.0, image_size=32)


class RecordingWorker(SimulatedWorker):
    def __init__(self, name: str) -> None:
        super().__init__(name, f"account-{name}", FAST)
        self.seen: list[Assignment] = []

    async def execute(self, assignment: Assignment) -> WorkerOutcome:
        self.seen.append(assignment)
        return await super().execute(assignment)
