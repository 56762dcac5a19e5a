"""``client nat-type``'s socket layer and CLI against a fake RFC 5780 server on loopback.

The fake listens on 127.0.0.1 and 127.0.0.2, two ports each, honours CHANGE-REQUEST and RESPONSE-PORT and
reports OTHER-ADDRESS and RESPONSE-ORIGIN. With no NAT on loopback it can still play one: it reports a
mapped address that depends on which of its sockets was asked (the mapping), drops answers that a NAT's
filter would drop, and forgets idle clients (the binding lifetime).
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from aioice import stun

from client.cli.main import main
from client.diagnostics.nat_discovery import discover
from client.diagnostics.nat_type import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    DiscoveryError,
)
from client.diagnostics.stun_probe import RESPONSE_PORT, Probe, run_probes, udp_socket
from client.turn.outputs import Retransmit
from client.turn.wire import CLASS_REQUEST, CLASS_RESPONSE, encode, parse_stun, raw_attribute
from protocol import Endpoint
from tests.support.ports import free_udp_ports

IPS = ("127.0.0.1", "127.0.0.2")
FAST = Retransmit(rto=0.05, rc=3, rm=2)  # gives up after 0.25 s on loopback
NAT_PORT_BASE = 20000


class FakeServer:
    """RFC 5780 on four loopback sockets, optionally playing a NAT in front of the client.

    ``mapping``: how the reported mapped port depends on the server socket asked (None: report the real
    source, i.e. no NAT). ``filtering``: which changed-address answers are dropped. ``other``: report
    OTHER-ADDRESS. ``honour_change``: answer CHANGE-REQUESTs from the address asked for (else from the one
    asked). ``mapping_timeout``: answers sent with RESPONSE-PORT to a port idle longer than this are dropped.
    """

    def __init__(
        self,
        *,
        mapping: str | None = None,
        filtering: str = ENDPOINT_INDEPENDENT,
        other: bool = True,
        honour_change: bool = True,
        mapping_timeout: float | None = None,
        silent_alternate: bool = False,
    ) -> None:
        self.mapping, self.filtering, self.other = mapping, filtering, other
        self.honour_change, self.mapping_timeout, self.silent_alternate = (
            honour_change,
            mapping_timeout,
            silent_alternate,
        )
        self.port = free_udp_ports(2, IPS).start  # P and P+1 on both addresses
        self.sockets = {}
        for ip_index, ip in enumerate(IPS):
            for port_index in (0, 1):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((ip, self.port + port_index))
                self.sockets[ip_index, port_index] = sock
        self.primary = Endpoint(IPS[0], self.port)
        self.requests: list[tuple[Endpoint, Endpoint, int]] = []  # (to, from, CHANGE-REQUEST)
        self.last_seen: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        by_socket = {sock: key for key, sock in self.sockets.items()}
        while not self._stop.is_set():
            for sock in select.select(list(by_socket), [], [], 0.02)[0]:
                data, source = sock.recvfrom(2048)
                self._answer(by_socket[sock], data, source)

    def _answer(self, key: tuple[int, int], data: bytes, source: tuple[str, int]) -> None:
        request = parse_stun(data)
        if request.cls != CLASS_REQUEST:
            return
        now = time.monotonic()
        self.last_seen[source] = now
        change = int(request.attributes.get("CHANGE-REQUEST", 0))
        self.requests.append((Endpoint(IPS[key[0]], self.port + key[1]), Endpoint.of(source), change))
        if self.silent_alternate and key[0] == 1:
            return
        ip_index, port_index = key
        if self.honour_change:
            ip_index ^= bool(change & 0x4)
            port_index ^= bool(change & 0x2)
        if (ip_index, port_index) != key and not self._filter_lets_in(key, (ip_index, port_index)):
            return
        rp = raw_attribute(data, RESPONSE_PORT)
        to = (source[0], struct.unpack("!H", rp[:2])[0]) if rp else source
        if rp:
            idle = now - self.last_seen.get(to, 0.0) if to != source else 0.0
            if self.mapping_timeout is not None and idle > self.mapping_timeout:
                return
            self.last_seen[to] = now
        attributes: dict[str, object] = {"XOR-MAPPED-ADDRESS": self._mapped(key, source)}
        attributes["RESPONSE-ORIGIN"] = (IPS[ip_index], self.port + port_index)
        if self.other:
            attributes["OTHER-ADDRESS"] = (IPS[1 - key[0]], self.port + 1 - key[1])
        reply = encode(stun.Method.BINDING, CLASS_RESPONSE, attributes, request.tid)
        self.sockets[ip_index, port_index].sendto(reply, to)

    def _filter_lets_in(self, asked: tuple[int, int], answering: tuple[int, int]) -> bool:
        if self.filtering == ENDPOINT_INDEPENDENT:
            return True
        return self.filtering == ADDRESS_DEPENDENT and asked[0] == answering[0]

    def _mapped(self, key: tuple[int, int], source: tuple[str, int]) -> tuple[str, int]:
        if self.mapping is None:
            return source
        offset = {
            ENDPOINT_INDEPENDENT: 0,
            ADDRESS_DEPENDENT: key[0],
            ADDRESS_AND_PORT_DEPENDENT: 2 * key[0] + key[1],
        }[self.mapping]
        return ("127.0.0.1", NAT_PORT_BASE + source[1] % 10000 * 4 + offset)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets.values():
            sock.close()


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    server = FakeServer(**getattr(request, "param", {}))
    yield server
    server.close()


def test_no_nat(fake: FakeServer) -> None:
    report = discover(fake.primary, timing=FAST)
    assert (report.nat, report.mapping, report.filtering) == (False, ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT)
    assert report.other == Endpoint("127.0.0.2", fake.port + 1)
    assert report.mapped == report.local
    assert report.hairpinning is True
    assert report.port_preserved is True
    assert report.lifetime is None


def test_each_test_uses_its_own_socket(fake: FakeServer) -> None:
    """Mapping test on one socket; each CHANGE-REQUEST from a fresh one that only ever talked to the primary."""
    discover(fake.primary, timing=FAST)
    by_source: dict[Endpoint, list[tuple[str, int]]] = {}
    for to, source, change in fake.requests:
        if (str(to), change) not in by_source.setdefault(source, []):  # once, not every retransmission
            by_source[source].append((str(to), change))
    primary, other_ip, other_both = str(fake.primary), f"127.0.0.2:{fake.port}", f"127.0.0.2:{fake.port + 1}"
    assert sorted(by_source.values()) == sorted(
        [
            [(primary, 0), (other_ip, 0), (other_both, 0)],
            [(primary, 0), (primary, 0x6)],
            [(primary, 0), (primary, 0x2)],
        ]
    )


@pytest.mark.parametrize(
    "fake",
    [
        {"mapping": mapping, "filtering": filtering}
        for mapping, filtering in [
            (ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT),
            (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT),
            (ADDRESS_DEPENDENT, ENDPOINT_INDEPENDENT),
            (ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT),
        ]
    ],
    indirect=True,
)
def test_a_played_nat_is_recognised(fake: FakeServer) -> None:
    report = discover(fake.primary, timing=FAST)
    assert (report.nat, report.mapping, report.filtering) == (True, fake.mapping, fake.filtering)
    assert report.hairpinning is False  # nothing listens on the played mapped address
    assert report.port_preserved is False
    assert len(set(report.mapped_ports)) == {ENDPOINT_INDEPENDENT: 1, ADDRESS_DEPENDENT: 2}.get(str(fake.mapping), 3)


@pytest.mark.parametrize("fake", [{"mapping_timeout": 1.5}], indirect=True)
def test_binding_lifetime(fake: FakeServer) -> None:
    started = time.monotonic()
    report = discover(fake.primary, lifetime_max=3, timing=FAST)
    assert report.lifetime is not None
    assert (report.lifetime.kept, report.lifetime.lost) == (1.0, 2.0)
    assert time.monotonic() - started < 3 + 1.5, "the idle times are probed at once"


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (
            {"other": False},
            "does not support RFC 5780 NAT behaviour discovery: its Binding response has no OTHER-ADDRESS",
        ),
        ({"honour_change": False}, r"came from 127\.0\.0\.1:\d+, not 127\.0\.0\.2:\d+: the server does not honour"),
        ({"silent_alternate": True}, r"no answer to a STUN Binding request to the server's other address 127\.0\.0\.2"),
    ],
    indirect=["fake"],
)
def test_a_server_that_cannot_tell_gives_no_verdict(fake: FakeServer, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        discover(fake.primary, timing=FAST)


def test_a_silent_server_gives_no_verdict() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        server = Endpoint.of(silent.getsockname())
        with pytest.raises(DiscoveryError, match=rf"no answer to a STUN Binding request to {server} within 0.25 s"):
            discover(server, timing=FAST)


def test_requests_are_retransmitted_and_strays_ignored() -> None:
    """The answer comes to the third transmission; garbage and another transaction's answer come first."""
    with udp_socket("127.0.0.1") as client, udp_socket("127.0.0.1") as server:
        probe = Probe(client, Endpoint.of(server.getsockname()))
        server.settimeout(5)

        def serve() -> None:
            for count in range(1, 4):
                data, source = server.recvfrom(2048)
                if count == 3:
                    server.sendto(b"garbage", source)
                    for tid in (bytes(12), parse_stun(data).tid):
                        answer = encode(stun.Method.BINDING, CLASS_RESPONSE, {"XOR-MAPPED-ADDRESS": source}, tid)
                        server.sendto(answer, source)

        thread = threading.Thread(target=serve)
        thread.start()
        started = time.monotonic()
        [answer] = run_probes([probe], Retransmit(rto=0.05, rc=4, rm=4))
        took = time.monotonic() - started
        thread.join()
        assert answer is not None
        assert answer.mapped == Endpoint.of(client.getsockname())
    assert 0.15 <= took < 0.35, "answered after the third transmission (at 0.15 s)"


