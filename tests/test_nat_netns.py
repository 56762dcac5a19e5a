"""The router on a real kernel: ``nat run`` in a network namespace, real UDP through it, every profile's
RFC 4787 behaviour measured from the outside (mapping, filtering, hairpinning, UDP blocking, timeout).

Topology (throwaway namespaces, addresses only in 198.19.200.0/24 and 198.19.201.0/24; no traffic leaves
them):

    wan ns  198.19.200.2, .3  ──  198.19.200.1 eth0  router ns  eth1 198.19.201.1  ──  switch ns (bridge)
                                                                            ├── 198.19.201.2  host ns
                                                                            └── 198.19.201.3  host2 ns

Needs root, ``ip netns``, nft and conntrack on the host; skipped otherwise (the pure tests cover the rest),
except under CI, where a missing one fails the tests (``tests/support/host.py``).
"""

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from nat.behaviours import SEQUENTIAL_FIRST_PORT, SEQUENTIAL_PORT_COUNT
from nat.conntrack import parse_xml
from nat.profiles import PROFILES
from tests.support.nat_router import running_nat

pytestmark = pytest.mark.needs("ip", "nft", "conntrack", root=True)

ROUTER_WAN, ROUTER_LAN, HOST, HOST2 = "198.19.200.1", "198.19.201.1", "198.19.201.2", "198.19.201.3"
PEER, OTHER_PEER = "198.19.200.2", "198.19.200.3"
LAN_SUBNET = "198.19.201.0/24"
NAT_ENV = {"NAT_WAN_SUBNET": "198.19.200.0/24", "NAT_LAN_SUBNET": LAN_SUBNET}

NO_ANSWER = 0.5
"""Seconds a probe that should get nothing waits (veths deliver in microseconds)."""

# Echo every datagram with the address it came from. On "probe-back", also send what remote peers might
# send unsolicited to the address the probe came from: from another port of this address, from another
# address (argv[1], never contacted by the tests that use this), and to the next port on the router.
RESPONDER = """
import selectors, socket, sys
def bound(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((host, port)); return s
sel = selectors.DefaultSelector()
for hp in sys.argv[2:]:
    host, port = hp.rsplit(":", 1)
    sel.register(bound(host, int(port)), selectors.EVENT_READ)
other, stranger = bound(sys.argv[2].rsplit(":", 1)[0], 6000), bound(sys.argv[1], 6000)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        data, (ip, port) = key.fileobj.recvfrom(2048)
        key.fileobj.sendto(f"seen {ip}:{port}".encode(), (ip, port))
        if data == b"probe-back":
            other.sendto(b"unsolicited other port", (ip, port))
            stranger.sendto(b"unsolicited other host", (ip, port))
            key.fileobj.sendto(b"unsolicited next port", (ip, port + 1))
"""

# Send from one local port to each target and wait for each echo ("seen" holds null where none came, e.g.
# UDP dropped, or a port unreachable), then collect anything else for a while.
CLIENT = """
import json, socket, sys, time
bind, message, wait, linger, targets = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); host, port = bind.rsplit(":", 1); s.bind((host, int(port)))
seen, sources, extra = [], [], []
for target in targets:
    host, port = target.rsplit(":", 1)
    s.settimeout(wait)
    s.sendto(message.encode(), (host, int(port)))
    try:
        data, source = s.recvfrom(2048)
    except (TimeoutError, ConnectionRefusedError):
        data, source = None, None
    seen.append(data and data.decode().removeprefix("seen "))
    sources.append(source and "%s:%d" % source)
end = time.monotonic() + linger
while (left := end - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, source = s.recvfrom(2048)
    except TimeoutError:
        break
    extra.append([data.decode(), "%s:%d" % source])
print(json.dumps({"seen": seen, "sources": sources, "extra": extra}))
"""

