"""``python3 -m attacks <command>``: the lab's attacker (``mallory``) and victim (``victim``) tools.

Every command prints one JSON document: what it sent (``sent``, ``payload_bytes``, ``ip_bytes``) and what
it saw. Addresses are ``ip:port``, and every one must be in the lab (198.18.0.0/15, 100.64.0.0/10) or
loopback. Commands that listen take ``--listen S`` and ``--ready FILE`` (created once the socket is bound
and the attack sent, so a scenario can act while the attacker listens). Counts and times are bounded.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path

from attacks import commands, flood, sink
from attacks.commands import count, endpoint, seconds
from attacks.packets import OutsideLab


def _payload_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", action="append", help="a UTF-8 payload (repeat for several)")
    parser.add_argument("--hex", action="append", help="a payload in hex (repeat for several)")


def _repeat_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=count, default=1, help="send everything this many times (default 1)")
    parser.add_argument("--interval", type=seconds, default=0.0, help="seconds between rounds of a spoofed send")
    parser.add_argument("--ready", type=Path, help="touch this file once sent (and listening)")


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", type=seconds, default=1.0, help="seconds to listen for answers (default 1)")
    parser.add_argument("--port", type=int, default=0, help="our local UDP port (default any)")


def _add(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=text, description=text)
    parser.set_defaults(run=getattr(commands, f"cmd_{name}"))
    return parser


def _attacks(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    spoof = _add(sub, "spoof", "send payloads with a forged source address and port (raw socket, IP_HDRINCL)")
    spoof.add_argument("--src", type=endpoint, required=True, help="the source to forge")
    spoof.add_argument("--dst", type=endpoint, required=True)
    _payload_options(spoof)
    _repeat_options(spoof)

    send = _add(sub, "send", "send payloads from our own socket and print what comes back")
    send.add_argument("--dst", type=endpoint, required=True)
    _payload_options(send)
    _repeat_options(send)
    _listen_options(send)

    takeover = _add(sub, "takeover", "register ID from our own socket; with --answer, act as ID's agent")
    takeover.add_argument("id")
    takeover.add_argument("--server", type=endpoint, required=True)
    takeover.add_argument("--relay", type=endpoint, help="claim this relay (relay=), as an extended client")
    takeover.add_argument("--extended", action="store_true", help="register as a natlab client (relay=-)")
    takeover.add_argument("--answer", action="store_true", help="answer probes with hello-ack, punches with hello")
    _repeat_options(takeover)
    _listen_options(takeover)

    connect = _add(sub, "connect", "ask the server to introduce FROM and TO, which we are neither of")
    connect.add_argument("from_id")
    connect.add_argument("to_id")
    connect.add_argument("--server", type=endpoint, required=True)
    connect.add_argument("--spoof-from", type=endpoint, help="send it as if from this address")
    _repeat_options(connect)
    _listen_options(connect)

    inject = _add(sub, "inject", "send a host peer datagrams that name another id (--as) as their sender")
    inject.add_argument("--to", type=endpoint, required=True, help="the host's public address")
    inject.add_argument("--as", dest="as_id", required=True, help="the id to claim")
    inject.add_argument("--msg", action="append", help="a seed-era chat message (repeat for several)")
    inject.add_argument("--data", action="append", help="a guaranteed-delivery frame's text (repeat)")
    inject.add_argument("--epoch", type=int, default=777, help="the data frames' epoch (default 777)")
    inject.add_argument("--seq", type=int, default=0, help="the data frames' sequence number (default 0)")
    inject.add_argument("--hello", type=int, default=0, metavar="N", help="also send N probes (hello)")
    inject.add_argument("--spoof-from", type=endpoint, help="forge this source (e.g. the real peer's address)")
    _repeat_options(inject)
    _listen_options(inject)


def _tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    capture = _add(sub, "capture", "see datagrams from SRC to DST on this container's interfaces (packet socket)")
    capture.add_argument("--src", required=True, help="source IP")
    capture.add_argument("--dst", required=True, help="destination IP")
    capture.add_argument("--min-bytes", type=int, default=0, help="only payloads at least this long")
    capture.add_argument("--prefix-hex", default="", help="only payloads that start with these bytes")
    capture.add_argument("--count", type=count, default=1, help="stop after this many (default 1)")
    capture.add_argument("--timeout", type=seconds, default=10.0, help="stop after this long (default 10 s)")
    capture.add_argument("--ready", type=Path, help="touch this file once capturing")

    replay = _add(sub, "replay", "send captured datagrams again, from the sources they came from")
    replay.add_argument("datagrams", help="capture's JSON output")
    replay.add_argument("--to", type=endpoint, help="send to this address instead of the captured destination")
    _repeat_options(replay)

    flooding = _add(sub, "flood", "register COUNT ids from forged sources: HOSTS of NETWORK, new ports each")
    flooding.add_argument("--server", type=endpoint, required=True)
    flooding.add_argument("--count", type=int, default=1000, help=f"registrations, at most {flood.MAX_COUNT}")
    flooding.add_argument("--network", type=ipaddress.IPv4Network, required=True, help="e.g. 198.18.0.0/24")
    flooding.add_argument("--hosts", default="100-249", help="host numbers in NETWORK, e.g. 100-249 or 66")
    flooding.add_argument("--prefix", default="flood", help="ids are <prefix><n> (default flood)")
    flooding.add_argument("--rate", type=float, default=2000.0, help="registrations per second (default 2000)")
    flooding.add_argument("--max-seconds", type=seconds, default=30.0, help="stop after this long (default 30)")

    counter = _add(sub, "sink", "the victim's counter: serve (count every UDP byte arriving) or show the totals")
    counter.add_argument("action", choices=["serve", "show"])
    counter.add_argument("--state", type=Path, default=sink.DEFAULT_STATE)

    mem = _add(sub, "memory", "RSS and peak RSS of the processes whose command line starts with MATCHING")
    mem.add_argument("matching")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python3 -m attacks",
        description="The lab's attacker (mallory) and victim tools; every command prints one JSON document.",
    )
    sub = top.add_subparsers(dest="command", required=True)
    _attacks(sub)
    _tools(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.run(args)
    except (OutsideLab, ValueError, OSError) as exc:
        print(f"attacks {args.command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
