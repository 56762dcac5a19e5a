"""WebRTC through aiortc: one side of a data channel, ICE through the lab's coturn as STUN and TURN server.

Side ``a`` offers (and is ICE-controlling), side ``b`` answers; descriptions go through files in ``--exchange``
(:mod:`interop.signalling`: aiortc gathers every candidate before it writes a description, so one offer and one
answer carry them all). Once the data channel is open each side sends ``--pings`` pings (its RTT is their
median) and ``--payload`` bytes (so that a relayed attempt shows in coturn's usage counts), then ``done``, and
closes once it has the peer's ``done``. The path is the nominated ICE candidate pair's: ``relay`` when either
candidate is a TURN relay candidate, ``direct`` otherwise (host, srflx or prflx on both ends).

Runs inside a lab host of the interop image under aiortc's venv::

    /opt/aiortc/bin/python -m interop.webrtc --side a --exchange /tmp/interop/x [--timeout 30]

The TURN server and credential come from the host's environment (compose.yaml: NATLAB_TURN,
NATLAB_TURN_USER, NATLAB_TURN_PASSWORD_FILE), as natlab's own agent reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed

from interop import signalling
from interop.report import DIRECT, RELAY, Report, write_report

STACK = "aiortc"
CHUNK = 16 * 1024


def ice_servers() -> tuple[list[RTCIceServer], str]:
    """The lab's coturn as STUN and TURN (UDP) server, and its ``ip:port``."""
    turn = os.environ.get("NATLAB_TURN", "")
    if not turn:
        raise SystemExit("NATLAB_TURN is not set: run inside a lab host")
    user = os.environ.get("NATLAB_TURN_USER", "natlab")
    password = Path(os.environ.get("NATLAB_TURN_PASSWORD_FILE", "/run/natlab-secrets/turn-password")).read_text()
    return [
        RTCIceServer(urls=f"stun:{turn}"),
        RTCIceServer(urls=f"turn:{turn}?transport=udp", username=user, credential=password.strip()),
    ], turn


def nominated_pair(pc: RTCPeerConnection) -> Any:
    """aioice's nominated candidate pair for the data channel's component (aiortc keeps it private)."""
    connection = pc.sctp.transport.transport._connection
    return connection._nominated.get(1)


async def drained(pc: RTCPeerConnection, within: float = 3.0) -> None:
    """Wait (at most ``within`` s) until the peer has acknowledged everything this side sent: closing earlier
    would drop the last messages (its ``done``) still queued in SCTP."""

    @retry(stop=stop_after_delay(within), wait=wait_fixed(0.02), retry=retry_if_result(bool))
    async def unacknowledged() -> int:
        sctp = pc.sctp
        queues = (sctp._data_channel_queue, sctp._outbound_queue, sctp._sent_queue) if sctp else ()
        return sum(len(queue) for queue in queues)

    with contextlib.suppress(RetryError):
        await unacknowledged()


def describe(pair: Any, turn: str) -> tuple[str, str, str]:
    """(path, how it was known, the endpoint this side sends to) from a nominated pair."""
    local, remote = pair.local_candidate, pair.remote_candidate
    how = (
        f"nominated ICE pair: local {local.type} {local.host}:{local.port} -> "
        f"remote {remote.type} {remote.host}:{remote.port}"
    )
    path = RELAY if RELAY in (local.type, remote.type) else DIRECT
    sends_to = turn if local.type == RELAY else f"{remote.host}:{remote.port}"
    return path, how, sends_to


class Channel:
    """The data channel's traffic: answers the peer's pings, counts its payload, notes its ``done``."""

    def __init__(self) -> None:
        self.channel: RTCDataChannel | None = None
        self.opened = asyncio.Event()
        self.peer_done = asyncio.Event()
        self.pongs: asyncio.Queue[str] = asyncio.Queue()
        self.received = 0

    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("open", self.opened.set)
        channel.on("message", self.on_message)
        if channel.readyState == "open":
            self.opened.set()

    def on_message(self, message: str | bytes) -> None:
        assert self.channel is not None
        if isinstance(message, bytes):
            self.received += len(message)
        elif message.startswith("ping:"):
            self.channel.send("pong:" + message.removeprefix("ping:"))
        elif message.startswith("pong:"):
            self.pongs.put_nowait(message.removeprefix("pong:"))
        elif message == "done":
            self.peer_done.set()

    async def exercise(self, pings: int, payload: int) -> float | None:
        """Ping the peer ``pings`` times one after the other, send ``payload`` bytes; the median RTT in ms."""
        assert self.channel is not None
        rtts = []
        for i in range(pings):
            sent = time.perf_counter()
            self.channel.send(f"ping:{i}")
            while await self.pongs.get() != str(i):
                pass
            rtts.append((time.perf_counter() - sent) * 1000)
        for offset in range(0, payload, CHUNK):
            self.channel.send(bytes(min(CHUNK, payload - offset)))
        self.channel.send("done")
        return round(statistics.median(rtts), 2) if rtts else None


async def attempt(side: str, exchange: Path, seconds: float, pings: int, payload: int) -> Report:
    report = Report(STACK, side)
    servers, turn = ice_servers()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
    traffic = Channel()
    deadline = time.monotonic() + seconds
    try:
        if side == "a":
            traffic.attach(pc.createDataChannel("natlab-interop"))
            await pc.setLocalDescription(await pc.createOffer())
            signalling.put(exchange, "offer.json", {"sdp": pc.localDescription.sdp, "type": "offer"})
            answer = await signalling.wait_for(exchange, "answer.json", deadline - time.monotonic())
            started = time.perf_counter()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        else:
            pc.on("datachannel", traffic.attach)
            offer = await signalling.wait_for(exchange, "offer.json", deadline - time.monotonic())
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
            await pc.setLocalDescription(await pc.createAnswer())  # gathers this side's candidates first
            started = time.perf_counter()
            signalling.put(exchange, "answer.json", {"sdp": pc.localDescription.sdp, "type": "answer"})
        await asyncio.wait_for(traffic.opened.wait(), deadline - time.monotonic())
        report.time_to_connect_ms = round((time.perf_counter() - started) * 1000, 1)
        report.connected = True
        pair = nominated_pair(pc)
        if pair is not None:
            report.path, report.how_path_was_known, report.peer_endpoint = describe(pair, turn)
        else:
            report.how_path_was_known = "the data channel opened but aioice has no nominated pair"
        report.rtt_ms = await asyncio.wait_for(traffic.exercise(pings, payload), deadline - time.monotonic())
        await asyncio.wait_for(traffic.peer_done.wait(), deadline - time.monotonic())
        await drained(pc)
    except TimeoutError as exc:
        report.error = (
            f"timed out after {seconds} s ({exc or 'waiting for the data channel'}); ICE state {pc.iceConnectionState}"
        )
    except Exception as exc:  # the report must say what broke, whatever aiortc raised
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pc.close(), 5)  # releases the TURN allocation: coturn logs its usage
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interop.webrtc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=("a", "b"), required=True)
    parser.add_argument("--exchange", type=Path, required=True, help="folder for the descriptions and the result")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole attempt")
    parser.add_argument("--pings", type=int, default=10)
    parser.add_argument("--payload", type=int, default=64 * 1024, help="bytes each side sends once connected")
    args = parser.parse_args(argv)
    report = asyncio.run(attempt(args.side, args.exchange, args.timeout, args.pings, args.payload))
    write_report(report, args.exchange)
    return 0 if report.connected and report.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
