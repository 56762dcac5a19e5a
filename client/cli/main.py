"""client: the natlab agent, and the command line that talks to it.

    client agent                      run the agent (the host container's main process)
    client <peer> | chat <peer>       interactive chat (connects first when there is no direct path)
    client send <peer> TEXT...        connect if needed, send one message and wait until the peer has it
                                      (acknowledged); exit 1 if there is no path or it was not delivered
    client flood <peer> N [--size B] [--rate R]
                                      send N messages of B characters as fast as the window allows (with
                                      --rate, R a second: a stream that waits out a lost path); print JSON
                                      {sent, delivered, undelivered, seconds, msgs_per_s, mb_per_s, no_path_s}
    client connect <peer> [--json]    connect and wait: exit 0 if the path is direct or relay, 1 if none
    client connect <peer> --settle [--timeout S] [--probe TEXT] [--json]
                                      wait until the path settles (direct, or punching gave up); print the
                                      status, time to direct and whether TEXT was delivered (acknowledged)
    client bench-connect <peer> N [--timeout S] [--gap S]
                                      N connects from scratch; print JSON {peer, time_to_direct_ms: [...]}
    client disconnect <peer>          forget the path locally
    client peers [--json]             one line per peer: id, addr, path, reason
    client status [--json]            the agent's status
    client tunnel up|down|status [--json]
                                      the WireGuard tunnel (natlab0): bring it up or down; per peer its
                                      overlay address, the path carrying it, latest handshake, bytes
    client events [--follow]          print the event log (JSON lines); --follow streams new events from the agent
    client health                     exit 0 iff the agent answers and is registered (fast)
    client stun-ping <ip:port> [--wait S] [--count N] [--interval S] [--json]
                                      STUN Binding: print our address as that server sees it; N exchanges
                                      from one socket, S seconds apart (JSON {server, local, replies})
    client nat-type [--server IP:PORT] [--json] [--lifetime-max S]
                                      RFC 5780 NAT behaviour discovery: mapping, filtering, hairpinning,
                                      port preservation (and binding lifetime, probed up to S seconds)
    client udp-rate send|recv <ip:port> N [--port P] [--size B]
                                      raw UDP through punched NATs, the data path's ceiling; print JSON
    client linecheck echo --token HEX [--port P] [--duration S] [--idle S]
    client linecheck send <ip:port> --token HEX [--count N] [--rate PPS] [--size B] [--timeout S]
                                      what a path does per direction: one-way delay, loss (with its 95 %
                                      interval and burst length), duplicates, reordering; print JSON

Exit status: 0 success, 1 failure (no agent, no path, refused), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from client.cli.connecting import MAX_TIMEOUT, bench_connect, check_timeout, connect_and_settle, request_timeout
from client.cli.control_client import AgentClient, AgentRefused, AgentUnavailable
from client.cli.diagnose import add_diagnostics
from client.cli.logs import log_to_stderr
from client.cli.render import peer_line, print_json
from client.daemon.config import (
    AgentStartError,
    ConfigError,
    agent_config,
    delivery_deadline,
    events_path,
    punch_timeout,
    socket_path,
    with_identity,
)
from client.daemon.control import MAX_RATE
from client.engine.core import RequestError, check_id
from client.engine.routes import USABLE, Route

RESERVED = frozenset(
    {
        "agent",
        "chat",
        "send",
        "flood",
        "connect",
        "bench-connect",
        "disconnect",
        "peers",
        "status",
        "tunnel",
        "events",
        "health",
        "stun-ping",
        "nat-type",
        "udp-rate",
        "linecheck",
        "help",
    }
)
"""Subcommand names; a peer called one of these is reached with ``client chat <name>``."""

HEALTH_TIMEOUT = 0.4
"""Seconds the healthcheck waits for the agent (the whole check must stay under half a second)."""


def _connect_timeout(env: Mapping[str, str]) -> float:
    """How long a connect may take: the agent's connect deadline plus its punch deadline, with margin."""
    return 2 * punch_timeout(env) + 10


