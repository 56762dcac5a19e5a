"""``seedclient <id>``: the seed's client on stdin and stdout, as its blog post shows it.

Type ``/connect <peer>`` to be introduced, then lines to chat; Ctrl-D leaves. The seed's lines are printed
(``[client] punching peer bob (...)``, ``[peer bob] gday``); ``--json`` prints every event instead, one JSON
object per line, every datagram sent and received included (what the scenarios read).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any

from seedclient.client import Address, SeedClient, parse_address

SEED_LINES = {
    "listening": "[client] listening on {local}",
    "punching": "[client] punching peer {peer} ({addr})",
    "message": "[peer {peer}] {text}",
    "unknown": "[client] unknown command {command}",
    "error": "[client] err {reason}",
}
"""The seed's own output for the events it prints; the rest (datagrams sent and received) only in --json."""


def server_address(text: str) -> Address:
    address = parse_address(text)
    if address is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not ip:port")
    return address


class Printer:
    """Prints events from every thread, one whole line at a time."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.as_json:
            line = json.dumps(event)
        elif event["event"] in SEED_LINES:
            line = SEED_LINES[event["event"]].format(**event)
        else:
            return
        with self.lock:
            print(line, flush=True)

    def prompt(self) -> None:
        if not self.as_json:
            with self.lock:
                print("> ", end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seedclient", description=__doc__.split("\n\n")[0])
    parser.add_argument("id", help="the id to register (the seed's ./client <id>)")
    default = os.environ.get("NATLAB_SERVER")
    parser.add_argument(
        "--server",
        type=server_address,
        default=server_address(default) if default else None,
        required=not default,
        help="the signal server, ip:port (default: $NATLAB_SERVER)",
    )
    parser.add_argument("--json", action="store_true", help="print every event as a JSON line")
    args = parser.parse_args(argv)
    printer = Printer(args.json)
    client = SeedClient(args.id, args.server, printer)
    client.start()
    try:
        printer.prompt()
        for line in sys.stdin:
            client.command(line)
            printer.prompt()
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return 0
