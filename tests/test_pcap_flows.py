"""The flow summary of ``make capture`` over real tcpdump output, and the names pcaps get on the host.

tests/fixtures/captures/router-a-{lan,wan}.txt are ``tcpdump -nn -tt -e -q -r`` of one lab's router-a ring
(its LAN 198.18.93.0/24, WAN 198.18.92.0/24, WAN address .11): alice registering with the server (9000) and
the TURN server (3478), a direct exchange with bob's router (.12), a ping, an iperf3 TCP run, a datagram to a
closed port and its ICMP error, ARP and IPv6 router solicitations. Only whole lines were dropped (most of the
TCP run), none edited.
"""

from pathlib import Path

import pytest

from scenarios.captures import Stored, host_names
from scenarios.pcap_flows import TCPDUMP_READ, FlowKey, Packet, clock, parse_line, summarise

FIXTURES = Path(__file__).parent / "fixtures" / "captures"
ALICE, SERVER, ROUTER_A, ROUTER_B = "198.18.93.10", "198.18.92.10", "198.18.92.11", "198.18.92.12"


def lines(side: str) -> list[str]:
    return (FIXTURES / f"router-a-{side}.txt").read_text().splitlines()


@pytest.mark.parametrize(
    ("line", "packet"),
    [
        (
            "1796030409.994874 02:42:c6:12:5d:0a > 02:42:c6:12:5d:02, IPv4, length 225: "
            "198.18.93.10.57190 > 198.18.92.10.9000: UDP, length 183",
            Packet(1796030409.994874, FlowKey("udp", ALICE, 57190, SERVER, 9000), 225),
        ),
        (
            "1796030442.264370 02:42:c6:12:5d:0a > 02:42:c6:12:5d:02, IPv4, length 103: "
            "198.18.93.10.52816 > 198.18.92.10.5201: tcp 37",
            Packet(1796030442.26437, FlowKey("tcp", ALICE, 52816, SERVER, 5201), 103),
        ),
        (
            "1796030426.913374 02:42:c6:12:5d:0a > 02:42:c6:12:5d:02, IPv4, length 142: "
            "198.18.93.10 > 198.18.92.10: ICMP echo request, id 48883, seq 1, length 108",
            Packet(1796030426.913374, FlowKey("icmp", ALICE, None, SERVER, None), 142),
        ),
        (
            "1796030445.129560 02:42:c6:12:5d:02 > 02:42:c6:12:5d:0a, IPv4, length 90: "
            "198.18.92.10 > 198.18.93.10: ICMP 198.18.92.10 udp port 7777 unreachable, length 56",
            Packet(1796030445.12956, FlowKey("icmp", SERVER, None, ALICE, None), 90),
        ),
        (
            "1796030413.154374 f6:66:15:9e:59:66 > 33:33:00:00:00:02, IPv6, length 70: "
            "fe80::f466:15ff:fe9e:5966 > ff02::2: ICMP6, router solicitation, length 16",
            Packet(1796030413.154374, FlowKey("icmp6", "fe80::f466:15ff:fe9e:5966", None, "ff02::2", None), 70),
        ),
        (
            "1796030415.206331 02:42:c6:12:5d:02 > 02:42:c6:12:5d:0a, ARP, length 42: "
            "Request who-has 198.18.93.10 tell 198.18.93.2, length 28",
            Packet(1796030415.206331, FlowKey("arp"), 42),
        ),
    ],
    ids=["udp", "tcp", "icmp-echo", "icmp-error", "icmp6", "arp"],
)
def test_one_line_of_each_kind(line, packet):
    assert parse_line(line) == packet


@pytest.mark.parametrize(
    "line",
    [
        "reading from file /var/log/natlab/pcap/wan.pcap0, link-type EN10MB (Ethernet), snapshot length 256",
        "tcpdump: pcap_loop: truncated dump file; tried to read 272 captured bytes, only got 113",
        "1796030409.994874 02:42:c6:12:5d:0a > 02:42:c6:12:5d:02, IPv4, length 225: 198.18.93.10.57190 > "
        "198.18.92.10: UDP, length 183",
    ],
    ids=["banner", "truncated", "udp-without-port"],
)
def test_what_is_not_a_packet_line_is_left_over(line):
    assert parse_line(line) is None
    assert summarise([line]).unparsed == [line]


def test_every_fixture_line_is_a_packet_and_counted_once():
    for side in ("lan", "wan"):
        summary = summarise(lines(side))
        assert summary.unparsed == []
        assert sum(flow.packets for flow in summary.flows) == len(lines(side))


def test_a_flow_sums_packets_and_frame_bytes_from_first_to_last():
    to_server = [line for line in lines("lan") if f"{ALICE}.57190 > {SERVER}.9000:" in line]
    [flow] = [f for f in summarise(lines("lan")).flows if f.key == FlowKey("udp", ALICE, 57190, SERVER, 9000)]
    assert flow.packets == len(to_server) == 13
    assert flow.bytes == sum(int(line.split(", length ")[1].split(":")[0]) for line in to_server)
    assert (flow.first, flow.last) == (float(to_server[0].split()[0]), float(to_server[-1].split()[0]))


def test_the_nat_shows_as_the_same_flow_with_the_routers_address_on_the_wan():
    """The cone router keeps alice's port: LAN alice:57190 -> bob's router is WAN .11:57190 -> the same."""
    lan = {f.key: f for f in summarise(lines("lan")).flows}
    wan = {f.key: f for f in summarise(lines("wan")).flows}
    inside = lan[FlowKey("udp", ALICE, 57190, ROUTER_B, 41487)]
    outside = wan[FlowKey("udp", ROUTER_A, 57190, ROUTER_B, 41487)]
    assert (inside.packets, inside.bytes) == (outside.packets, outside.bytes) == (7, 853)
    assert not any(ALICE in (key.src, key.dst) for key in wan)


def test_flows_come_in_the_order_they_started_and_read_as_one_line():
    flows = summarise(lines("wan")).flows
    assert [f.first for f in flows] == sorted(f.first for f in flows)
    assert flows[0].describe() == (
        "udp 198.18.92.11:57190 > 198.18.92.10:9000                 "
        "13 packets        2,872 bytes  09:20:09.994 - 09:20:57.992"
    )
    assert FlowKey("udp", "fe80::1", 546, "ff02::1:2", 547).describe() == "udp [fe80::1]:546 > [ff02::1:2]:547"
    assert FlowKey("arp").describe() == "arp"


def test_times_are_utc_to_the_millisecond():
    assert clock(1796030409.9948) == "09:20:09.994"


def test_the_read_command_keeps_what_the_parser_needs():
    assert TCPDUMP_READ == ("tcpdump", "-nn", "-tt", "-e", "-q", "-r")


def test_host_names_number_a_ring_oldest_first_and_keep_a_single_file():
    stored = [
        Stored("wan.pcap0", 300.0),  # tcpdump's slot 0, rewritten last: the newest
        Stored("wan.pcap1", 100.0),
        Stored("wan.pcap2", 200.0),
        Stored("lan.pcap", 50.0),
        Stored("previous/lan.pcap1", 20.0),
        Stored("previous/lan.pcap0", 10.0),
        Stored("notes.txt", 1.0),
    ]
    assert host_names(stored) == {
        "wan.pcap1": "wan-1.pcap",
        "wan.pcap2": "wan-2.pcap",
        "wan.pcap0": "wan-3.pcap",
        "lan.pcap": "lan.pcap",
        "previous/lan.pcap0": "previous-lan-1.pcap",
        "previous/lan.pcap1": "previous-lan-2.pcap",
    }
