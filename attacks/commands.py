"""What each ``python3 -m attacks`` command does, from its parsed arguments to its JSON result (see cli.py)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attacks import flood, forms, memory, sink
from attacks.exchange import Answer, Outgoing, exchange, no_answer
from attacks.packets import Datagram, check_lab
from attacks.raw import capture, send_spoofed
from protocol import Endpoint

MAX_COUNT = 10_000


def endpoint(text: str) -> Endpoint:
    try:
        return check_lab(Endpoint.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count(text: str) -> int:
    value = int(text)
    if not 0 < value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_COUNT}, not {text}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= flood.MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be 0..{flood.MAX_SECONDS:g} s, not {text}")
    return value


def payloads(args: argparse.Namespace) -> list[bytes]:
    """The ``--text`` and ``--hex`` payloads, in that order."""
    return [t.encode() for t in args.text or []] + [bytes.fromhex(h) for h in args.hex or []]


def ready_marker(path: Path | None) -> Callable[[], None]:
    return (lambda: None) if path is None else path.touch


def listened(sends: Sequence[Outgoing], args: argparse.Namespace, answer: Answer = no_answer) -> dict[str, Any]:
    """Send from our own socket and listen: the exchange's JSON."""
    done = exchange(sends, args.listen, port=args.port, answer=answer, on_ready=ready_marker(args.ready))
    return done.to_json()


def spoofed(payload_list: list[bytes], src: Endpoint, dst: Endpoint, args: argparse.Namespace) -> dict[str, Any]:
    """Send with a forged source: nothing comes back to us, so there is nothing to listen to."""
    sent = send_spoofed([Datagram(src, dst, p) for p in payload_list], args.count, args.interval)
    ready_marker(args.ready)()
    return {"spoofed_from": str(src), **sent.to_json()}


# -- commands ------------------------------------------------------------------------------------------------


def cmd_spoof(args: argparse.Namespace) -> dict[str, Any]:
    return spoofed(payloads(args), args.src, args.dst, args)


def cmd_send(args: argparse.Namespace) -> dict[str, Any]:
    return listened([(p, args.dst) for p in payloads(args) for _ in range(args.count)], args)


def cmd_takeover(args: argparse.Namespace) -> dict[str, Any]:
    sends = [(forms.register(args.id, args.relay, args.extended), args.server)] * args.count
    return listened(sends, args, forms.impersonate(args.id) if args.answer else no_answer)


def cmd_connect(args: argparse.Namespace) -> dict[str, Any]:
    request = forms.connect(args.from_id, args.to_id)
    if args.spoof_from is not None:
        return spoofed([request], args.spoof_from, args.server, args)  # args.count rounds
    return listened([(request, args.server)] * args.count, args)


def cmd_inject(args: argparse.Namespace) -> dict[str, Any]:
    datagrams = [forms.msg(args.as_id, t) for t in args.msg or []]
    datagrams += [forms.data(args.as_id, t, args.epoch, args.seq) for t in args.data or []]
    datagrams += [forms.hello(args.as_id)] * args.hello
    if args.spoof_from is not None:
        return spoofed(datagrams, args.spoof_from, args.to, args)
    return listened([(d, args.to) for d in datagrams] * args.count, args)


def cmd_capture(args: argparse.Namespace) -> dict[str, Any]:
    def wanted(d: Datagram) -> bool:
        return (
            d.src.host == args.src
            and d.dst.host == args.dst
            and len(d.payload) >= args.min_bytes
            and d.payload.startswith(bytes.fromhex(args.prefix_hex))
        )

    found = capture(wanted, args.count, args.timeout, ready_marker(args.ready))
    return {"datagrams": [d.to_json() for d in found]}


def cmd_replay(args: argparse.Namespace) -> dict[str, Any]:
    captured = [Datagram.from_json(d) for d in json.loads(args.datagrams)["datagrams"]]
    if args.to is not None:
        captured = [Datagram(d.src, args.to, d.payload) for d in captured]
    sent = send_spoofed(captured, args.count, args.interval)
    return {"replayed_to": sorted({str(d.dst) for d in captured}), **sent.to_json()}


def cmd_flood(args: argparse.Namespace) -> dict[str, Any]:
    first, _, last = args.hosts.partition("-")
    hosts = range(int(first), int(last or first) + 1)
    datagrams = flood.plan(args.count, args.server, args.network, hosts, args.prefix)
    return flood.run(datagrams, args.rate, args.max_seconds).to_json()


def cmd_sink(args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "serve":
        sink.serve(args.state)
    return sink.show(args.state)


def cmd_memory(args: argparse.Namespace) -> dict[str, Any]:
    return {"processes": memory.processes(args.matching)}
