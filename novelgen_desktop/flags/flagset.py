"""The effective flag set: layers resolved, and experiments assigned by a stable hash.

Layers, lowest first: the registry's defaults < the local file < the remote configuration <
environment / command-line overrides. A rollback pins the shared part (defaults, local,
remote) to an earlier version; overrides stay on top because they belong to this process's
command line, not to the shared configuration that is versioned.

An experiment's variant for a task or a worker is a pure function of (salt, id): the same
panel gets the same variant in every process, on every retry and after a restart, which is
what makes the per-variant figures of ``novelgen flags report`` comparable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from novelgen_desktop.flags.document import FlagLayer, FlagSetting, Variant
from novelgen_desktop.flags.registry import FLAGS, REGISTRY, FlagUnit, FlagValue

_SCALE = float(1 << 64)


def default_layer() -> FlagLayer:
    return {flag.name: FlagSetting(value=flag.default) for flag in FLAGS}


def bucket(salt: str, unit_id: str) -> float:
    """A point in [0, 1) fixed by ``salt`` and ``unit_id`` (uniform over ids)."""
    digest = hashlib.sha256(f"{salt}\x00{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def choose_variant(name: str, setting: FlagSetting, unit_id: str) -> Variant:
    """The variant of ``setting`` (an experiment on flag ``name``) for ``unit_id``."""
    total = sum(v.weight for v in setting.variants)
    point = bucket(setting.salt or name, unit_id) * total
    running = 0.0
    for variant in setting.variants:
        running += variant.weight
        if point < running and variant.weight > 0:
            return variant
    return next(v for v in reversed(setting.variants) if v.weight > 0)


def settings_digest(layer: Mapping[str, FlagSetting]) -> str:
    """Identifies a shared set by content: a new version is recorded only when it changes."""
    text = json.dumps({k: layer[k].to_json() for k in sorted(layer)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve_shared(
    local: FlagLayer | None, remote: FlagLayer | None
) -> tuple[FlagLayer, dict[str, str]]:
    """defaults < local < remote, with where each flag's setting came from."""
    layer = default_layer()
    sources = dict.fromkeys(layer, "default")
    for name_of_source, overlay in (("local file", local), ("remote", remote)):
        for name, setting in (overlay or {}).items():
            layer[name] = setting
            sources[name] = name_of_source
    return layer, sources


@dataclass(frozen=True, slots=True)
class FlagSet:
    """One immutable effective set; the engine reads it at each decision."""

    shared: Mapping[str, FlagSetting] = field(default_factory=default_layer)
    sources: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, FlagSetting] = field(default_factory=dict)
    override_sources: Mapping[str, str] = field(default_factory=dict)
    version: int = 0  # the shared set's version in the history (0: never recorded)
    pinned_to: int | None = None  # a rollback in force: the version it restored

    def setting(self, name: str) -> FlagSetting:
        if name not in REGISTRY:
            raise KeyError(f"unknown flag {name!r}")
        found = self.overrides.get(name) or self.shared.get(name)
        return found if found is not None else FlagSetting(value=REGISTRY[name].default)

    def source(self, name: str) -> str:
        return self.override_sources.get(name) or self.sources.get(name, "default")

    def variant(self, name: str, unit_id: str) -> str | None:
        """The experiment variant ``unit_id`` is in, or None if ``name`` is not split."""
        setting = self.setting(name)
        return choose_variant(name, setting, unit_id).name if setting.is_experiment else None

    def value(self, name: str, unit_id: str | None = None) -> FlagValue:
        """The flag's value (for ``unit_id``, when it is an experiment)."""
        setting = self.setting(name)
        if not setting.is_experiment:
            assert setting.value is not None
            return setting.value
        if unit_id is None:  # a decision not about one task or tab: the registry default
            return REGISTRY[name].default
        return choose_variant(name, setting, unit_id).value

    def enabled(self, name: str, unit_id: str | None = None) -> bool:
        return bool(self.value(name, unit_id))

    def variants_for(self, task_unit: str, worker_unit: str) -> dict[str, str]:
        """Every experiment's variant for this attempt (recorded with it)."""
        chosen: dict[str, str] = {}
        for flag in FLAGS:
            setting = self.setting(flag.name)
            if setting.is_experiment:
                unit = task_unit if flag.unit is FlagUnit.TASK else worker_unit
                chosen[flag.name] = choose_variant(flag.name, setting, unit).name
        return chosen

    def browser_flags(self) -> dict[str, FlagValue]:
        """What the extension obeys (configure.flags). A split flag is sent as its default:
        the hub makes the per-task decision itself (an assign lists no references)."""
        out: dict[str, FlagValue] = {}
        for flag in FLAGS:
            if flag.browser:
                setting = self.setting(flag.name)
                out[flag.name] = flag.default if setting.is_experiment else self.value(flag.name)
        return out

    def digest(self) -> str:
        return settings_digest(self.shared)


class FlagSource(Protocol):
    """Anything with the set in force now (the live FlagService, or a fixed set in tests and
    in commands run without a data folder's flags)."""

    @property
    def current(self) -> FlagSet: ...


@dataclass(slots=True)
class FixedFlags:
    current: FlagSet = field(default_factory=FlagSet)


def task_unit(job_id: str, task_id: int) -> str:
    """The id a task's experiments hash: stable across retries, restarts and processes."""
    return f"{job_id}/{task_id}"


__all__ = [
    "FixedFlags",
    "FlagSet",
    "FlagSource",
    "bucket",
    "choose_variant",
    "default_layer",
    "resolve_shared",
    "settings_digest",
    "task_unit",
]