# A LAN endpoint that talks to a WAN peer first, prints its external address, then answers ("seen ip:port")
# whatever reaches it, every ``interval`` seconds also sending to the peer again (0: never), until stdin closes;
# then prints what it answered.
LAN_PEER = """
import json, selectors, socket, sys, time
bind, target, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); host, port = bind.rsplit(":", 1); s.bind((host, int(port)))
host, port = target.rsplit(":", 1); peer = (host, int(port))
s.sendto(b"hello", peer)
print(s.recvfrom(2048)[0].decode().removeprefix("seen "), flush=True)
sel = selectors.DefaultSelector(); sel.register(s, selectors.EVENT_READ); sel.register(sys.stdin, selectors.EVENT_READ)
answered, next_send = [], time.monotonic() + interval
while True:
    events = sel.select(timeout=max(0.0, next_send - time.monotonic()) if interval else None)
    if any(key.fileobj is sys.stdin for key, _ in events):
        break
    for key, _ in events:
        data, (ip, port) = s.recvfrom(2048)
        if (ip, port) != peer:
            s.sendto(f"seen {ip}:{port}".encode(), (ip, port)); answered.append(f"{ip}:{port}")
    if interval and time.monotonic() >= next_send:
        s.sendto(b"keepalive", peer); next_send += interval
print(json.dumps(answered))
"""

# From a WAN address: send to argv[2] every 0.2 s for argv[3] seconds; print how many answers came back.
PINGER = """
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((host, int(port)))
host, port = sys.argv[2].rsplit(":", 1); end = time.monotonic() + float(sys.argv[3]); answers = 0
while time.monotonic() < end:
    s.sendto(b"ping", (host, int(port))); s.settimeout(0.2)
    try:
        s.recvfrom(2048); answers += 1; time.sleep(max(0.0, 0.2 - 0.001))
    except TimeoutError:
        pass
print(answers)
"""

ONE_SHOT = """
import socket, sys
host, port = sys.argv[1].rsplit(":", 1); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, int(port)))
dest, dport = sys.argv[2].rsplit(":", 1)
for _ in range(3):
    s.sendto(b"early probe", (dest, int(dport)))
"""


@dataclass(frozen=True)
class Expected:
    """What a profile does, as the tests measure it."""

    mapping: str
    """``same`` (one port, the source port), ``random``, ``preserve-first`` or ``sequential``."""
    admitted: frozenset[str] = frozenset()
    """Which of the responder's unsolicited datagrams reach the host (beyond the echo)."""
    learns: frozenset[str] = frozenset()
    """The dynamic sets and maps the router fills for the profile."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment the profile needs for those measurements."""


OTHER_PORT, OTHER_HOST = "unsolicited other port", "unsolicited other host"
EXPECTED = {
    "cone": Expected("same"),
    "full-cone": Expected("same", frozenset({OTHER_PORT, OTHER_HOST}), frozenset({"mappings"})),
    "restricted-cone": Expected("same", frozenset({OTHER_PORT}), frozenset({"mappings", "contacted"})),
    "symmetric": Expected("random"),
    "symmetric-pp": Expected("preserve-first", learns=frozenset({"mapped_endpoints"})),
    "symmetric-seq": Expected("sequential"),
    "udp-blocked": Expected("same", env=(("NAT_UDP_ALLOW", f"{PEER},{OTHER_PEER}"),)),
}
ALL_PROFILES = sorted(EXPECTED)


