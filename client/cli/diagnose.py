"""The CLI's diagnostic commands: ``stun-ping``, ``nat-type``, ``udp-rate`` and ``linecheck`` (see
:mod:`client.diagnostics`).

They talk to STUN servers and other hosts directly, never to the agent; their modules are imported only when
one runs, so the other commands (the healthcheck above all) start fast.
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

from client.cli.control_client import AgentRefused
from client.cli.render import print_json
from client.daemon.config import ConfigError, stun_server
from protocol import Endpoint

MAX_LIFETIME_PROBE = 3600.0
"""The longest binding-lifetime bound `client nat-type --lifetime-max` accepts (seconds)."""
MAX_LINE_COUNT = 1_000_000
"""The most datagrams one `client linecheck` run sends (the echo keeps every seq it received)."""
MAX_LINE_RATE = 100_000.0
MAX_LINE_SECONDS = 3600.0


def _check_seconds(option: str, value: float) -> None:
    if not (math.isfinite(value) and 0 < value <= MAX_LINE_SECONDS):
        raise ConfigError(f"linecheck: {option} {value:g}: expected 0-{MAX_LINE_SECONDS:g} seconds")


def cmd_linecheck(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from client.diagnostics import line_check
    from client.diagnostics.line_wire import MAX_SIZE, MIN_SIZE

    try:
        token = line_check.parse_token(args.token)
    except ValueError as exc:
        raise ConfigError(f"linecheck: {exc}") from None
    if args.role == "echo":
        _check_seconds("--duration", args.duration)
        _check_seconds("--idle", args.idle)
        if not 0 < args.port < 65536:
            raise ConfigError(f"linecheck: --port {args.port}: expected 1-65535")
        family = socket.AF_INET6 if args.ipv6 else socket.AF_INET
        try:
            print_json(line_check.echo(args.port, token, args.duration, args.idle, family))
        except OSError as exc:
            raise AgentRefused(f"linecheck echo: port {args.port}: {exc.strerror or exc}") from None
        return 0
    if not 1 <= args.count <= MAX_LINE_COUNT:
        raise ConfigError(f"linecheck: --count {args.count}: expected 1-{MAX_LINE_COUNT}")
    if not (math.isfinite(args.rate) and 0 < args.rate <= MAX_LINE_RATE):
        raise ConfigError(f"linecheck: --rate {args.rate:g}: expected more than 0, at most {MAX_LINE_RATE:g} a second")
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise ConfigError(f"linecheck: --size {args.size}: expected {MIN_SIZE}-{MAX_SIZE} bytes")
    _check_seconds("--timeout", args.timeout)
    try:
        target = Endpoint.parse(args.target)
    except ValueError as exc:
        raise ConfigError(f"linecheck: {exc}") from None
    plan = line_check.Plan(args.count, args.rate, args.size, args.timeout)
    try:
        report = line_check.send(target, token, plan)
    except (line_check.EchoSilent, OSError) as exc:
        raise AgentRefused(f"linecheck: {exc}") from None
    print_json(report)
    if report["summary_error"]:
        print(f"client: linecheck: {report['summary_error']}", file=sys.stderr)
        return 1
    return 0


def cmd_udp_rate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from client.diagnostics import udp_rate

    if args.count < 1 or not 1 <= args.size <= 65507 or not 0 < args.port < 65536:
        raise ConfigError("udp-rate: N, --size (1..65507) and --port must be positive")
    try:
        peer = Endpoint.parse(args.peer)
    except ValueError as exc:
        raise ConfigError(f"udp-rate: {exc}") from None
    run = udp_rate.send if args.role == "send" else udp_rate.receive
    try:
        print_json(run(peer, args.port, args.count, args.size, args.timeout))
    except (udp_rate.PunchTimeout, OSError) as exc:
        raise AgentRefused(f"udp-rate: {exc}") from None
    return 0


def cmd_stun_ping(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from client.diagnostics.stun_ping import StunTimeout, check_schedule, stun_pings, summary

    try:
        server = Endpoint.parse(args.server)
        check_schedule(args.count, args.interval)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    replies = []
    try:
        for reply in stun_pings(server, args.count, args.interval, args.wait):
            replies.append(reply)
            if not args.json:
                print(reply.mapped, flush=True)  # as each answer arrives, like ping
    except StunTimeout as exc:
        raise AgentRefused(str(exc)) from None
    if args.json:
        print_json(summary(server, replies))
    return 0


def cmd_nat_type(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from client.diagnostics.nat_discovery import discover
    from client.diagnostics.nat_type import DiscoveryError
    from client.diagnostics.stun_probe import ProbeError

    if args.server is None:
        server = stun_server(env)
    else:
        try:
            server = Endpoint.parse(args.server)
        except ValueError as exc:
            raise ConfigError(f"--server: {exc}") from None
    if not (math.isfinite(args.lifetime_max) and 0 <= args.lifetime_max <= MAX_LIFETIME_PROBE):
        raise ConfigError(f"--lifetime-max {args.lifetime_max:g}: expected 0-{MAX_LIFETIME_PROBE:g} seconds")
    try:
        report = discover(server, args.lifetime_max)
    except (DiscoveryError, ProbeError, OSError) as exc:
        raise AgentRefused(f"nat-type: {exc}") from None
    if args.json:
        print_json(report.as_dict())
    else:
        print("\n".join(report.lines()))
    return 0


def add_diagnostics(add: Callable[..., Any]) -> None:
    """Register the diagnostic commands through the main parser's ``add(name, func, help, json=...)``."""
    ping = add("stun-ping", cmd_stun_ping, "STUN Binding: print our address as the server sees it", json=True)
    ping.add_argument("server", help="the STUN server, ip:port")
    ping.add_argument("--wait", type=float, default=3.0, help="seconds to keep asking, per exchange (default 3)")
    ping.add_argument("--count", type=int, default=1, metavar="N", help="N exchanges from one socket (default 1)")
    ping.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between exchanges (1)")
    nat_type = add("nat-type", cmd_nat_type, "RFC 5780 NAT behaviour discovery against a STUN server", json=True)
    nat_type.add_argument(
        "--server", metavar="IP:PORT", help="the STUN server's primary address (default: NATLAB_STUN, else NATLAB_TURN)"
    )
    nat_type.add_argument(
        "--lifetime-max",
        type=float,
        default=0.0,
        metavar="S",
        help="also probe the binding lifetime, up to S seconds idle (default 0: skip)",
    )
    rate = add("udp-rate", cmd_udp_rate, "raw UDP between two hosts (both run it): print JSON rates")
    rate.add_argument("role", choices=("send", "recv"), help="which end this is")
    rate.add_argument("peer", help="the other end as the WAN sees it, ip:port (its router's address)")
    rate.add_argument("count", type=int, help="how many datagrams")
    rate.add_argument("--port", type=int, default=40400, help="our UDP port, the same at both ends (40400)")
    rate.add_argument("--size", type=int, default=1000, help="bytes per datagram (default 1000)")
    rate.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the other end (10)")
    _add_linecheck(add)


