"""Packet captures in a real lab: a direct flow between alice and bob is in router-a's LAN capture (from
alice's address) and in its WAN capture (from the router's WAN address, the port the peer sees); a ring keeps
a bounded number of files however much passes; and a failed lab step's artifacts carry the routers' pcaps,
with the packets of the failed step in them.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenarios.captures import read_flows, status
from scenarios.harness import Lab, LabError, start_lab
from scenarios.pcap_flows import Flow, FlowKey, Summary
from scenarios.steps import connect_expecting, peer_status

RING_FILES, RING_BYTES = 4, 1_000_000
"""nat capture's default ring: 4 files of 1 MB (tcpdump's -C counts millions of bytes) per interface."""
SNAPLEN_RECORD = 256 + 16
"""The most a packet adds to a file: its first 256 bytes and the pcap record header."""


@pytest.fixture(scope="module")
def lab(docker_ready: None) -> Iterator[Lab]:
    """A cone-cone lab whose routers capture a ring from boot (said outright: the harness's default is ring
    unless NATLAB_CAPTURE in the caller's environment says otherwise)."""
    with start_lab(name="captures", env={"NAT_A": "cone", "NAT_B": "cone", "NATLAB_CAPTURE": "ring"}) as running:
        yield running


def current_files(lab: Lab, router: str, role: str) -> list[dict[str, object]]:
    return [f for f in status(lab.container(router))["files"] if str(f["name"]).startswith(f"{role}.pcap")]


def flows(lab: Lab, router: str, role: str) -> Summary:
    """The flows in the router's current capture of one side, after its tcpdumps flushed."""
    lab.exec_ok(router, "nat", "capture", "flush")
    return read_flows(lab.container(router), [str(f["name"]) for f in current_files(lab, router, role)])


def find(summary: Summary, wanted: FlowKey) -> Flow | None:
    """The flow that matches ``wanted`` (a source port of None matches any)."""
    for flow in summary.flows:
        key = flow.key
        if wanted.sport is None:
            key = FlowKey(key.proto, key.src, None, key.dst, key.dport)
        if key == wanted:
            return flow
    return None


def test_a_direct_flow_shows_on_both_sides_of_router_a(lab: Lab) -> None:
    bob_seen = connect_expecting(lab, "alice", "direct")  # bob as alice sees him
    lab.exec_ok("alice", "client", "send", "bob", "seen by tcpdump")
    alice_seen = lab.wait_for(lambda: peer_status(lab, "bob"), 10, "bob to know alice")
    bob_ip, bob_port = bob_seen["addr"].rsplit(":", 1)
    public_ip, public_port = alice_seen["addr"].rsplit(":", 1)  # router-a's WAN address and the port it mapped
    assert public_ip == lab.address("router-a", "wan")

    on_lan = FlowKey("udp", lab.address("alice"), None, bob_ip, int(bob_port))
    on_wan = FlowKey("udp", public_ip, int(public_port), bob_ip, int(bob_port))
    inside = lab.wait_for(lambda: find(flows(lab, "router-a", "lan"), on_lan), 20, "alice -> bob in the LAN pcap")
    outside = lab.wait_for(lambda: find(flows(lab, "router-a", "wan"), on_wan), 20, "alice -> bob in the WAN pcap")
    assert inside.packets >= 1
    assert outside.packets >= 1
    wan = flows(lab, "router-a", "wan")
    assert not [f for f in wan.flows if lab.address("alice") in (f.key.src, f.key.dst)], "alice's own address left"


def test_the_ring_keeps_a_bounded_number_of_files(lab: Lab) -> None:
    """12,000 pings of 1,200 bytes put 2 x 12,000 x 272 bytes (6.5 MB) through router-a's LAN capture: more
    than its 4 x 1 MB ring. The ring still holds 4 files of about 1 MB, and the packets from before the flood
    are gone from it."""
    before_flood = time.time()
    output = lab.exec_ok("alice", "ping", "-q", "-f", "-c", "12000", "-s", "1200", "-w", "120", lab.address("server"))
    assert "12000 packets transmitted" in output, output

    def ring_wrapped() -> list[dict[str, object]] | None:
        files = current_files(lab, "router-a", "lan")
        earliest = min((f.first for f in flows(lab, "router-a", "lan").flows), default=0.0)
        return files if len(files) == RING_FILES and earliest > before_flood else None

    files = lab.wait_for(ring_wrapped, 30, "router-a's LAN ring to wrap around")
    assert all(int(str(f["bytes"])) <= RING_BYTES + SNAPLEN_RECORD for f in files), files
    for role in ("wan", "lan"):
        assert len(current_files(lab, "router-a", role)) <= RING_FILES
    assert all(p["running"] for p in status(lab.container("router-a"))["capture"]["processes"])


def test_a_failed_step_saves_the_routers_pcaps_as_artifacts(lab: Lab, tmp_path: Path) -> None:
    step_started = time.time()
    with pytest.raises(LabError):  # the server knows no carol: a lab step that fails, traffic and all
        lab.exec_ok("alice", "client", "send", "carol", "anyone there?")
    folder = lab.collect_artifacts(tmp_path / "artifacts")  # what scenarios/conftest.py does on a failure

    for router in ("router-a", "router-b"):
        for role in ("wan", "lan"):
            saved = sorted(folder.glob(f"{router}.{role}-*.pcap"))
            assert 1 <= len(saved) <= RING_FILES, sorted(p.name for p in folder.iterdir())
    server = (lab.address("server"), 9000)
    router_a_wan = lab.address("router-a", "wan")
    sent = [
        when
        for path in folder.glob("router-a.wan-*.pcap")
        for when, source, destination in udp_records(path)
        if source[0] == router_a_wan and destination == server
    ]
    assert sent, "router-a's requests to the server are in the saved pcap"
    assert max(sent) >= step_started, "and the failed step's own request is among them"


def udp_records(path: Path) -> Iterator[tuple[float, tuple[str, int], tuple[str, int]]]:
    """(time, source, destination) of each IPv4/UDP packet of a classic little-endian pcap file."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1", f"{path.name} is not a pcap file"
    offset = 24
    while offset + 16 <= len(data):
        seconds, micros, kept, _ = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + kept]
        offset += 16 + kept
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        header = (frame[14] & 0x0F) * 4
        source_port, destination_port = struct.unpack_from("!HH", frame, 14 + header)
        source, destination = ".".join(map(str, frame[26:30])), ".".join(map(str, frame[30:34]))
        yield seconds + micros / 1e6, (source, source_port), (destination, destination_port)
