"""The tunnel's kernel path on a real kernel: the table :mod:`client.tunnel.steering` renders, in a host
namespace behind ``nat run`` (full-cone, so a stranger's datagram reaches the host too), with real UDP.

What it must do: WireGuard's datagram to a peer in the set leaves through the agent's NAT mapping (the peer
sees the same public address and port as the agent's own datagram); the peer's WireGuard datagrams come back
to WireGuard, its other datagrams to the agent; a stranger's WireGuard datagram, and everything once the
peer has left the set, reach the agent (which drops and counts them); WireGuard's datagrams to anyone not in
the set never leave the host; nobody reaches WireGuard's port directly.

Topology: tests/test_nat_netns.py's (host 198.19.201.2 -> router -> WAN 198.19.200.2 and .3).
"""

import json
import os
import subprocess
import sys

import pytest

from client.tunnel.steering import DROP, elements, table
from protocol import Endpoint
from tests.support.nat_router import running_nat
from tests.test_nat_netns import HOST, NAT_ENV, OTHER_PEER, PEER, Netns

pytestmark = pytest.mark.needs("ip", "nft", "conntrack", root=True)

WIREGUARD_PORT, AGENT_PORT, PEER_PORT = 51820, 40000, 7000
WG_DATA = b"\x04\x00\x00\x00"
WG_INIT = b"\x01\x00\x00\x00"

# The host: the agent's and WireGuard's sockets. argv: what to send, as "agent|wireguard:host:port:hex" items;
# then prints, as JSON, every datagram each socket got within the wait (``[socket, source, payload hex]``) and
# the items whose send the host's firewall refused (EPERM: an output rule dropped it).
HOST_SCRIPT = """
import json, selectors, socket, sys, time
socks = {}
for name, port in (("agent", int(sys.argv[1])), ("wireguard", int(sys.argv[2]))):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port)); s.setblocking(False)
    socks[name] = s
wait, refused = float(sys.argv[3]), []
for item in sys.argv[4:]:
    name, host, port, payload = item.split(":")
    try:
        socks[name].sendto(bytes.fromhex(payload), (host, int(port)))
    except PermissionError:
        refused.append(item)
    time.sleep(0.05)  # in order through the NAT: the agent's datagram opens the mapping first
print("sent", flush=True)
sel = selectors.DefaultSelector()
for name, s in socks.items():
    sel.register(s, selectors.EVENT_READ, name)
got, until = [], time.monotonic() + wait
while (left := until - time.monotonic()) > 0:
    for key, _ in sel.select(left):
        data, (ip, port) = key.fileobj.recvfrom(2048)
        got.append([key.data, f"{ip}:{port}", data.hex()])
print(json.dumps({"got": got, "refused": refused}), flush=True)
"""

# The WAN side: the peer (PEER:7000) and a stranger (OTHER_PEER:7000). It waits for ``count`` datagrams at the
# peer and prints their sources; then each of argv[5:] ("peer|stranger:hex") goes from the peer or the stranger
# to where the first came from.
WAN_SCRIPT = """
import json, socket, sys, time
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); peer.bind((sys.argv[1], 7000))
peer.settimeout(float(sys.argv[4]))
stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); stranger.bind((sys.argv[2], 7000))
print("ready", flush=True)
seen = []
try:
    for _ in range(int(sys.argv[3])):
        data, addr = peer.recvfrom(2048)
        seen.append([f"{addr[0]}:{addr[1]}", data.hex()])
except TimeoutError:
    pass
print(json.dumps(seen), flush=True)
if seen:
    ip, port = seen[0][0].split(":")
    for item in sys.argv[5:]:
        who, payload = item.split(":")
        (stranger if who == "stranger" else peer).sendto(bytes.fromhex(payload), (ip, int(port)))
        time.sleep(0.02)
"""


STRAIGHT = """
import socket, sys
straight = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
straight.sendto(b"\\x01\\x00\\x00\\x00straight", (sys.argv[1], int(sys.argv[2])))
"""


@pytest.fixture(scope="module")
def netns():
    topology = Netns(f"nls{os.getpid() % 100000}")
    try:
        topology.build()
        yield topology
    finally:
        topology.destroy()


