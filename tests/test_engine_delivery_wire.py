"""Guaranteed delivery through two cores joined in memory (as h11's tests/helpers.py joins two peers): the
sender and the receiver are tested apart in test_client_delivery; here a lost ``data`` datagram must come
back as an ``ack`` that lists what the receiver holds, on the wire, and the sender must resend only the
missing message. No sockets, no sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from client.engine.core import Output, Send
from client.engine.events import JSON
from protocol import Ack, Data, Frame, Message, encode
from tests.support.engine_outputs import field, kind
from tests.test_client_core import CONE, Lab, Nat
from tests.test_client_relay import ExtendedServer

RTO = 0.2  # DeliveryConfig's first retransmission timeout


class LossyLab(Lab):
    """The in-memory lab with an extended signal server (so peers speak data/ack) and a datagram filter:
    a message ``lose`` says yes to is dropped as it leaves; every message sent is noted with its time."""

    def __init__(self) -> None:
        super().__init__()
        self.server = ExtendedServer()
        self.lose: Callable[[Message], bool] = lambda _: False
        self.lost: list[Message] = []
        self.sent: list[tuple[float, str, Message]] = []

    def perform(self, name: str, outputs: list[Output]) -> None:
        kept: list[Output] = []
        for output in outputs:
            if isinstance(output, Send):
                said = self.tap.plain(encode(output.message))  # sealed between the agents: what is inside
                if isinstance(said, Frame | bytes):
                    kept.append(output)  # a request to the server
                    continue
                self.sent.append((self.now, name, said))
                if self.lose(said):
                    self.lost.append(said)
                    continue
            kept.append(output)
        super().perform(name, kept)

    def on_wire(self, verb: type[Message], host: str) -> list[tuple[float, Any]]:
        """The ``verb`` messages ``host`` sent, as they were encoded, sealed, opened and parsed: what the peer
        read."""
        return [(t, m) for t, name, m in self.sent if name == host and isinstance(m, verb)]

    def of_kind(self, host: str, name: str) -> list[JSON]:
        return [e for e in self.events[host] if kind(e) == name]


def lossy_pair() -> LossyLab:
    lab = LossyLab()
    lab.add("alice", Nat("198.18.0.11", **CONE))  # type: ignore[arg-type]
    lab.add("bob", Nat("198.18.0.12", **CONE))  # type: ignore[arg-type]
    now = lab.now
    lab.request("alice", lambda core: core.connect("bob", now))
    lab.run_until(lab.settled("alice", "bob"))
    assert lab.cores["alice"].peer_status("bob") is not None
    return lab


def lost_epoch(lab: LossyLab) -> int:
    """The epoch of the data datagrams the lab dropped (one sender: one epoch)."""
    epochs = {m.epoch for m in lab.lost if isinstance(m, Data)}
    assert len(epochs) == 1
    return epochs.pop()


def send(lab: LossyLab, host: str, peer: str, text: str) -> None:
    lab.perform(host, lab.cores[host].send(peer, text, lab.now).outputs)
    lab.deliver()


def test_a_lost_data_datagram_is_acked_around_and_only_it_is_resent() -> None:
    lab = lossy_pair()
    lab.lose = lambda m: isinstance(m, Data) and m.text == "one"  # lost once, on its first trip
    send(lab, "alice", "bob", "one")
    lab.lose = lambda _: False
    send(lab, "alice", "bob", "two")
    send(lab, "alice", "bob", "three")
    epoch = lost_epoch(lab)
    # What bob put on the wire: "nothing in order yet, but I hold 1 and then 1-2".
    assert [a for _, a in lab.on_wire(Ack, "bob")] == [Ack("bob", epoch, 0, ((1, 1),)), Ack("bob", epoch, 0, ((1, 2),))]
    assert [field(e, "text") for e in lab.of_kind("bob", "message_received")] == []
    assert lab.of_kind("alice", "message_delivered") == []
    lab.run_for(RTO + 0.01)
    resent = [(d.seq, d.text) for _, d in lab.on_wire(Data, "alice")][3:]
    assert resent == [(0, "one")], "the held messages are not resent"
    assert [field(e, "text") for e in lab.of_kind("bob", "message_received")] == ["one", "two", "three"]
    assert [a for _, a in lab.on_wire(Ack, "bob")][-1] == Ack("bob", epoch, 3)
    delivered = [(field(e, "seq"), field(e, "text")) for e in lab.of_kind("alice", "message_delivered")]
    assert delivered == [(0, "one"), (1, "two"), (2, "three")]
    status = lab.cores["alice"].peer_status("bob")
    assert status is not None
    assert (status["delivered"], status["retransmitted"]) == (3, 1)


def test_held_ranges_survive_the_wire_both_ways() -> None:
    lab = lossy_pair()
    lost = {"m0", "m3"}
    lab.lose = lambda m: isinstance(m, Data) and m.text in lost
    for i in range(6):
        send(lab, "alice", "bob", f"m{i}")
    epoch = lost_epoch(lab)
    assert [a for _, a in lab.on_wire(Ack, "bob")][-1] == Ack("bob", epoch, 0, ((1, 2), (4, 5)))
    lost.clear()
    lab.run_for(RTO + 0.01)
    assert sorted(d.text for _, d in lab.on_wire(Data, "alice")[6:]) == ["m0", "m3"]
    assert [field(e, "text") for e in lab.of_kind("bob", "message_received")] == [f"m{i}" for i in range(6)]
    assert len(lab.of_kind("alice", "message_delivered")) == 6
