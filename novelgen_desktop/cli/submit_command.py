"""``novelgen submit`` and ``novelgen follow``: hand a script to a running hub and watch it.

``novelgen run`` owns its job and its workers for as long as it runs; with a hub
(``novelgen serve``) the job belongs to the hub, which keeps it across restarts and feeds it
to whatever tabs are connected. So ``submit`` only sends the script's path (the hub parses
it: errors name ``file:line``), then follows the job like any other client. Leaving (Ctrl-C,
``--detach``) never stops the job; ``follow`` picks it up again.

Exit codes, as for ``run``: 0 finished; 1 incomplete or cancelled (or the hub went away while
following); 2 bad input, the hub refused the script, no hub, a refused token; 130 Ctrl-C
while following (the job goes on in the hub).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

from novelgen_desktop.cli.display import ProgressDisplay, format_duration
from novelgen_desktop.cli.hub_client import (
    HubClient,
    HubGoneError,
    HubRequestError,
    open_hub,
    read_token,
)
from novelgen_desktop.cli.hub_commands import DEFAULT_PORT
from novelgen_desktop.cli.style_commands import add_style_options, resolve_style_path
from novelgen_desktop.engine.model import ChatStrategy, JobState
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.paths import DataPaths
from novelgen_desktop.protocol.messages import (
    Errors,
    JobProgress,
    Jobs,
    ListJobs,
    Message,
    Submit,
    Submitted,
    Subscribe,
)

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_HUB = f"ws://127.0.0.1:{DEFAULT_PORT}/"
WAITING_HINT_AFTER = 5.0
"""Seconds without a connected worker before saying how to get one (a tab that is
reconnecting comes back well within this)."""
FOLLOW_INTERVAL = 1.0
_FINAL = frozenset({JobState.FINISHED, JobState.INCOMPLETE, JobState.CANCELLED})


def add_submit_commands(commands: Any) -> None:
    hub_url = DEFAULT_HUB
    submit = commands.add_parser(
        "submit",
        help="hand a script to a running hub (novelgen serve) and follow the job",
        description="Send a script file to a running hub as a new job, then show its progress "
        "until it ends. The hub reads the file itself, so it must be on the hub's machine.",
    )
    submit.add_argument(
        "file",
        metavar="FILE",
        help="script or prompt file (any format `novelgen validate` knows); one job per submit",
    )
    _add_hub_options(submit, hub_url)
    submit.add_argument("--name", help="job name (default: the file's name)")
    submit.add_argument(
        "--out", metavar="DIR", help="output root; images go to DIR/<job>/ (default: the hub's)"
    )
    submit.add_argument("--template", help="file naming template (default: the hub's)")
    submit.add_argument(
        "--priority",
        type=_priority,
        help="queue priority, -1000..1000; higher runs first (default 0)",
    )
    submit.add_argument(
        "--detach", action="store_true", help="print the job id and return; do not follow"
    )
    add_style_options(submit)

    follow = commands.add_parser(
        "follow",
        help="show a hub job's progress until it ends (default: the latest running job)",
    )
    follow.add_argument("job", nargs="?", metavar="JOB", help="job id or unique prefix")
    _add_hub_options(follow, hub_url)


def _add_hub_options(parser: argparse.ArgumentParser, hub_url: str) -> None:
    parser.add_argument(
        "--hub", default=hub_url, metavar="URL", help=f"the hub (default {hub_url})"
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="the hub's pairing token (default: this data dir's, as `novelgen pair` shows)",
    )


def _priority(text: str) -> int:
    value = int(text)
    if not -1000 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected -1000..1000, got {text}")
    return value


def _token(args: argparse.Namespace, paths: DataPaths) -> tuple[str, Path]:
    from novelgen_desktop.server.pairing import token_file  # noqa: PLC0415

    if args.token_file:
        path = Path(args.token_file)
        return read_token(path), path
    path = token_file(paths)
    if not path.exists():  # `novelgen serve` creates it: no hub has run on this data dir
        raise ConfigError(
            f"no pairing token in {path}: no hub has run with this data dir; start it with "
            "`novelgen serve` (same --data-dir), or give --token-file"
        )
    return read_token(path), path


def _say(message: str) -> None:
    print(f"novelgen: {message}", file=sys.stderr, flush=True)


# --- commands -----------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace, paths: DataPaths) -> int:
    token, token_path = _token(args, paths)
    script = Path(args.file).expanduser().resolve()
    request = Submit(
        request_id="cli-submit",
        name=(args.name or script.stem)[:200] or "job",
        path=str(script),
        out_dir=str(Path(args.out).expanduser().resolve()) if args.out else None,
        naming=args.template,
        priority=args.priority,
        style=resolve_style_path(args.style),
        chat_strategy=ChatStrategy(args.chat_strategy) if args.chat_strategy else None,
        max_chat_turns=args.max_chat_turns,
    )
    return asyncio.run(_submit(args, request, token, token_path))


def cmd_follow(args: argparse.Namespace, paths: DataPaths) -> int:
    token, token_path = _token(args, paths)
    return asyncio.run(_follow_command(args, token, token_path))


async def _submit(args: argparse.Namespace, request: Submit, token: str, token_path: Path) -> int:
    async with open_hub(args.hub, token, token_path=token_path) as hub:
        try:
            answer = await hub.request(request)
        except HubRequestError as exc:
            _say(f"error: the hub refused the job; nothing was created:\n{exc.error.message}")
            return EXIT_USAGE
        except HubGoneError as exc:
            raise ConfigError(
                f"the hub at {args.hub} closed the connection before answering"
            ) from exc
        assert isinstance(answer, Submitted), answer
        _say(f"job {answer.job_id}: {answer.tasks} image(s) queued on the hub at {args.hub}")
        print(answer.job_id, flush=True)  # stdout: the id alone, for scripts
        if args.detach:
            _say(f"follow it with: novelgen follow {answer.job_id}{_hub_option(args)}")
            return EXIT_OK
        return await follow_job(hub, answer.job_id, args)


async def _follow_command(args: argparse.Namespace, token: str, token_path: Path) -> int:
    async with open_hub(args.hub, token, token_path=token_path) as hub:
        job_id = await _choose_job(hub, args.job)
        _say(f"following job {job_id} on the hub at {args.hub}")
        return await follow_job(hub, job_id, args)


async def _choose_job(hub: HubClient, ref: str | None) -> str:
    """The job ``ref`` names (an exact id or a unique prefix, as the other commands accept),
    or the newest running or paused job, or else the newest job."""
    answer = await hub.request(ListJobs(request_id=hub.next_id(), limit=1000))
    assert isinstance(answer, Jobs), answer
    jobs = list(answer.jobs)
    if ref:
        exact = [j for j in jobs if j.job_id == ref]
        matches = exact or [j for j in jobs if j.job_id.startswith(ref)]
        if len(matches) == 1:
            return matches[0].job_id
        if not matches:
            raise ConfigError(f"the hub has no job {ref!r} (see: novelgen jobs)")
        raise ConfigError(f"{ref!r} names {len(matches)} jobs; give more of the id")
    live = [j for j in jobs if j.state in (JobState.RUNNING, JobState.PAUSED)]
    chosen = live or jobs
    if not chosen:
        raise ConfigError("the hub has no jobs yet; start one with: novelgen submit FILE")
    return chosen[0].job_id


# --- following ------------------------------------------------------------------------------


async def follow_job(hub: HubClient, job_id: str, args: argparse.Namespace) -> int:
    """Show ``job_id``'s progress until it ends. Ctrl-C (or SIGTERM) stops following, not
    the job: the hub owns it."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    try:
        await hub.request(
            Subscribe(request_id=hub.next_id(), job_ids=(job_id,), interval=FOLLOW_INTERVAL)
        )
        watcher = _Watcher(hub, job_id)
        with ProgressDisplay() as display:
            watcher.display = display
            ended = await _until_end_or_interrupt(watcher, interrupted)
    except HubGoneError:
        ended = False
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    again = f"novelgen follow {job_id}{_hub_option(args)}"
    if interrupted.is_set() and not ended:
        _say(f"stopped following; job {job_id} goes on in the hub. Follow it again with: {again}")
        return EXIT_INTERRUPTED
    if not ended:
        why = f" ({hub.bye.reason.value})" if hub.bye is not None else ""
        _say(
            f"the hub went away{why} before job {job_id} ended; it resumes when the hub "
            f"runs again (novelgen serve). Then: {again}"
        )
        return EXIT_INCOMPLETE
    return watcher.summary()