def _nft(netns, script):
    done = subprocess.run(
        ["ip", "netns", "exec", netns.host, "nft", "-f", "-"],
        input=script,
        text=True,
        capture_output=True,
        timeout=15,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _exchange(netns, host_sends, wan_expects, wan_sends, wait=1.0):
    """Run the WAN side, then the host; (what the peer saw, what the host's sockets got, the sends refused)."""
    wan = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns.wan,
            sys.executable,
            "-c",
            WAN_SCRIPT,
            PEER,
            OTHER_PEER,
            str(wan_expects),
            str(wait),
            *wan_sends,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wan.stdout is not None
        assert wan.stdout.readline().strip() == "ready", wan.stderr.read() if wan.stderr else ""
        host = netns.exec(
            netns.host,
            sys.executable,
            "-c",
            HOST_SCRIPT,
            str(AGENT_PORT),
            str(WIREGUARD_PORT),
            str(wait + 1.0),
            *host_sends,
            timeout=30,
        )
        seen = json.loads(wan.communicate(timeout=30)[0].splitlines()[-1])
    finally:
        if wan.poll() is None:
            wan.kill()
    lines = host.stdout.splitlines()
    assert lines[0] == "sent", host.stderr
    host_side = json.loads(lines[-1])
    return seen, host_side["got"], host_side["refused"]


def _drops(netns):
    """The tunnel table's counters: (packets dropped leaving WireGuard's port, dropped arriving at it)."""
    ruleset = netns.exec(netns.host, "nft", "-j", "list", "table", "inet", "natlab_tunnel").stdout
    counts = []
    for item in json.loads(ruleset)["nftables"]:
        rule = item.get("rule")
        if rule and any("drop" in expr for expr in rule["expr"]):
            counts.append(next(expr["counter"]["packets"] for expr in rule["expr"] if "counter" in expr))
    return tuple(counts)


def test_wireguard_leaves_through_the_agents_mapping_and_only_its_peers_datagrams_reach_it(netns, tmp_path):
    peer = Endpoint(PEER, PEER_PORT)
    with running_nat(netns.router, tmp_path, "198.19.200.254", **NAT_ENV, NAT_PROFILE="full-cone"):
        _nft(netns, DROP + table(WIREGUARD_PORT, AGENT_PORT))
        _nft(netns, elements(add=[peer]))
        seen, got, refused = _exchange(
            netns,
            [f"agent:{PEER}:{PEER_PORT}:{b'hello'.hex()}", f"wireguard:{PEER}:{PEER_PORT}:{(WG_DATA + b'out').hex()}"],
            2,
            [
                f"peer:{(WG_DATA + b'in').hex()}",
                f"peer:{b'agent message'.hex()}",
                f"stranger:{(WG_INIT + b'forged').hex()}",
            ],
        )
        # One NAT mapping for both: WireGuard's datagram left from the agent's port.
        assert [payload for _, payload in seen] == [b"hello".hex(), (WG_DATA + b"out").hex()]
        assert seen[0][0] == seen[1][0]
        assert refused == []
        mapped = seen[0][0]
        assert mapped.startswith("198.19.200.1:")
        assert sorted(got) == sorted(
            [
                ["wireguard", f"{PEER}:{PEER_PORT}", (WG_DATA + b"in").hex()],
                ["agent", f"{PEER}:{PEER_PORT}", b"agent message".hex()],
                ["agent", f"{OTHER_PEER}:{PEER_PORT}", (WG_INIT + b"forged").hex()],
            ]
        ), got
        # A neighbour on the LAN cannot reach WireGuard's port itself.
        netns.python(netns.host2, STRAIGHT, HOST, str(WIREGUARD_PORT), timeout=15)
        assert _drops(netns)[1] == 1

        # The peer leaves the set: WireGuard's datagrams to it stay in the host, the peer's reach the agent.
        _nft(netns, elements(remove=[peer]))
        before = _drops(netns)[0]
        wireguard_send = f"wireguard:{PEER}:{PEER_PORT}:{(WG_DATA + b'out').hex()}"
        seen, got, refused = _exchange(
            netns,
            [f"agent:{PEER}:{PEER_PORT}:{b'hello'.hex()}", wireguard_send],
            2,
            [f"peer:{(WG_DATA + b'in').hex()}"],
            wait=0.5,
        )
        assert [payload for _, payload in seen] == [b"hello".hex()]
        assert refused == [wireguard_send]
        assert got == [["agent", f"{PEER}:{PEER_PORT}", (WG_DATA + b"in").hex()]]
        assert _drops(netns)[0] == before + 1
    _nft(netns, DROP)