class Netns:
    """Five namespaces: WAN, router, a LAN switch (bridge) and two LAN hosts; ``exec`` runs a command in one."""

    def __init__(self, tag):
        self.router, self.wan, self.switch = f"{tag}-r", f"{tag}-w", f"{tag}-s"
        self.host, self.host2 = f"{tag}-h", f"{tag}-h2"
        self.tag = tag

    @property
    def namespaces(self):
        return (self.router, self.wan, self.switch, self.host, self.host2)

    def exec(self, ns, *command, check=True, timeout=15):
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *command], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} in {ns} failed ({done.returncode}): {done.stderr}")
        return done

    def python(self, ns, script, *args, timeout=15):
        return self.exec(ns, sys.executable, "-c", script, *args, timeout=timeout).stdout

    def _veth(self, suffix, ns_a, name_a, ns_b, name_b):
        a, b = f"{self.tag}{suffix}a", f"{self.tag}{suffix}b"
        subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
        subprocess.run(["ip", "link", "set", a, "netns", ns_a, "name", name_a], check=True)
        subprocess.run(["ip", "link", "set", b, "netns", ns_b, "name", name_b], check=True)

    def build(self):
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        self._veth("w", self.router, "eth0", self.wan, "eth0")
        self._veth("l", self.router, "eth1", self.switch, "p0")
        self._veth("h", self.host, "eth0", self.switch, "p1")
        self._veth("i", self.host2, "eth0", self.switch, "p2")
        self.exec(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        for port in ("p0", "p1", "p2"):
            self.exec(self.switch, "ip", "link", "set", port, "master", "br0", "up")
        self.exec(self.switch, "ip", "link", "set", "br0", "up")
        for ns, address in (
            (self.router, f"{ROUTER_WAN}/24"),
            (self.wan, f"{PEER}/24"),
            (self.wan, f"{OTHER_PEER}/24"),
            (self.host, f"{HOST}/24"),
            (self.host2, f"{HOST2}/24"),
        ):
            self.exec(ns, "ip", "addr", "add", address, "dev", "eth0")
        self.exec(self.router, "ip", "addr", "add", f"{ROUTER_LAN}/24", "dev", "eth1")
        for ns in self.namespaces:
            self.exec(ns, "ip", "link", "set", "lo", "up")
        for ns, device in ((self.router, "eth0"), (self.router, "eth1"), (self.wan, "eth0")):
            self.exec(ns, "ip", "link", "set", device, "up")
        for ns in (self.host, self.host2):
            self.exec(ns, "ip", "link", "set", "eth0", "up")
            self.exec(ns, "ip", "route", "add", "default", "via", ROUTER_LAN)
        self.exec(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def destroy(self):
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def nat(self, *args, check=True):
        """``nat ARGS`` in the router namespace."""
        return self.exec(self.router, sys.executable, "-m", "nat", *args, check=check)

    def conntrack(self):
        """The router's UDP conntrack entries (through the parser ``nat conntrack`` uses, without its startup)."""
        return [
            entry.as_dict()
            for entry in parse_xml(self.exec(self.router, "conntrack", "-L", "-p", "udp", "-o", "xml").stdout)
        ]

    def learned(self):
        """Every element of natlab's dynamic sets and maps, by set name, each flattened to its numbers and
        addresses (``nft -j``), so a test can ask which endpoints and ports the router still remembers."""
        table = json.loads(self.exec(self.router, "nft", "-j", "list", "table", "inet", "natlab").stdout)
        learned = {}
        for item in table["nftables"]:
            declared = item.get("set") or item.get("map")
            if declared and "timeout" in declared.get("flags", []):  # nft -j 1.0.6 lists no "dynamic" flag
                learned[declared["name"]] = [_flatten(element) for element in declared.get("elem", [])]
        return learned


def _flatten(value):
    """The scalars inside an nft JSON element (``{"elem": {"val": ...}}``, ``{"concat": [...]}``, lists)."""
    if isinstance(value, dict):
        return {x for key, inner in value.items() if key not in ("timeout", "expires") for x in _flatten(inner)}
    if isinstance(value, list):
        return {x for inner in value for x in _flatten(inner)}
    return {value}


@pytest.fixture(scope="module")
def netns():
    """The namespaces, named after this process so parallel runs do not collide; deleted after."""
    topology = Netns(f"nlt{os.getpid() % 100000}")
    try:
        topology.build()
        yield topology
    finally:
        topology.destroy()


def running_router(netns, state_dir, **env):
    """``nat run`` in the router namespace, waited on until ready; stopped with SIGTERM afterwards."""
    return running_nat(netns.router, state_dir, "198.19.200.254", **NAT_ENV, **env)


def profile_router(netns, state_dir, name, **env):
    """The router running profile ``name`` with the extra environment its measurements need."""
    return running_router(netns, state_dir, NAT_PROFILE=name, **dict(EXPECTED[name].env), **env)


@contextlib.contextmanager
def responder(netns, *endpoints, stranger=OTHER_PEER):
    """The WAN peer's echo service on ``endpoints``, up before the block runs."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns.wan, sys.executable, "-c", RESPONDER, stranger, *endpoints],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", process.stderr.read() if process.stderr else ""
        yield process
    finally:
        process.kill()
        process.communicate()


@contextlib.contextmanager
def lan_peer(netns, ns, bind, target, keepalive=0.0):
    """``LAN_PEER`` in ``ns``: yields (its external ip:port, a list filled with what it answered on exit)."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", LAN_PEER, bind, target, str(keepalive)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    answered: list[str] = []
    try:
        assert process.stdout is not None
        external = process.stdout.readline().strip()
        assert external, process.stderr.read() if process.stderr else ""
        yield external, answered
    finally:
        out, err = process.communicate(timeout=5)
        assert process.returncode == 0, err
        answered += json.loads(out)


def client(netns, port, *targets, message="hello", linger=0.0, wait=3.0, ns=None, bind_host=HOST):
    args = [f"{bind_host}:{port}", message, str(wait), str(linger), *targets]
    return json.loads(netns.python(ns or netns.host, CLIENT, *args))


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def flows_from(flows, port, host=HOST):
    return [f for f in flows if f["orig"]["src"] == host and f["orig"]["sport"] == port]


def test_every_profile_is_measured():
    assert set(EXPECTED) == set(PROFILES)


def test_run_deletes_default_route_applies_ruleset_and_stops_on_sigterm(netns, tmp_path):
    with running_router(netns, tmp_path, NAT_PROFILE="symmetric") as process:
        routes = netns.exec(netns.router, "ip", "route", "show", "default").stdout
        assert routes == ""
        assert netns.nat("--state-dir", str(tmp_path), "health", check=False).returncode == 0
        applied = (tmp_path / "ruleset.nft").read_text()
        assert "masquerade fully-random" in applied
        profile = json.loads((tmp_path / "profile.json").read_text())
        assert profile["name"] == "symmetric"
        assert (profile["wan"]["ifname"], profile["lan"]["address"]) == ("eth0", ROUTER_LAN)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0, stderr
    assert time.monotonic() - started < 2
    assert f"router ready: profile=symmetric wan=eth0 {ROUTER_WAN} lan=eth1 {ROUTER_LAN}" in stderr
    assert not (tmp_path / "ready").exists()


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_mapping(netns, tmp_path, name):
    """One socket to two destinations, then a second socket: which external ports the WAN sees."""
    with profile_router(netns, tmp_path, name), responder(netns, f"{PEER}:5000", f"{OTHER_PEER}:5001"):
        first = client(netns, 40000, f"{PEER}:5000", f"{OTHER_PEER}:5001")
        second = client(netns, 40001, f"{PEER}:5000")
        flows = netns.conntrack()
    assert {seen.rsplit(":", 1)[0] for seen in first["seen"] + second["seen"]} == {ROUTER_WAN}
    (a, b), (c,) = [port_of(s) for s in first["seen"]], [port_of(s) for s in second["seen"]]
    match EXPECTED[name].mapping:
        case "same":  # endpoint-independent, source port kept
            assert (a, b, c) == (40000, 40000, 40001)
        case "random":  # a port per destination (the kernel cannot give PEER:5000 one port for two sockets)
            assert a != b
            assert c != a
        case "preserve-first":  # each endpoint's first mapping keeps its port, the next one does not
            assert (a, c) == (40000, 40001)
            assert b != 40000
        case "sequential":  # every new mapping, whoever makes it, takes the next port
            assert (b, c) == (a + 1, a + 2)
            assert SEQUENTIAL_FIRST_PORT <= a < SEQUENTIAL_FIRST_PORT + SEQUENTIAL_PORT_COUNT - 2
    # What the WAN saw is what conntrack holds, one entry per destination.
    assert sorted(f["reply"]["dport"] for f in flows_from(flows, 40000)) == sorted([a, b])


def test_symmetric_ports_are_random_not_a_sequence(netns, tmp_path):
    """Six destinations from one socket: six external ports that are neither a sequence (the sequential
    profile's counter, whatever its step) nor packed into a counter's block. A random pick from the
    ~64,000 ports fails either check with a probability below one in a billion."""
    targets = [f"{peer}:{port}" for peer in (PEER, OTHER_PEER) for port in (5010, 5011, 5012)]
    with profile_router(netns, tmp_path, "symmetric"), responder(netns, *targets):
        result = client(netns, 40060, *targets)
    ports = [port_of(seen) for seen in result["seen"]]
    assert len(set(ports)) == len(targets), f"one port per destination: {ports}"
    assert len({b - a for a, b in itertools.pairwise(ports)}) > 1, f"ports {ports} are a sequence"
    assert max(ports) - min(ports) > SEQUENTIAL_PORT_COUNT, f"ports {ports} sit in one block"


@contextlib.contextmanager
def wan_route_to_lan(netns):
    """A route on the WAN side to the LAN subnet via the router, as a neighbour on the router's WAN link
    could add: then only the router's forward policy stands between WAN hosts and LAN addresses."""
    netns.exec(netns.wan, "ip", "route", "add", LAN_SUBNET, "via", ROUTER_WAN)
    try:
        yield
    finally:
        netns.exec(netns.wan, "ip", "route", "del", LAN_SUBNET, "via", ROUTER_WAN, check=False)


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_wan_traffic_straight_to_a_lan_address_is_dropped(netns, tmp_path, name):
    """host2 has talked to PEER (so it is mapped, and listening); datagrams from the WAN addressed to host2's
    own LAN address, from a stranger and from PEER itself, are dropped by the router: a NAT is no router."""
    with (
        profile_router(netns, tmp_path, name),
        responder(netns, f"{PEER}:5000"),
        lan_peer(netns, netns.host2, f"{HOST2}:41010", f"{PEER}:5000") as (_, answered),
        wan_route_to_lan(netns),
    ):
        stranger = client(netns, 6100, f"{HOST2}:41010", ns=netns.wan, bind_host=OTHER_PEER, wait=NO_ANSWER)
        peer = client(netns, 5001, f"{HOST2}:41010", ns=netns.wan, bind_host=PEER, wait=NO_ANSWER)
        flows = netns.conntrack()
    assert (stranger["seen"], peer["seen"]) == ([None], [None])
    assert answered == [], "host2 received WAN datagrams sent to its LAN address"
    assert [f for f in flows if f["orig"]["dst"] == HOST2] == [], "dropped before conntrack confirmed them"


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_filtering(netns, tmp_path, name):
    """After the host has sent to PEER:5000 only: what reaches it from PEER's other port, from an address it
    never contacted, and aimed at the next external port."""
    with profile_router(netns, tmp_path, name), responder(netns, f"{PEER}:5000"):
        result = client(netns, 40010, f"{PEER}:5000", message="probe-back", linger=NO_ANSWER)
        flows = netns.conntrack()
    assert result["sources"] == [f"{PEER}:5000"]
    expected_sources = {OTHER_PORT: f"{PEER}:6000", OTHER_HOST: f"{OTHER_PEER}:6000"}
    assert sorted(map(tuple, result["extra"])) == sorted((m, expected_sources[m]) for m in EXPECTED[name].admitted)
    # Dropped probes die before conntrack confirms them; admitted ones are flows to the host.
    inbound = sorted((f["orig"]["src"], f["reply"]["src"]) for f in flows if f["orig"]["src"] != HOST)
    assert inbound == sorted((expected_sources[m].split(":")[0], HOST) for m in EXPECTED[name].admitted)


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_early_inbound_probe_is_dropped_before_conntrack_and_does_not_remap_the_port(netns, tmp_path, name):
    """The punching race: the peer's probe reaches the router before the host's first packet goes out.
    Were it admitted to conntrack (UNREPLIED), masquerade would give the host's flow another port."""
    with profile_router(netns, tmp_path, name):
        netns.python(netns.wan, ONE_SHOT, f"{PEER}:5003", f"{ROUTER_WAN}:40020")
        assert [f for f in netns.conntrack() if f["orig"]["src"] == PEER] == []
        with responder(netns, f"{PEER}:5003"):
            result = client(netns, 40020, f"{PEER}:5003")
    if EXPECTED[name].mapping in ("same", "preserve-first"):
        assert result["seen"] == [f"{ROUTER_WAN}:40020"]
    else:
        assert result["seen"][0].startswith(f"{ROUTER_WAN}:")


@pytest.mark.parametrize(
    ("name", "hairpin"), [(name, "on") for name in ALL_PROFILES] + [("cone", "off"), ("full-cone", "off")]
)
def test_hairpinning(netns, tmp_path, name, hairpin):
    """host2 has a mapping (through talking to PEER); host sends to the router's WAN address and that
    external port. On: it reaches host2, from host's external address, and host2's answer comes back."""
    with (
        profile_router(netns, tmp_path, name, NAT_HAIRPIN=hairpin),
        responder(netns, f"{PEER}:5000"),
        lan_peer(netns, netns.host2, f"{HOST2}:41000", f"{PEER}:5000") as (external, answered),
    ):
        result = client(netns, 40030, external, wait=NO_ANSWER)
    if hairpin == "off":
        assert result["seen"] == [None]
        assert answered == []
        return
    [seen_by_host2] = answered
    assert seen_by_host2.startswith(f"{ROUTER_WAN}:"), "hairpinned traffic comes from the external address"
    assert result["seen"] == [seen_by_host2]
    assert result["sources"] == [external], "the answer comes back from host2's external address"
    if EXPECTED[name].mapping == "same":
        assert (external, seen_by_host2) == (f"{ROUTER_WAN}:41000", f"{ROUTER_WAN}:40030")


def test_udp_blocked_drops_udp_to_and_from_the_wan_except_the_allowed_addresses(netns, tmp_path):
    with (
        running_router(netns, tmp_path, NAT_PROFILE="udp-blocked", NAT_UDP_ALLOW=PEER),
        responder(netns, f"{PEER}:5000", f"{OTHER_PEER}:5001"),
    ):
        allowed = client(netns, 40040, f"{PEER}:5000")
        blocked = client(netns, 40041, f"{OTHER_PEER}:5001", wait=NO_ANSWER)
        flows = netns.conntrack()
    assert allowed["seen"] == [f"{ROUTER_WAN}:40040"]
    assert blocked["seen"] == [None]
    assert flows_from(flows, 40041) == [], "dropped before conntrack confirmed it"


def test_udp_blocked_option_on_a_full_cone_keeps_out_addresses_not_allowed(netns, tmp_path):
    with (
        running_router(netns, tmp_path, NAT_PROFILE="full-cone", NAT_UDP_BLOCKED="on", NAT_UDP_ALLOW=PEER),
        responder(netns, f"{PEER}:5000"),
    ):
        result = client(netns, 40042, f"{PEER}:5000", message="probe-back", linger=NO_ANSWER)
    assert result["seen"] == [f"{ROUTER_WAN}:40042"]
    assert result["extra"] == [[OTHER_PORT, f"{PEER}:6000"]], "the stranger is not on the allow-list"


@pytest.mark.parametrize("name", ALL_PROFILES)
def test_idle_mapping_expires_after_the_udp_timeout_and_a_used_one_survives(netns, tmp_path, name):
    """NAT_UDP_TIMEOUT=1: an idle mapping (host:40050) leaves conntrack and every learned set about a second
    after its last packet; one kept alive every 0.2 s (host2:40051) stays in both."""
    with (
        profile_router(netns, tmp_path, name, NAT_UDP_TIMEOUT="1"),
        responder(netns, f"{PEER}:5000"),
        lan_peer(netns, netns.host2, f"{HOST2}:40051", f"{PEER}:5000", keepalive=0.2),
    ):
        client(netns, 40050, f"{PEER}:5000")
        idle_since = time.monotonic()
        deadline = idle_since + 5
        while flows_from(netns.conntrack(), 40050) or any(40050 in e for es in netns.learned().values() for e in es):
            assert time.monotonic() < deadline, f"idle mapping still there: {netns.conntrack()} {netns.learned()}"
            time.sleep(0.1)
        gone_after = time.monotonic() - idle_since
        flows, learned = netns.conntrack(), netns.learned()
    assert gone_after > 0.8, "gone before the timeout"
    assert set(learned) == EXPECTED[name].learns
    [alive] = flows_from(flows, 40051, host=HOST2)
    assert 0 <= alive["timeout"] <= 1, "the profile's timeout, not the kernel's 30 s"
    for set_name, elements in learned.items():
        assert any(HOST2 in e or 40051 in e for e in elements), f"{set_name} forgot the live mapping: {learned}"


def test_answers_to_an_admitted_inbound_flow_keep_a_full_cone_mapping_alive(netns, tmp_path):
    """RFC 4787 REQ-6: outbound traffic refreshes a mapping, answers on a flow the mapping admitted included.
    host's own flow to PEER goes idle and expires; the mapping lives on while host keeps answering OTHER_PEER."""
    with (
        running_router(netns, tmp_path, NAT_PROFILE="full-cone", NAT_UDP_TIMEOUT="1"),
        responder(netns, f"{PEER}:5000"),
        lan_peer(netns, netns.host, f"{HOST}:41000", f"{PEER}:5000") as (external, _),
    ):
        answers = int(netns.python(netns.wan, PINGER, f"{OTHER_PEER}:6001", external, "1.6"))
        flows, learned = netns.conntrack(), netns.learned()
    assert answers >= 5
    assert [f["orig"]["dst"] for f in flows_from(flows, 41000)] == [], "the flow to PEER expired"
    assert [{41000, HOST}] == learned["mappings"]