async def _until_end_or_interrupt(watcher: _Watcher, interrupted: asyncio.Event) -> bool:
    watching = asyncio.create_task(watcher.run())
    stopping = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not watching.done():
            watching.cancel()
    if watching.done() and not watching.cancelled():
        return watching.result()
    return False


class _Watcher:
    """What the hub said about one job, and when to tell the user that no tab works on it."""

    def __init__(self, hub: HubClient, job_id: str) -> None:
        self.hub = hub
        self.job_id = job_id
        self.display: ProgressDisplay | None = None
        self.progress: JobProgress | None = None
        self.errors: Errors | None = None
        self.started = time.monotonic()
        self._idle_since: float | None = time.monotonic()
        self._hinted = False

    async def run(self) -> bool:
        """True once the job is in a final state; False when the connection ended first."""
        while True:
            try:
                async with asyncio.timeout(1.0):
                    message = await self.hub.events.get()
            except TimeoutError:
                await self._maybe_hint()
                continue
            if message is None:
                return False
            if self._see(message):
                return True
            await self._maybe_hint()

    def _see(self, message: Message) -> bool:
        if isinstance(message, Errors) and message.job_id == self.job_id:
            self.errors = message
        elif isinstance(message, JobProgress) and message.job_id == self.job_id:
            self.progress = message
            working = any(w.connected is not False for w in message.workers)
            if working or message.state is not JobState.RUNNING:
                self._idle_since = None
            elif self._idle_since is None:
                self._idle_since = time.monotonic()
            if self.display is not None:
                self.display.show(message.done, message.total, progress_line(message))
            return message.state in _FINAL
        return False

    async def _maybe_hint(self) -> None:
        """Once per wait: no connected tab has worked on the job for WAITING_HINT_AFTER s."""
        if self._idle_since is None:
            self._hinted = False
            return
        if self._hinted or time.monotonic() - self._idle_since < WAITING_HINT_AFTER:
            return
        self._hinted = True
        ahead = await self._jobs_ahead()
        if ahead:
            _say(f"job {self.job_id} waits in the hub's queue behind {ahead} earlier job(s)")
        else:
            _say(
                "waiting for ChatGPT tabs: install and pair the extension (docs/extension.md) "
                "or start `novelgen sim-worker`"
            )

    async def _jobs_ahead(self) -> int:
        """Running jobs submitted before this one: the hub runs one job at a time."""
        try:
            answer = await self.hub.request(
                ListJobs(request_id=self.hub.next_id(), states=(JobState.RUNNING,), limit=1000)
            )
        except (HubRequestError, HubGoneError):
            return 0
        assert isinstance(answer, Jobs), answer
        mine = next((j for j in answer.jobs if j.job_id == self.job_id), None)
        if mine is None:
            return 0
        return sum(j.job_id != self.job_id and j.created_at <= mine.created_at for j in answer.jobs)

    def summary(self) -> int:
        progress = self.progress
        assert progress is not None
        elapsed = format_duration(time.monotonic() - self.started)
        _say(
            f"job {self.job_id}: {progress.state.value}: {progress.done}/{progress.total} "
            f"image(s) done ({elapsed} followed)"
        )
        if progress.state is JobState.FINISHED:
            return EXIT_OK
        if progress.failed_terminal:
            _say(f"  {progress.failed_terminal} task(s) not done")
        groups = self.errors.groups if self.errors is not None else ()
        for group in groups[:10]:
            message = group.message.splitlines()[0] if group.message else ""
            _say(f"  {group.count:>5} × {group.kind.value}: {message}")
        if len(groups) > 10:
            _say(f"  … and {len(groups) - 10} more kinds of error")
        _say(f"  details: novelgen status {self.job_id} (on the hub's machine)")
        return EXIT_INCOMPLETE


def progress_line(progress: JobProgress) -> str:
    """One line like ``run``'s: counts, throughput, ETA, tabs, trouble."""
    connected = sum(w.connected is not False for w in progress.workers)
    parts = [
        f"{progress.done}/{progress.total} done ({progress.percent:.1f}%)",
        f"{progress.throughput_per_min:.1f} img/min",
        f"ETA {format_duration(progress.eta_seconds)}",
        f"{connected} tab(s)",
    ]
    if progress.failed_terminal:
        parts.append(f"{progress.failed_terminal} failed for good")
    if progress.cooling_until is not None:
        until = time.strftime("%H:%M:%S", time.localtime(progress.cooling_until))
        parts.append(f"all accounts cooling down until {until}")
    if progress.state is JobState.PAUSED:
        parts.append("PAUSED")
    return " · ".join(parts)


def _hub_option(args: argparse.Namespace) -> str:
    return "" if args.hub == DEFAULT_HUB else f" --hub {args.hub}"