def _add_linecheck(add: Callable[..., Any]) -> None:
    line = add("linecheck", cmd_linecheck, "one-way delay, loss, duplicates and reordering per direction; JSON")
    roles = line.add_subparsers(dest="role", required=True, metavar="send|echo")
    send = roles.add_parser("send", help="send numbered datagrams to an echo and report both directions")
    send.add_argument("target", help="the echo, ip:port")
    echo = roles.add_parser("echo", help="answer one sender's datagrams (those carrying --token) until done or idle")
    for role in (send, echo):
        role.add_argument("--token", required=True, help="32 hex digits, the same at both ends (random per run)")
    send.add_argument("--count", type=int, default=1000, metavar="N", help="datagrams to send (default 1000)")
    send.add_argument("--rate", type=float, default=500.0, metavar="PPS", help="datagrams a second (default 500)")
    send.add_argument("--size", type=int, default=200, metavar="B", help="bytes of UDP payload each (default 200)")
    send.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait for the echo (5)")
    echo.add_argument("--port", type=int, default=40500, help="UDP port to answer on (default 40500)")
    echo.add_argument("--duration", type=float, default=120.0, metavar="S", help="exit after S seconds (120)")
    echo.add_argument("--idle", type=float, default=10.0, metavar="S", help="exit after S s without the sender (10)")
    echo.add_argument("--ipv6", action="store_true", help="listen on IPv6 instead of IPv4")
