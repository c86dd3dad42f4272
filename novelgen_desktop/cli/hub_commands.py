"""``novelgen serve``, ``novelgen pair`` and ``novelgen sim-worker``: the hub headless, its
pairing token, and simulated tabs as a separate process over the real protocol."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novelgen_desktop.cli import options
from novelgen_desktop.engine.runner import RunSettings
from novelgen_desktop.errors import ConfigError
from novelgen_desktop.output.naming import DEFAULT_TEMPLATE, NamingTemplate
from novelgen_desktop.paths import DataPaths

if TYPE_CHECKING:
    from novelgen_desktop.engine.service import JobService
    from novelgen_desktop.flags.service import FlagService
    from novelgen_desktop.memory.monitor import MemoryMonitor, MonitorSettings
    from novelgen_desktop.protocol.messages import Configure
    from novelgen_desktop.server.hub import Hub

DEFAULT_PORT = 8765
log = logging.getLogger("novelgen_desktop.cli")


def add_hub_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the hub headless: extension tabs and sim workers connect, clients submit jobs",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; anything else needs TLS or --insecure)",
    )
    serve.add_argument(
        "--port",
        type=options.port,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM)")
    serve.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without TLS (the token travels in the clear)",
    )
    serve.add_argument(
        "--allow-extension",
        action="append",
        default=[],
        metavar="ID",
        help="also accept this Chrome extension id (see: novelgen pair --allow-extension)",
    )
    serve.add_argument(
        "--ready-file",
        metavar="FILE",
        help="write {url, port, pid, token_file} as JSON here once listening",
    )
    serve.add_argument("--out", help="output root for submitted jobs (default DATA/output)")
    serve.add_argument("--template", default=DEFAULT_TEMPLATE, help="default naming template")
    serve.add_argument(
        "--restart-grace",
        type=options.seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long a dropped worker keeps its attempt for a reconnect (default 30)",
    )
    serve.add_argument("--lease-seconds", type=float, help="seconds a worker may hold a task (600)")
    serve.add_argument("--backoff-base", type=float, help="first retry delay ceiling (5 s)")
    serve.add_argument("--max-failures", type=options.positive_int, help="failures before dead (5)")
    serve.add_argument(
        "--min-cooldown",
        type=options.seconds,
        metavar="SECONDS",
        help="shortest rest of a rate-limited account, whatever the page announced (5)",
    )
    serve.add_argument(
        "--snapshot-every", type=options.positive_int, help="completions per snapshot"
    )
    serve.add_argument(
        "--tabs",
        type=options.tab_count,
        metavar="N",
        help="ChatGPT tabs each connected extension should run (1–10; default: its own setting)",
    )
    serve.add_argument(
        "--chat-mode",
        choices=("per_task", "per_sequence"),
        help="extensions start a new chat per task, or per page of the script",
    )
    serve.add_argument(
        "--selectors",
        type=Path,
        metavar="FILE",
        help="a newer selector table (JSON) pushed to every extension (see docs/extension.md)",
    )
    memory = serve.add_argument_group("memory governor (docs/memory.md)")
    memory.add_argument(
        "--memory-pause",
        type=float,
        default=80.0,
        metavar="PCT",
        help="stop new dispatch when system memory in use reaches PCT %% (default 80)",
    )
    memory.add_argument(
        "--memory-resume",
        type=float,
        default=60.0,
        metavar="PCT",
        help="let workers back once it is down to PCT %% (default 60)",
    )
    memory.add_argument(
        "--memory-critical",
        type=float,
        default=90.0,
        metavar="PCT",
        help="also call back attempts not yet sent to ChatGPT at PCT %% (default 90)",
    )
    memory.add_argument(
        "--memory-interval",
        type=options.seconds,
        default=0.1,
        metavar="SECONDS",
        help="how often system memory is read (default 0.1)",
    )
    memory.add_argument(
        "--no-memory-governor",
        action="store_true",
        help="never hold dispatch back or clean up for memory (memory is still watched)",
    )
    memory.add_argument(
        "--synthetic-memory",
        type=options.synthetic_memory,
        metavar="TOTAL_MIB,BASE_MIB",
        help="pretend the machine has TOTAL MiB with BASE in use plus the tabs' reported heaps "
        "(demos and CI pressure scenarios with sim-worker --heap-growth)",
    )
    serve.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    options.add_flag_options(serve)

    pair = commands.add_parser("pair", help="show the hub's pairing token and paired extensions")
    pair.add_argument("--show-token", action="store_true", help="print only the token")
    pair.add_argument(
        "--regenerate",
        action="store_true",
        help="replace the token (every paired extension and script must be given the new one)",
    )
    pair.add_argument(
        "--allow-extension", metavar="ID", help="pair this Chrome extension id (32 letters a–p)"
    )
    pair.add_argument(
        "--port", type=options.port, default=DEFAULT_PORT, help="port shown in the URL"
    )

    sim = commands.add_parser(
        "sim-worker", help="run simulated ChatGPT tabs that connect to a hub over WebSocket"
    )
    sim.add_argument("--url", default=f"ws://127.0.0.1:{DEFAULT_PORT}/", help="the hub's URL")
    sim.add_argument("--token", help="pairing token (default: this data dir's token)")
    sim.add_argument("--token-file", metavar="FILE", help="read the pairing token from FILE")
    sim.add_argument("--cafile", metavar="FILE", help="CA certificate to trust for wss://")
    sim.add_argument(
        "--count", type=options.positive_int, default=1, help="simulated tabs (default 1)"
    )
    sim.add_argument(
        "--accounts", type=options.positive_int, help="accounts they share (default: one each)"
    )
    sim.add_argument("--id-prefix", default="sim", help="worker ids are PREFIX-1… (default sim)")
    sim.add_argument(
        "--latency", type=options.seconds, default=0.5, help="median seconds per image"
    )
    sim.add_argument("--latency-sigma", type=options.seconds, default=0.5, help="log-normal spread")
    sim.add_argument(
        "--fail-rate", type=options.rate, default=0.0, help="transient failures per attempt"
    )
    sim.add_argument("--refusal-rate", type=options.rate, default=0.0, help="refusals per attempt")
    sim.add_argument("--invalid-image-rate", type=options.rate, default=0.0, help="broken images")
    sim.add_argument("--crash-rate", type=options.rate, default=0.0, help="crashes per attempt")
    sim.add_argument("--rate-limit-every", type=options.count, default=0, metavar="N")
    sim.add_argument("--rate-limit-reset", type=options.seconds, default=30.0, metavar="SECONDS")
    sim.add_argument(
        "--crash-every", type=options.count, default=0, metavar="N", help="crash, come back as new"
    )
    sim.add_argument(
        "--restart-delay",
        type=options.seconds,
        default=1.0,
        help="seconds a crashed tab stays away",
    )
    sim.add_argument(
        "--disconnect-every", type=options.count, default=0, metavar="N", help="drop mid-task"
    )
    sim.add_argument(
        "--away",
        type=options.seconds,
        default=0.2,
        help="seconds away after a --disconnect-every drop",
    )
    sim.add_argument("--duplicate-every", type=options.count, default=0, metavar="N")
    sim.add_argument("--memory-pressure-every", type=options.count, default=0, metavar="N")
    sim.add_argument("--pressure-seconds", type=options.seconds, default=1.0)
    sim.add_argument(
        "--heap-base", type=options.count, default=150, metavar="MIB", help="tab heap at start"
    )
    sim.add_argument(
        "--heap-growth",
        type=options.count,
        default=0,
        metavar="MIB",
        help="the tab's reported heap grows this much per attempt (a reload brings it back)",
    )
    sim.add_argument("--image-size", type=int, default=256, help="image width/height (256)")
    sim.add_argument("--reuse-images", type=options.count, default=0, metavar="N")
    sim.add_argument("--seed", type=int, default=0)


# --- serve --------------------------------------------------------------------------------


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not (cert and key):
        raise ConfigError("--tls-cert and --tls-key go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use TLS certificate {cert} with key {key}: {exc}") from exc
    return context


def _run_settings(args: argparse.Namespace) -> RunSettings:
    given = {key: getattr(args, key) for key in (*options.POLICY_KEYS, "snapshot_every")}
    return options.run_settings(
        {key: value for key, value in given.items() if value is not None},
        wait_for_workers=True,
    )


def _memory_monitor(
    args: argparse.Namespace, service: JobService, hub: Hub, port: int
) -> MemoryMonitor:
    """The memory governor over this hub's workers (started; ``--no-memory-governor``: it
    only watches)."""
    from novelgen_desktop.memory.monitor import (  # noqa: PLC0415
        MemoryMonitor,
        SyntheticSystem,
        reported_heaps,
    )
    from novelgen_desktop.memory.probe import read_system  # noqa: PLC0415

    settings: MonitorSettings = args.memory
    system = read_system
    if args.synthetic_memory is not None:
        total, base = args.synthetic_memory
        system = SyntheticSystem(total, base, extra=lambda: reported_heaps(hub.connected_workers()))
    monitor = MemoryMonitor(
        service, hub.connected_workers, settings, system=system, server_port=port
    )
    monitor.start()
    return monitor


def _write_ready_file(path: Path, info: dict[str, Any]) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(info) + "\n", encoding="utf-8")
    os.replace(temp, path)


def cmd_serve(args: argparse.Namespace, paths: DataPaths) -> int:
    from novelgen_desktop.server.browser_config import browser_config  # noqa: PLC0415
    from novelgen_desktop.server.hub import is_loopback  # noqa: PLC0415 - websockets on demand
    from novelgen_desktop.server.pairing import (  # noqa: PLC0415
        check_extension_id,
        load_or_create_token,
        paired_extensions,
        token_file,
    )

    NamingTemplate(args.template)
    # Checked before anything starts: a bad threshold must not leave a hub half up.
    args.memory = options.memory_settings(
        args.memory_pause,
        args.memory_resume,
        args.memory_critical,
        args.memory_interval,
        governor=not args.no_memory_governor,
    )
    context = _tls_context(args.tls_cert, args.tls_key)
    loopback = is_loopback(args.host)
    if not loopback and context is None and not args.insecure:
        raise ConfigError(
            f"--host {args.host} opens the hub to the network, where anyone who reads the "
            "token can drive your ChatGPT accounts: give --tls-cert and --tls-key, or add "
            "--insecure on a network you trust"
        )
    if not loopback:
        clear = " WITHOUT TLS: the token travels in the clear" if context is None else ""
        print(
            f"novelgen: warning: the hub listens on {args.host}{clear}; every machine that "
            "reaches it and has the token can submit jobs and act as a worker",
            file=sys.stderr,
        )
    paths.ensure()
    token = load_or_create_token(paths)
    extensions = paired_extensions(paths) + [check_extension_id(x) for x in args.allow_extension]
    config = browser_config(args.tabs, args.chat_mode, args.selectors)
    flags = options.open_process_flags(args, paths)  # a bad flag file or --flag starts nothing
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(
        _serve(
            args,
            paths,
            token=token,
            extensions=extensions,
            context=context,
            remote=not loopback,
            token_path=token_file(paths),
            config=config,
            flags=flags,
        )
    )


async def _serve(
    args: argparse.Namespace,
    paths: DataPaths,
    *,
    token: str,
    extensions: list[str],
    context: ssl.SSLContext | None,
    remote: bool,
    token_path: Path,
    config: Configure | None,
    flags: FlagService,
) -> int:
    from novelgen_desktop.engine.service import (  # noqa: PLC0415
        JobService,
        ServiceSettings,
    )
    from novelgen_desktop.server.flag_wiring import FlagWiring  # noqa: PLC0415
    from novelgen_desktop.server.hub import Hub  # noqa: PLC0415

    out_root = Path(args.out).expanduser().resolve() if args.out else None
    service = JobService(
        paths,
        ServiceSettings(run=_run_settings(args), out_root=out_root, naming_template=args.template),
        flags=flags,
    )
    await service.start()
    hub = Hub(
        token,
        extension_ids=extensions,
        restart_grace=args.restart_grace,
        service=service,
        browser_config=config,
    )
    try:
        port = await hub.start(args.host, args.port, ssl_context=context, allow_remote=remote)
    except OSError as exc:
        await service.stop()
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            + (" (another novelgen serve? choose --port)" if args.port else "")
        ) from exc
    monitor = _memory_monitor(args, service, hub, port)
    wiring = FlagWiring(flags, service, hub=hub, monitor=monitor)
    wiring.start()
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"{'wss' if context else 'ws'}://{host}:{port}/"
    print(f"novelgen: hub listening on {url}", file=sys.stderr)
    print(
        f"novelgen: pairing token in {token_path} (show it with: novelgen pair --show-token)",
        file=sys.stderr,
        flush=True,
    )
    if args.ready_file:
        _write_ready_file(
            Path(args.ready_file),
            {"url": url, "port": port, "pid": os.getpid(), "token_file": str(token_path)},
        )
    stop = asyncio.Event()
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print(
                "novelgen: stopping: images in flight may finish (Ctrl-C again: stop now)",
                file=sys.stderr,
            )
            stop.set()
        elif service.runner is not None:
            service.runner.request_stop(now=True)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await stop.wait()
        await wiring.stop()
        await monitor.stop()
        await hub.stop()
    finally:
        flags.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("novelgen: hub stopped", file=sys.stderr)
    return 0


# --- pair ---------------------------------------------------------------------------------


def cmd_pair(args: argparse.Namespace, paths: DataPaths) -> int:
    from novelgen_desktop.server.pairing import (  # noqa: PLC0415
        load_or_create_token,
        pair_extension,
        paired_extensions,
        regenerate_token,
        token_file,
    )

    paths.ensure()
    token = regenerate_token(paths) if args.regenerate else load_or_create_token(paths)
    if args.allow_extension:
        pair_extension(paths, args.allow_extension)
    if args.show_token:
        print(token)
        return 0
    url = f"ws://127.0.0.1:{args.port}/"
    print(f"hub URL:     {url}")
    print(f"token:       {token}")
    print(f"token file:  {token_file(paths)} (readable by you only)")
    # The shipped extension is always first; open its link in the Chrome profile that has it.
    for extension_id in paired_extensions(paths):
        print(
            f"extension:   {extension_id}  pairing link: chrome-extension://{extension_id}"
            f"/options/options.html#hub={url}&token={token}"
        )
    if args.regenerate:
        print("the old token no longer works: give the new one to every extension and script")
    return 0


# --- sim-worker ---------------------------------------------------------------------------


def cmd_sim_worker(args: argparse.Namespace, paths: DataPaths) -> int:
    from novelgen_desktop.protocol.messages import TOKEN  # noqa: PLC0415
    from novelgen_desktop.server.pairing import read_token_file, token_file  # noqa: PLC0415
    from novelgen_desktop.sim.remote import RemoteFaults  # noqa: PLC0415
    from novelgen_desktop.sim.worker import SimBehaviour  # noqa: PLC0415

    if args.token and args.token_file:
        raise ConfigError("give --token or --token-file, not both")
    if args.token:
        import re  # noqa: PLC0415

        if not re.fullmatch(TOKEN, args.token):
            raise ConfigError("--token: expected 22–128 characters from A–Z a–z 0–9 _ -")
        token = args.token
    else:
        token = read_token_file(Path(args.token_file) if args.token_file else token_file(paths))
    if not 1 <= args.count <= 64:
        raise ConfigError(f"--count: expected 1 to 64 simulated tabs, got {args.count}")
    if not args.url.startswith(("ws://", "wss://")):
        raise ConfigError(f"--url must start with ws:// or wss://, got {args.url!r}")
    behaviour = SimBehaviour(
        latency_median=args.latency,
        latency_sigma=args.latency_sigma,
        failure_rate=args.fail_rate,
        refusal_rate=args.refusal_rate,
        invalid_image_rate=args.invalid_image_rate,
        crash_rate=args.crash_rate,
        rate_limit_every=args.rate_limit_every,
        rate_limit_reset=args.rate_limit_reset,
        crash_every=args.crash_every,
        restart_delay=args.restart_delay,
        image_size=args.image_size,
        reuse_images=args.reuse_images,
        seed=args.seed,
    )
    faults = RemoteFaults(
        disconnect_every=args.disconnect_every,
        away=args.away,
        duplicate_every=args.duplicate_every,
        memory_pressure_every=args.memory_pressure_every,
        pressure_seconds=args.pressure_seconds,
    )
    context = None
    if args.cafile:
        context = ssl.create_default_context(cafile=args.cafile)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_sim_workers(args, token, behaviour, faults, context))


async def _sim_workers(
    args: argparse.Namespace, token: str, behaviour: Any, faults: Any, context: Any
) -> int:
    from novelgen_desktop.sim.remote import (  # noqa: PLC0415
        RemoteSimWorker,
        SimAuthError,
        SimHeap,
        run_sim_workers,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"novelgen: {args.count} simulated tab(s) {args.id_prefix}-1… connecting to {args.url}",
        file=sys.stderr,
        flush=True,
    )

    async def report_unreachable() -> None:
        """Say so when the hub cannot be reached (the tabs keep trying quietly)."""
        await asyncio.sleep(3.0)
        if not any(w.connections for w in watched):
            print(
                f"novelgen: cannot reach a hub at {args.url} yet; still trying "
                "(is `novelgen serve` running? right --url?)",
                file=sys.stderr,
                flush=True,
            )

    heap = SimHeap(base_bytes=args.heap_base * 2**20, growth_per_attempt=args.heap_growth * 2**20)
    watched = [
        RemoteSimWorker(faults=faults, ssl_context=context, seed=args.seed + i, heap=heap)
        for i in range(args.count)
    ]
    reporter = asyncio.create_task(report_unreachable())
    try:
        workers = await run_sim_workers(
            args.url,
            token,
            args.count,
            behaviour,
            accounts=args.accounts,
            stop=stop,
            faults=faults,
            prefix=args.id_prefix,
            workers=watched,
        )
    except SimAuthError as exc:
        raise ConfigError(f"the hub refused the simulated workers: {exc}") from exc
    finally:
        reporter.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    done = sum(w.sim.executed if w.sim else 0 for w in workers)
    reasons = sorted({str(w.bye_reason) for w in workers if w.bye_reason})
    print(
        f"novelgen: simulated tabs stopped after {done} attempt(s)"
        + (f"; the hub said bye: {', '.join(reasons)}" if reasons else ""),
        file=sys.stderr,
    )
    return 0
