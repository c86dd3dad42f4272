"""Every feature flag NovelGen knows, defined once in code.

A flag exists so that a subsystem can be switched off at once, without a new release, when it
misbehaves in the field (the requirements' contingency plan: "fallback to single-tab mode if
orchestration fails", "gradual rollout with instant rollback"), or compared against the old
way on real work (an A/B experiment). A configuration file can only set flags listed here, to
values of the declared type: a typo in a remote file is an error, not a silently ignored key.

``unit`` says what a flag is decided for. ``global`` flags have one value for the whole
process (the hub decides how many tabs run); ``task`` and ``worker`` flags may be split into
weighted variants, each task (or tab) assigned one by a stable hash (see ``flagset``).
``browser`` flags are also sent to the extension in ``configure.flags``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

FlagValue = bool | int | float | str


class FlagKind(enum.StrEnum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    CHOICE = "choice"


class FlagUnit(enum.StrEnum):
    """What one decision of the flag covers (and what an experiment hashes)."""

    GLOBAL = "global"  # the whole hub: no variants
    TASK = "task"  # each task (panel) on its own: variants hash the task
    WORKER = "worker"  # each tab on its own: variants hash the worker id


@dataclass(frozen=True, slots=True)
class FlagDefinition:
    name: str
    description: str
    kind: FlagKind
    default: FlagValue
    owner: str  # the subsystem that reads it (for the docs and the GUI's table)
    unit: FlagUnit = FlagUnit.GLOBAL
    kill_switch: bool = False  # turning it off falls back to the old, simpler way
    browser: bool = False  # also sent to the extension (configure.flags)
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def experimentable(self) -> bool:
        return self.unit is not FlagUnit.GLOBAL

    def expected(self) -> str:
        """What a value of this flag looks like, for error messages."""
        match self.kind:
            case FlagKind.BOOL:
                return "true or false"
            case FlagKind.CHOICE:
                return "one of " + ", ".join(self.choices)
            case _:
                low = "" if self.minimum is None else f"≥ {self.minimum:g}"
                high = "" if self.maximum is None else f"≤ {self.maximum:g}"
                bounds = " and ".join(part for part in (low, high) if part)
                noun = "a whole number" if self.kind is FlagKind.INT else "a number"
                return f"{noun} {bounds}".strip()


FLAGS: tuple[FlagDefinition, ...] = (
    FlagDefinition(
        "multi_tab",
        "Run several ChatGPT tabs at once. Off: the single-tab fallback — one tab works, the "
        "others stay idle (the extension closes them), for when tab orchestration misbehaves.",
        FlagKind.BOOL,
        True,
        owner="orchestration",
        kill_switch=True,
        browser=True,
    ),
    FlagDefinition(
        "auto_single_tab",
        "Switch multi_tab off by itself when tabs keep failing together (10 tab failures — "
        "lost, stuck or page errors — in 10 minutes, 60 % of the attempts, on two or more "
        "tabs). Off: only you or the remote configuration switch to the single-tab fallback.",
        FlagKind.BOOL,
        True,
        owner="orchestration",
        kill_switch=True,
    ),
    FlagDefinition(
        "memory_governor",
        "Hold dispatch back and clean up when memory runs short. Off: memory is watched and "
        "logged only (as with --no-memory-governor).",
        FlagKind.BOOL,
        True,
        owner="memory",
        kill_switch=True,
    ),
    FlagDefinition(
        "reference_images",
        "Attach the style bible's reference images to the prompts that name them. Off: the "
        "composed prompt is sent alone.",
        FlagKind.BOOL,
        True,
        owner="style",
        unit=FlagUnit.TASK,
        kill_switch=True,
        browser=True,
    ),
    FlagDefinition(
        "chat_strategies",
        "Keep a page's or chapter's panels in one conversation on one tab (the job's chat "
        "strategy). Off: every job runs as 'panel', any tab takes any panel.",
        FlagKind.BOOL,
        True,
        owner="scheduler",
        kill_switch=True,
    ),
    FlagDefinition(
        "selector_updates",
        "Let the hub push a newer ChatGPT selector table to the extensions. Off: they use the "
        "table built into the extension.",
        FlagKind.BOOL,
        True,
        owner="extension",
        kill_switch=True,
        browser=True,
    ),
    FlagDefinition(
        "fresh_chat",
        "Start a new ChatGPT conversation for every panel of a 'panel' job instead of going "
        "on in the tab's current one (an experiment: does a clean context draw faster or get "
        "refused less?).",
        FlagKind.BOOL,
        False,
        owner="scheduler",
        unit=FlagUnit.TASK,
    ),
)

REGISTRY: dict[str, FlagDefinition] = {flag.name: flag for flag in FLAGS}


def browser_flag_names() -> tuple[str, ...]:
    return tuple(flag.name for flag in FLAGS if flag.browser)


__all__ = [
    "FLAGS",
    "REGISTRY",
    "FlagDefinition",
    "FlagKind",
    "FlagUnit",
    "FlagValue",
    "browser_flag_names",
]