# -- CLI ---------------------------------------------------------------------------------------------


def test_cli_json(fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nat-type", "--server", str(fake.primary), "--json"], {}) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "server", "other", "local", "mapped", "nat", "mapping", "filtering", "classic", "port_preserved",
        "hairpinning", "mapped_ports", "lifetime_max_s", "lifetime_s", "lifetime_lost_s",
    }  # fmt: skip
    assert (report["nat"], report["mapping"], report["filtering"]) == (
        False,
        "endpoint-independent",
        "endpoint-independent",
    )
    assert report["server"] == str(fake.primary)


def test_cli_human_lines_and_server_from_the_environment(fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nat-type"], {"NATLAB_STUN": str(fake.primary), "NATLAB_TURN": "127.0.0.1:9"}) == 0
    out = capsys.readouterr().out
    assert f"server       {fake.primary} (other address 127.0.0.2:{fake.port + 1})" in out
    assert "nat          no (mapped address == local address)" in out
    assert main(["nat-type"], {"NATLAB_TURN": str(fake.primary)}) == 0
    assert "mapping      endpoint-independent" in capsys.readouterr().out


@pytest.mark.parametrize("fake", [{"other": False}], indirect=True)
def test_cli_no_verdict_is_exit_1(fake: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nat-type", "--server", str(fake.primary)], {}) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"client: nat-type: {fake.primary} does not support RFC 5780")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--server", "nowhere"], {}, "client: --server: invalid address 'nowhere': expected ip:port"),
        (["--server", "127.0.0.1:0"], {}, "port out of range"),
        ([], {}, "client: no STUN server: pass --server IP:PORT, or set NATLAB_STUN (or NATLAB_TURN)"),
        ([], {"NATLAB_STUN": "turn"}, "NATLAB_STUN='turn': expected ip:port"),
        (["--server", "127.0.0.1:3478", "--lifetime-max", "-1"], {}, "--lifetime-max -1: expected 0-3600 seconds"),
        (["--server", "127.0.0.1:3478", "--lifetime-max", "nan"], {}, "--lifetime-max nan"),
    ],
)
def test_cli_usage_errors_are_exit_2(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["nat-type", *argv], env) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_a_non_number_lifetime(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["nat-type", "--lifetime-max", "soon"], {})
    assert exited.value.code == 2
    assert "invalid float value: 'soon'" in capsys.readouterr().err
