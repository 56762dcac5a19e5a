"""``python -m server``: run the signal server until SIGTERM or SIGINT, then exit 0.

In the lab it runs under tini (``--listen 0.0.0.0:9000``); ``docker compose down`` sends SIGTERM and must
not have to wait, so both signals just set an event and the server closes at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from dataclasses import replace
from pathlib import Path

from protocol import ID_SYNTAX, MAX_DATAGRAM, Endpoint
from server.app import DEFAULT_LISTEN, Config, serve
from server.event_loop import CHOICES, LoopUnavailable, choose
from server.logs import DEFAULT_PER_SECOND, RateLimitedHandler
from server.ratelimit import DEFAULT_BURST, DEFAULT_RATE
from server.table import (
    DEFAULT_IDS_PER_IP,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_MAX_PEERS,
    DEFAULT_UNKEYED_SHARE,
    MISSED_KEEPALIVES,
)
from trust import DEFAULT_MAX_KEYS, KeyFileError, Registry

log = logging.getLogger("server")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def listen_address(text: str) -> Endpoint:
    """``HOST:PORT`` as for the protocol (``[::]:9000`` for IPv6), except that port 0 is allowed."""
    host, sep, port = text.rpartition(":")
    try:
        if sep and port == "0":
            return replace(Endpoint.parse(f"{host}:1"), port=0)
        return Endpoint.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def registry_file(text: str) -> Registry:
    """The registry at path ``text``; a missing or damaged file is a usage error naming it and what is wrong."""
    try:
        return Registry.load(Path(text))
    except KeyFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def rate(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number of requests per second (0: no limit), not {text!r}")
    return value


def share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share of the table, more than 0 and at most 1, not {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="natlab signal server (UDP): register, connect -> punch, keepalive.",
        epilog=f"Limits: datagrams up to {MAX_DATAGRAM} bytes; ids match {ID_SYNTAX}.",
    )
    parser.add_argument(
        "--listen",
        type=listen_address,
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--state-file", type=Path, metavar="PATH", help="write the peer table and counters here as JSON (atomically)"
    )
    parser.add_argument(
        "--keepalive-interval",
        type=seconds,
        default=DEFAULT_KEEPALIVE_INTERVAL,
        metavar="SECONDS",
        help=f"the clients' keepalive period: a peer is forgotten after {MISSED_KEEPALIVES} missed ones "
        f"(default {DEFAULT_KEEPALIVE_INTERVAL:g})",
    )
    parser.add_argument(
        "--max-peers",
        type=count,
        default=DEFAULT_MAX_PEERS,
        metavar="N",
        help=f"peer table size (default {DEFAULT_MAX_PEERS})",
    )
    parser.add_argument(
        "--registry",
        type=registry_file,
        metavar="PATH",
        help="the lab's registry of keyed ids (registry.json, written by `python3 -m trust make-keys`)",
    )
    parser.add_argument(
        "--require-keys",
        action="store_true",
        help="refuse v2 ids that are not in --registry (403 'id not in the registry') instead of binding each "
        "to the key that first registers it; text clients may still register ids no key holds",
    )
    parser.add_argument(
        "--unkeyed-share",
        type=share,
        default=DEFAULT_UNKEYED_SHARE,
        metavar="S",
        help=f"the share of the table ids without a key may fill (default {DEFAULT_UNKEYED_SHARE:g})",
    )
    parser.add_argument(
        "--ids-per-ip",
        type=count,
        default=DEFAULT_IDS_PER_IP,
        metavar="N",
        help=f"ids one IPv4 address (or IPv6 /64) may register (default {DEFAULT_IDS_PER_IP})",
    )
    parser.add_argument(
        "--rate",
        type=rate,
        default=DEFAULT_RATE,
        metavar="R",
        help=f"requests per second per IPv4 address (or IPv6 /64), 0 for no limit (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--burst",
        type=count,
        default=DEFAULT_BURST,
        metavar="N",
        help=f"requests one source may send at once before --rate applies (default {DEFAULT_BURST})",
    )
    parser.add_argument(
        "--log-rate",
        type=count,
        default=DEFAULT_PER_SECOND,
        metavar="N",
        help=f"log lines per second of each kind; the rest are counted in one line (default {DEFAULT_PER_SECOND})",
    )
    parser.add_argument(
        "--max-proof-keys",
        type=count,
        default=DEFAULT_MAX_KEYS,
        metavar="N",
        help=f"signing keys whose latest proof timestamp the replay guard remembers, the key admitted longest "
        f"ago forgotten first (default {DEFAULT_MAX_KEYS}, about 16 MB when full)",
    )
    parser.add_argument("--log-level", type=str.lower, default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--loop",
        choices=CHOICES,
        default="auto",
        help="event loop: uvloop when importable (auto, the default), uvloop (fail without it) or asyncio",
    )
    args = parser.parse_args(argv)
    if args.require_keys and args.registry is None:
        parser.error("--require-keys needs --registry (the keyed ids it admits)")
    return args


async def _run(config: Config, logs: RateLimitedHandler) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        log.info("stopping on %s", signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    summaries = asyncio.create_task(_flush_every_second(logs))
    try:
        await serve(config, stop)
    finally:
        summaries.cancel()


async def _flush_every_second(logs: RateLimitedHandler) -> None:
    """Write the suppressed-lines summaries even when the flood, and with it all logging, has stopped."""
    while True:
        await asyncio.sleep(1.0)
        logs.flush()


def config_of(args: argparse.Namespace) -> Config:
    return Config(
        listen=args.listen,
        state_file=args.state_file,
        peer_ttl=MISSED_KEEPALIVES * args.keepalive_interval,
        max_peers=args.max_peers,
        ids_per_ip=args.ids_per_ip,
        unkeyed_share=args.unkeyed_share,
        rate=args.rate,
        burst=args.burst,
        registry=args.registry,
        require_keys=args.require_keys,
        max_proof_keys=args.max_proof_keys,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(LOG_FORMAT))
    logs = RateLimitedHandler(stderr, per_second=args.log_rate)
    logging.basicConfig(level=args.log_level.upper(), handlers=[logs])
    if args.registry is not None:
        log.info("registry: %d keyed ids (%s)", len(args.registry), ", ".join(args.registry))
        if args.require_keys:
            log.info("--require-keys: v2 ids outside the registry are refused")
    try:
        loop = choose(args.loop)
    except LoopUnavailable as exc:
        log.error("%s", exc)
        return 2
    log.info("event loop: %s", loop.name)
    try:
        with asyncio.Runner(loop_factory=loop.factory) as runner:
            runner.run(_run(config_of(args), logs))
    except OSError as exc:
        log.error("cannot serve on %s: %s", args.listen, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