def _delivery_timeout(env: Mapping[str, str]) -> float:
    """How long a send may wait for its acknowledgement: the agent's delivery deadline, with margin."""
    return _connect_timeout(env) + delivery_deadline(env) + 10


# -- commands --------------------------------------------------------------------------------------


# asyncio, the agent and prompt_toolkit are imported only by the commands that use them: `client health`
# runs every few seconds as the Docker healthcheck and must start fast.


def cmd_agent(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import asyncio

    from client.daemon.agent import run

    config = agent_config(env)
    log_to_stderr(config.log_level.upper())
    # Before the event loop: waiting for the key file, SIGTERM and Ctrl-C still stop the process at once.
    config = with_identity(config)
    if config.keepalive >= 30:
        logging.getLogger("client").warning(
            "NATLAB_KEEPALIVE=%g s is not well inside a 30 s NAT UDP timeout", config.keepalive
        )
    return asyncio.run(run(config))


def cmd_chat(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import asyncio

    from client.cli.chat import run_chat

    check_id(args.peer)
    return asyncio.run(run_chat(socket_path(env), args.peer))


def _ensure_path(agent: AgentClient, peer: str) -> dict[str, Any]:
    """Connect unless a path is up; the peer's status, or :class:`AgentRefused` when there is no path."""
    status: dict[str, Any] = agent.request("connect", peer=peer)["peer"]
    if status["path"] not in USABLE:
        raise AgentRefused(f"no path to {peer}: {status.get('reason') or 'not connected'}")
    return status


def cmd_send(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    text = " ".join(args.text)
    with AgentClient(socket_path(env), timeout=_delivery_timeout(env)) as agent:
        _ensure_path(agent, args.peer)
        agent.request("send", peer=args.peer, text=text, wait=True)
    return 0


def cmd_flood(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.count < 1 or args.size < 1:
        raise ConfigError("flood: N and --size must be positive")
    if args.rate is not None and not 0 < args.rate <= MAX_RATE:
        raise ConfigError(f"flood: --rate must be above 0 and at most {MAX_RATE} messages a second")
    # Every message may take up to the delivery deadline, but they are in flight together. A stream also
    # takes N/R seconds, and may wait up to the deadline once more for a lost path.
    timeout = _delivery_timeout(env) + args.count * 0.1
    paced = {}
    if args.rate is not None:
        timeout += args.count / args.rate + delivery_deadline(env)
        paced = {"rate": args.rate}
    with AgentClient(socket_path(env), timeout=timeout) as agent:
        _ensure_path(agent, args.peer)
        result = agent.request("flood", peer=args.peer, count=args.count, size=args.size, **paced)["result"]
    print_json(result)
    return 0 if result["undelivered"] == 0 else 1


def cmd_connect(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.settle:
        return _connect_settle(args, env)
    if args.probe is not None or args.timeout is not None:
        raise ConfigError("connect: --probe and --timeout go with --settle")
    with AgentClient(socket_path(env), timeout=_connect_timeout(env)) as agent:
        status: dict[str, Any] = agent.request("connect", peer=args.peer)["peer"]
    if args.json:
        print_json(status)
    else:
        print(peer_line(status))
    return 0 if status["path"] in USABLE else 1


def _connect_settle(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    timeout = check_timeout(_connect_timeout(env) if args.timeout is None else args.timeout)
    with AgentClient(socket_path(env), timeout=request_timeout(timeout)) as agent:
        result = connect_and_settle(agent, args.peer, timeout, args.probe)
    if args.json:
        print_json(result.as_dict())
    else:
        print(peer_line(result.peer or {"id": args.peer, "addr": None, "path": Route.NONE}))
        print(f"settled: {'yes' if result.settled else 'no'}, delivered: {_yes_no(result.delivered)}")
    return 0 if result.ok else 1


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def cmd_bench_connect(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.count < 1 or not (math.isfinite(args.gap) and 0 <= args.gap <= MAX_TIMEOUT):
        raise ConfigError("bench-connect: N must be positive and --gap 0-3600 seconds")
    timeout = check_timeout(_connect_timeout(env) if args.timeout is None else args.timeout)
    with AgentClient(socket_path(env), timeout=request_timeout(timeout)) as agent:
        samples = bench_connect(agent, args.peer, args.count, timeout, args.gap)
    print_json({"peer": args.peer, "time_to_direct_ms": samples})
    return 0


def cmd_disconnect(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with AgentClient(socket_path(env)) as agent:
        status = agent.request("disconnect", peer=args.peer)["peer"]
    print(peer_line(status or {"id": args.peer, "addr": None, "path": Route.NONE}))
    return 0


def _status(env: Mapping[str, str], timeout: float = 5.0) -> dict[str, Any]:
    with AgentClient(socket_path(env), timeout=timeout) as agent:
        status: dict[str, Any] = agent.request("status")["status"]
    return status


def cmd_peers(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    peers = _status(env)["peers"]
    if args.json:
        print_json(peers)
    for peer in [] if args.json else peers:
        print(peer_line(peer))
    return 0


def cmd_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    status = _status(env)
    if args.json:
        print_json(status)
        return 0
    registered = "registered with" if status["registered"] else "NOT registered with"
    print(f"{status['id']}: {registered} {status['server']}, local {status['local']}")
    print(f"  key {status['key']} ({status['key_file'] or 'ephemeral'})")
    if status.get("turn"):
        turn = status["turn"]
        why = f" ({turn['reason']})" if turn.get("reason") else ""
        print(f"  turn {turn['server']}: {turn['state']}{why}, relay {status.get('relay') or '-'}")
    for peer in status["peers"]:
        print(f"  {peer_line(peer)}  (sent {peer['sent']}, received {peer['received']})")
    dropped = [f"{reason} {n}" for reason, n in status.get("dropped", {}).items() if n]
    if dropped:
        print(f"  dropped: {', '.join(dropped)}")
    if status.get("tunnel"):
        for line in tunnel_lines(status["tunnel"]):
            print(f"  {line}")
    return 0


def cmd_tunnel(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # Bringing wireguard-go up (and the registry's first read) may take a few seconds.
    with AgentClient(socket_path(env), timeout=30.0) as agent:
        tunnel: dict[str, Any] = agent.request("tunnel", action=args.action)["tunnel"]
    if args.json:
        print_json(tunnel)
    else:
        for line in tunnel_lines(tunnel):
            print(line)
    return 0


def tunnel_lines(tunnel: dict[str, Any]) -> list[str]:
    """The tunnel as people read it: one line for the interface, one per peer."""
    if not tunnel["up"]:
        why = f": {tunnel['reason']}" if tunnel.get("reason") else ""
        return [f"tunnel {tunnel['interface']} down{why}"]
    carriers = "direct peers carried by the kernel" if tunnel.get("kernel_path") else "carried by the agent"
    lines = [
        f"tunnel {tunnel['interface']} up at {tunnel['address']} (WireGuard port {tunnel['port']}, the agent's only;"
        f" {carriers})"
    ]
    for peer in tunnel["peers"]:
        age = peer["handshake_age_s"]
        handshake = "no handshake yet" if age is None else f"handshake {age:.0f} s ago"
        lines.append(
            f"{peer['name']:<20} {peer['overlay']:<15} {peer['path']:<7} {peer.get('carrier', 'agent'):<7}"
            f"{handshake}, received {peer['rx_bytes']} B, sent {peer['tx_bytes']} B"
        )
    dropped = [f"{reason} {n}" for reason, n in tunnel.get("dropped", {}).items() if n]
    if dropped:
        lines.append(f"dropped: {', '.join(dropped)}")
    return lines


def cmd_health(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    status = _status(env, timeout=HEALTH_TIMEOUT)
    if not status["registered"]:
        print(f"client: not registered with server {status['server']}", file=sys.stderr)
        return 1
    return 0


def cmd_events(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if not args.follow:
        _print_log(events_path(env))
        return 0
    with AgentClient(socket_path(env)) as agent:
        # Subscribe first, then print the log: an event emitted in between is in both, and printed once.
        since = time.time()
        stream = agent.subscribe()
        recent = {line for line in _print_log(events_path(env)) if _stamp(line) >= since - 1}
        try:
            for event in stream:
                line = json.dumps(event, ensure_ascii=False) + "\n"
                if line not in recent:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        except KeyboardInterrupt:
            return 0  # the way to stop --follow
    return 0


def _stamp(line: str) -> float:
    """An event log line's ``ts``; 0 for a line being written as we read it."""
    try:
        return float(json.loads(line).get("ts", 0))
    except (ValueError, AttributeError):
        return 0.0


def _print_log(path: str) -> list[str]:
    """Print the event log as it is now; its lines."""
    try:
        with open(path, encoding="utf-8") as log:
            lines = log.readlines()
    except OSError as exc:
        raise AgentRefused(f"cannot read event log {path}: {exc.strerror}") from None
    sys.stdout.writelines(lines)
    sys.stdout.flush()
    return lines


def cmd_help(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    print(__doc__)
    return 0


Command = Callable[[argparse.Namespace, Mapping[str, str]], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="A peer named like a command is reached with `client chat <name>`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Command, help_text: str, peer: bool = False, json: bool = False) -> Any:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(func=func)
        if peer:
            cmd.add_argument("peer", help="the peer's id")
        if json:
            cmd.add_argument("--json", action="store_true", help="print JSON")
        return cmd

    add("agent", cmd_agent, "run the agent (configured by NATLAB_* variables)")
    add("chat", cmd_chat, "interactive chat with a peer", peer=True)
    add("send", cmd_send, "send one message (connecting first)", peer=True).add_argument(
        "text", nargs="+", help="the message"
    )
    flood = add("flood", cmd_flood, "send N messages as fast as the window allows; print JSON", peer=True)
    flood.add_argument("count", type=int, help="how many messages")
    flood.add_argument("--size", type=int, default=100, help="characters per message (default 100)")
    flood.add_argument(
        "--rate", type=float, metavar="R", help="R messages a second: a stream that waits out a lost path"
    )
    connect = add(
        "connect", cmd_connect, "connect and wait: exit 0 if direct or relay, 1 if none", peer=True, json=True
    )
    connect.add_argument(
        "--settle", action="store_true", help="wait until the path settles (direct, or punching gave up)"
    )
    connect.add_argument("--timeout", type=float, metavar="S", help="with --settle: wait at most S seconds")
    connect.add_argument(
        "--probe", metavar="TEXT", help="with --settle: send TEXT once a path is up; report if it was delivered"
    )
    bench = add("bench-connect", cmd_bench_connect, "N connects from scratch; print JSON times to direct", peer=True)
    bench.add_argument("count", type=int, help="how many connects")
    bench.add_argument("--timeout", type=float, metavar="S", help="each connect may take at most S seconds")
    bench.add_argument(
        "--gap", type=float, default=0.3, metavar="S", help="seconds between a forget and the next connect (0.3)"
    )
    add("disconnect", cmd_disconnect, "forget the path to a peer locally", peer=True)
    add("peers", cmd_peers, "one line per peer: id, addr, path, reason", json=True)
    add("status", cmd_status, "the agent's status", json=True)
    tunnel = add("tunnel", cmd_tunnel, "the WireGuard tunnel: up, down, or its status", json=True)
    tunnel.add_argument("action", choices=("up", "down", "status"), help="what to do")
    add("events", cmd_events, "print the event log").add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events"
    )
    add("health", cmd_health, "exit 0 iff the agent answers and is registered")
    add_diagnostics(add)
    add("help", cmd_help, "this help")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    if args_list and args_list[0] not in RESERVED and not args_list[0].startswith("-"):
        args_list.insert(0, "chat")  # `client bob` is `client chat bob`
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("client: a command or a peer id is required (try `client help`)", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, env))
    except (ConfigError, RequestError) as exc:
        print(f"client: {exc}", file=sys.stderr)
        return 2
    except (AgentUnavailable, AgentRefused, AgentStartError) as exc:
        print(f"client: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `client events | head`: stop quietly, and keep Python from complaining when it flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
