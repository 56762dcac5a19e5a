"""The attack tools (attacks/): packets built and parsed, the lab-only address rule, the flood plan, the
victim's counter, the impersonator, and (as root) forged datagrams that the kernel really delivers."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import threading
from pathlib import Path

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from attacks import flood, forms, memory, sink
from attacks.cli import main, parser
from attacks.exchange import exchange
from attacks.packets import HEADERS, Datagram, OutsideLab, PacketError, build, check_lab, checksum, parse
from attacks.raw import Sent, capture, send_spoofed
from protocol import Endpoint
from tests.support.ports import free_udp_ports

SRC = Endpoint("198.18.0.77", 40001)
DST = Endpoint("198.18.0.10", 9000)


def eventually(check, timeout=5.0):
    for attempt in Retrying(
        stop=stop_after_delay(timeout), wait=wait_fixed(0.02), retry=retry_if_exception_type(AssertionError)
    ):
        with attempt:
            return check()
    raise AssertionError("unreachable")


# -- packets ------------------------------------------------------------------------------------------------


def test_a_built_packet_parses_back_with_valid_checksums():
    datagram = Datagram(SRC, DST, b"register p")
    packet = build(datagram, ident=7)
    assert len(packet) == HEADERS + len(b"register p") == 38
    assert parse(packet) == datagram
    assert checksum(packet[:20]) == 0, "the IP header checksum must verify"
    pseudo = bytes([198, 18, 0, 77, 198, 18, 0, 10, 0, 17]) + struct.pack("!H", len(packet) - 20)
    assert checksum(pseudo + packet[20:]) == 0, "the UDP checksum must verify over the pseudo header"


def test_an_odd_length_payload_is_padded_for_the_checksum_only():
    packet = build(Datagram(SRC, DST, b"abc"))
    assert parse(packet).payload == b"abc"
    assert len(packet) == HEADERS + 3


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"\x45" * 10, "shorter than an IPv4 header"),
        (b"\x60" + bytes(39), "not an IPv4 header"),
        (bytes.fromhex("4500001c000000004001") + bytes(18), "IP protocol 1, not UDP"),
        (bytes.fromhex("4500001c000020004011") + bytes(18), "a fragment"),
        (bytes.fromhex("450000180000000040110000c6120001c6120002") + bytes(4), "truncated UDP header"),
    ],
)
def test_what_is_not_an_ipv4_udp_packet_is_named(packet, why):
    with pytest.raises(PacketError, match=why):
        parse(packet)


@pytest.mark.parametrize("host", ["198.18.0.1", "198.19.255.254", "100.64.3.4", "127.0.0.1"])
def test_lab_addresses_are_allowed(host):
    assert check_lab(Endpoint(host, 1)) == Endpoint(host, 1)


@pytest.mark.parametrize("host", ["10.0.0.1", "172.16.0.1", "192.168.1.1", "8.8.8.8", "198.20.0.1", "::1"])
def test_addresses_outside_the_lab_are_refused(host):
    with pytest.raises(OutsideLab, match=r"outside the lab|IPv4 only"):
        check_lab(Endpoint(host, 1))


def test_the_cli_refuses_an_address_outside_the_lab(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["spoof", "--src", "10.1.2.3:5", "--dst", "198.18.0.10:9000", "--text", "x"])
    assert "outside the lab" in capsys.readouterr().err


def test_counts_are_bounded(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["send", "--dst", "127.0.0.1:9", "--text", "x", "--count", "1000000"])
    assert "must be 1..10000" in capsys.readouterr().err


def test_sent_counts_payload_and_ip_bytes():
    sent = Sent().add(b"connect p q").add(b"x")
    assert sent.to_json() == {"sent": 2, "payload_bytes": 12, "ip_bytes": 12 + 2 * 28}


# -- forms and the impersonator -----------------------------------------------------------------------------


def test_forms_are_the_protocols_own_text():
    assert forms.register("p") == b"register p"
    assert forms.register("p", Endpoint("::1", 9)) == b"register p relay=[::1]:9"
    assert forms.register("p", extended=True) == b"register p relay=-"
    assert forms.connect("p", "q") == b"connect p q"
    assert forms.msg("bob", "hi there") == b"msg bob hi there"
    assert forms.data("bob", "x") == b"data bob 777 0 0 x"
    assert forms.hello("bob") == b"hello bob"


def test_the_impersonator_answers_probes_and_punches_as_the_id_it_took():
    answer = forms.impersonate("alice")
    bob = Endpoint("198.18.0.12", 4000)
    assert answer(b"hello bob", bob) == [(b"hello-ack alice", bob)]
    assert answer(b"punch bob 198.18.0.12:4000", DST) == [(b"hello alice", bob)]
    assert answer(b"msg bob hi", bob) == []
    assert answer(b"\xff", bob) == []


def test_an_exchange_sends_listens_and_answers_on_loopback():
    (port,) = free_udp_ports(1)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", port))
    peer.settimeout(5)
    ready = threading.Event()
    result = {}

    def attacker():
        target = [(b"register alice", Endpoint("127.0.0.1", port))]
        result["done"] = exchange(target, 3.0, answer=forms.impersonate("alice"), on_ready=ready.set)

    thread = threading.Thread(target=attacker)
    thread.start()
    try:
        data, attacker_addr = peer.recvfrom(100)
        assert data == b"register alice"
        assert ready.wait(5)
        peer.sendto(b"hello bob", attacker_addr)
        assert peer.recvfrom(100) == (b"hello-ack alice", attacker_addr)
    finally:
        thread.join()
        peer.close()
    done = result["done"].to_json()
    assert done["heard"] == [{"from": f"127.0.0.1:{port}", "text": "hello bob", "bytes": 9}]
    assert (done["sent"], done["payload_bytes"]) == (2, len(b"register alice") + len(b"hello-ack alice"))


def test_send_prints_json_with_what_came_back(capsys):
    (port,) = free_udp_ports(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo:
        echo.bind(("127.0.0.1", port))

        def answer_once():
            data, addr = echo.recvfrom(100)
            echo.sendto(b"err " + data, addr)

        thread = threading.Thread(target=answer_once)
        thread.start()
        assert main(["send", "--dst", f"127.0.0.1:{port}", "--text", "connect", "--listen", "2"]) == 0
        thread.join()
    printed = json.loads(capsys.readouterr().out)
    assert printed["heard"][0]["text"] == "err connect"
    assert printed["sent"] == 1


# -- flood plan ---------------------------------------------------------------------------------------------


def test_a_flood_plan_spreads_new_ids_over_new_sources_of_the_network():
    network = ipaddress.IPv4Network("198.18.3.0/24")
    plan = flood.plan(300, DST, network, range(100, 250), "f")
    assert len({d.src for d in plan}) == 300, "every (address, port) is new"
    assert {d.src.host for d in plan} == {f"198.18.3.{h}" for h in range(100, 250)}
    assert [d.payload for d in plan[:2]] == [b"register f0", b"register f1"]
    assert len({d.payload for d in plan}) == 300
    assert all(d.dst == DST for d in plan)


@pytest.mark.parametrize(
    ("count", "network", "hosts", "error"),
    [
        (0, "198.18.3.0/24", range(1, 2), "count must be"),
        (flood.MAX_COUNT + 1, "198.18.3.0/24", range(1, 2), "count must be"),
        (10, "198.18.3.0/24", range(250, 300), "are not addresses of"),
        (10, "10.0.0.0/24", range(1, 5), "outside the lab"),
    ],
)
def test_a_flood_plan_is_bounded_and_stays_in_the_lab(count, network, hosts, error):
    with pytest.raises(ValueError, match=error):
        flood.plan(count, DST, ipaddress.IPv4Network(network), hosts, "f")


# -- the victim's counter and the memory reader -------------------------------------------------------------


def test_the_counter_counts_by_source_and_bounds_its_sources(monkeypatch):
    monkeypatch.setattr(sink, "MAX_SOURCES", 2)
    totals = sink.Totals()
    for port in (1, 1, 2, 3, 4):
        totals.add(Datagram(Endpoint("198.18.0.10", port), SRC, b"punch x"), now=100.0)
    shown = totals.to_json()
    assert shown["total"] == {"datagrams": 5, "payload_bytes": 35, "ip_bytes": 35 + 5 * 28}
    assert {k: v["datagrams"] for k, v in shown["by_source"].items()} == {
        "198.18.0.10:1": 2,
        "198.18.0.10:2": 1,
        "other": 2,
    }
    assert shown["last_at"] == 100.0


def test_show_says_how_long_the_victim_has_been_quiet(tmp_path):
    state = tmp_path / "sink.json"
    state.write_text(json.dumps(sink.Totals().to_json()))
    assert sink.show(state, now=5.0)["idle_s"] is None
    totals = sink.Totals()
    totals.add(Datagram(DST, SRC, b"ok"), now=10.0)
    state.write_text(json.dumps(totals.to_json()))
    assert sink.show(state, now=12.5)["idle_s"] == 2.5


def test_memory_reads_rss_and_peak_of_matching_processes(tmp_path):
    for pid, cmdline, rss in ((1, b"/sbin/docker-init\0--\0python3\0-m\0server", 900), (7, b"python3\0-m\0server", 2)):
        folder = tmp_path / str(pid)
        folder.mkdir()
        (folder / "cmdline").write_bytes(cmdline)
        (folder / "status").write_text(f"Name:\tx\nVmHWM:\t  {rss * 2} kB\nVmRSS:\t  {rss} kB\n")
    (tmp_path / "self").mkdir()
    found = memory.processes("python3 -m server", proc=tmp_path)
    assert found == [{"pid": 7, "cmdline": "python3 -m server", "rss_kb": 2, "peak_rss_kb": 4}]
    assert memory.status_kb("Name: kthreadd\n", "VmRSS") is None


# -- as root: the kernel delivers what the tools forge, and shows them what they capture --------------------


@pytest.mark.needs(root=True)
def test_a_forged_source_is_what_the_receiver_sees():
    (port,) = free_udp_ports(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", port))
        receiver.settimeout(5)
        forged = Endpoint("127.0.0.99", 4242)
        sent = send_spoofed([Datagram(forged, Endpoint("127.0.0.1", port), b"not from me")], count=2)
        assert receiver.recvfrom(100) == (b"not from me", ("127.0.0.99", 4242))
        assert receiver.recvfrom(100) == (b"not from me", ("127.0.0.99", 4242))
    assert sent.to_json() == {"sent": 2, "payload_bytes": 22, "ip_bytes": 2 * 39}


@pytest.mark.needs(root=True)
def test_a_capture_sees_datagrams_addressed_to_others():
    (port,) = free_udp_ports(1)
    ready = threading.Event()
    found = {}

    def run():
        wanted = lambda d: d.dst == Endpoint("127.0.0.1", port) and d.payload.startswith(b"capture me")  # noqa: E731
        found["datagrams"] = capture(wanted, 1, 5.0, on_ready=ready.set)

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"capture me, nobody listens", ("127.0.0.1", port))
    thread.join()
    (datagram,) = found["datagrams"]
    assert datagram.payload == b"capture me, nobody listens"


@pytest.mark.needs(root=True)
def test_the_counter_serves_its_totals_while_it_counts(tmp_path: Path):
    state, stop = tmp_path / "sink.json", threading.Event()
    thread = threading.Thread(target=sink.serve, args=(state, 0.05, stop))
    thread.start()
    try:
        eventually(lambda: _exists(state))
        (port,) = free_udp_ports(1)
        forged = Endpoint("127.0.0.98", 4343)
        send_spoofed([Datagram(forged, Endpoint("127.0.0.1", port), b"count me")], count=3)
        counted = eventually(lambda: _counted(state, str(forged)))
    finally:
        stop.set()
        thread.join()
    assert counted == {"datagrams": 3, "payload_bytes": 24, "ip_bytes": 24 + 3 * 28}


def _counted(state: Path, source: str):
    by_source = sink.show(state)["by_source"]
    assert by_source.get(source, {}).get("datagrams") == 3
    return by_source[source]


def _exists(path: Path) -> None:
    assert path.exists()
