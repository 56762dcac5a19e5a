"""The WireGuard tunnel (issue 12): ping and a TCP transfer between alice and bob over ``natlab0``, and which
path carried them.

Each lab starts with the tunnel up at start (``NATLAB_TUNNEL=1``): every agent runs wireguard-go and asks
for a path to every host of the registry, so nobody types ``client connect`` first. In cone-cone the path is
direct, and router-a's conntrack must hold the flow between the two routers' WAN addresses (the tunnel's
datagrams share the agent's NAT mapping); the kernel carries WireGuard's datagrams
(client/tunnel/steering.py), the agent none of them. In cone-symmetric punching cannot work, the tunnel is
relayed by coturn (the agent carries every datagram as ChannelData), and neither router holds a flow towards
the other; coturn's own usage counters say the relay carried the transfer (and, for the direct pair, far less
than it).
A host that is not a peer, from the WAN: scenarios/test_tunnel_stranger.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from scenarios.harness import Lab, start_lab
from scenarios.steps import PEER_OF
from scenarios.tunnel_steps import handshaken, tunnel_peer
from scenarios.turn_usage import restart_hosts, stop_hosts

PAYLOAD_BYTES = 4 << 20
"""The TCP transfer: 4 MiB of random bytes, checked by SHA-256 on both ends."""
PORT = 5003


@pytest.fixture(scope="module", params=[("cone", "cone"), ("cone", "symmetric")], ids=["cone-cone", "cone-symmetric"])
def tunnel_lab(request: pytest.FixtureRequest, docker_ready: None) -> Iterator[Lab]:
    """A two-site lab whose hosts bring the tunnel up at start, removed afterwards."""
    a, b = request.param
    env = {"NAT_A": a, "NAT_B": b, "NATLAB_TUNNEL": "1", "NATLAB_KEEPALIVE": "2"}
    with start_lab(name=f"tunnel-{a}-{b}", env=env) as lab:
        yield lab


def expected_path(lab: Lab) -> str:
    return "relay" if lab.env["NAT_B"] == "symmetric" else "direct"


def test_the_tunnel_comes_up_with_overlay_names_and_the_path_found(tunnel_lab: Lab) -> None:
    for host, peer in (("alice", "bob"), ("bob", "alice")):
        status = handshaken(tunnel_lab, host, peer)
        assert status["path"] == expected_path(tunnel_lab), status
        assert status["overlay"].startswith("198.19.255."), status
    hosts = tunnel_lab.exec_ok("alice", "getent", "hosts", "bob.natlab")
    assert hosts.split()[0] == tunnel_peer(tunnel_lab, "alice", "bob")["overlay"]  # type: ignore[index]
    full = tunnel_lab.json("alice", "client", "status", "--json")
    assert full["tunnel"]["up"] is True
    assert full["tunnel"]["peers"][0]["id"] == "bob"


def test_ping_over_the_tunnel(tunnel_lab: Lab) -> None:
    handshaken(tunnel_lab, "alice", "bob")
    # -w: wait for all five replies (up to 15 s), not the two round trips ping gives the last one by default:
    # on a loaded machine a relayed round trip varies from milliseconds to a hundred.
    code, output = tunnel_lab.exec("alice", "ping", "-c", "5", "-i", "0.2", "-w", "15", "bob.natlab")
    assert code == 0, output
    assert " 5 received" in output, output


def transfer(lab: Lab) -> None:
    """:data:`PAYLOAD_BYTES` from alice to bob over the tunnel (nc, TCP), checked by SHA-256 at bob's end."""
    lab.exec_ok("alice", "sh", "-c", f"head -c {PAYLOAD_BYTES} /dev/urandom > /tmp/tunnel-tx")
    sent_hash = lab.exec_ok("alice", "sha256sum", "/tmp/tunnel-tx").split()[0]
    lab.exec("bob", "rm", "-f", "/tmp/tunnel-rx")
    # bob listens (one connection, then exits), detached; alice sends once bob's port is open.
    lab.container("bob").exec_run(["sh", "-c", f"nc -l -p {PORT} > /tmp/tunnel-rx"], detach=True)
    lab.wait_for(
        lambda: lab.exec("bob", "sh", "-c", f"ss -ltn | grep -q ':{PORT} '")[0] == 0 or None,
        timeout=10,
        what="bob's nc to listen",
    )
    lab.exec_ok("alice", "timeout", "60", "sh", "-c", f"nc -N bob.natlab {PORT} < /tmp/tunnel-tx")
    received = lab.wait_for(
        lambda: h if (h := _size_and_hash(lab))[0] == PAYLOAD_BYTES else None,
        timeout=30,
        what="bob to have the whole transfer",
    )
    assert received == (PAYLOAD_BYTES, sent_hash)


def test_a_tcp_transfer_arrives_intact_on_the_path_found(tunnel_lab: Lab) -> None:
    handshaken(tunnel_lab, "alice", "bob")
    before = tunnel_peer(tunnel_lab, "alice", "bob")
    assert before is not None
    transfer(tunnel_lab)
    after = tunnel_peer(tunnel_lab, "alice", "bob")
    assert after is not None
    assert after["path"] == expected_path(tunnel_lab), after
    assert after["tx_bytes"] - before["tx_bytes"] > PAYLOAD_BYTES  # WireGuard carried it, with its overhead
    # Who carried WireGuard's datagrams: on the direct path the kernel (client/tunnel/steering.py), not one
    # datagram through the agent; relayed, the agent (as TURN ChannelData), every one of them.
    carried = after["carried_out"] - before["carried_out"]
    if expected_path(tunnel_lab) == "direct":
        assert after["carrier"] == "kernel", after
        assert carried < 50, after  # a few at most: WireGuard roaming to the agent's socket for a moment
    else:
        assert after["carrier"] == "agent", after
        assert carried > PAYLOAD_BYTES // 1500, after

    # Which path carried it: the routers' conntrack. Direct: router-a maps alice's agent socket straight to
    # router-b's WAN address (the tunnel shares the agent's mapping), answered. Relayed: no answered flow
    # between the routers, one to the TURN server.
    flows = json.loads(tunnel_lab.exec_ok("router-a", "nat", "conntrack", "--json"))
    wan_a, wan_b = tunnel_lab.address("router-a", "wan"), tunnel_lab.address("router-b", "wan")
    between = [f for f in flows if f["orig"]["dst"] == wan_b and f["reply"]["dst"] == wan_a]
    answered = [f for f in between if "UNREPLIED" not in f["flags"]]
    if expected_path(tunnel_lab) == "direct":
        assert answered, flows
    else:
        assert not answered, answered  # only the direct probes' unanswered flows (bob's NAT is symmetric)
        turn = tunnel_lab.address("turn")
        assert any(f["orig"]["dst"] == turn and "UNREPLIED" not in f["flags"] for f in flows), flows


def _size_and_hash(lab: Lab) -> tuple[int, str]:
    code, output = lab.exec("bob", "sh", "-c", "stat -c %s /tmp/tunnel-rx && sha256sum /tmp/tunnel-rx")
    if code != 0:
        return 0, ""
    size, digest = output.split()[:2]
    return int(size), digest


def test_coturns_counters_show_the_relay_carried_the_tunnel_only_when_relayed(tunnel_lab: Lab) -> None:
    """coturn's per-session peer usage (scenarios/turn_usage.py), for fresh allocations (both hosts restarted,
    the tunnel up again at start): relayed, both sessions together count the transfer twice (alice's
    allocation sent it to a peer, bob's received it from one) plus WireGuard's overhead; direct, the relay saw
    its keepalives and probes only, a small part of the transfer."""
    closed_before = restart_hosts(tunnel_lab)
    for host, peer in (("alice", "bob"), ("bob", "alice")):
        handshaken(tunnel_lab, host, peer, expected_path(tunnel_lab))
    try:
        transfer(tunnel_lab)
    finally:
        usage = stop_hosts(tunnel_lab, closed_before)
        for host in PEER_OF:
            tunnel_lab.start(host)
    relayed = sum(usage.values())
    if expected_path(tunnel_lab) == "relay":
        assert relayed >= 2 * PAYLOAD_BYTES, f"coturn relayed only {relayed} bytes of a {PAYLOAD_BYTES}-byte transfer"
    else:
        assert relayed < PAYLOAD_BYTES // 20, f"a direct pair's tunnel: coturn relayed {relayed} bytes: {usage}"


def test_a_local_stranger_cannot_send_into_the_tunnel(tunnel_lab: Lab) -> None:
    """WireGuard's port takes only loopback and the kernel path's datagrams (nftables), and a WireGuard-shaped
    datagram on the agent's socket from an address that is no peer's path is dropped and counted, never
    handed to WireGuard."""
    ruleset = tunnel_lab.exec_ok("alice", "nft", "list", "table", "inet", "natlab_tunnel")
    assert 'iifname != "lo" udp dport 51820 meta mark != 0x4e4c0000 counter' in ruleset, ruleset
    status = tunnel_lab.json("alice", "client", "status", "--json")
    port = status["local"].rsplit(":", 1)[1]
    before = status["tunnel"]["dropped"]["not_peer"]
    # A transport-data header and 28 bytes: shaped as WireGuard, from a local socket that is no peer's path.
    forged = "printf '\\004\\000\\000\\000%028d' 0 | nc -u -w1 -q1 127.0.0.1 " + port
    tunnel_lab.exec("alice", "sh", "-c", forged)
    tunnel_lab.wait_for(
        lambda: (
            tunnel_lab.json("alice", "client", "tunnel", "status", "--json")["dropped"]["not_peer"] > before or None
        ),
        timeout=10,
        what="the forged tunnel datagram to be counted as not from a peer",
    )


def test_down_removes_the_interface_names_and_filter_and_up_brings_them_back(tunnel_lab: Lab) -> None:
    down = tunnel_lab.json("alice", "client", "tunnel", "down", "--json")
    assert down["up"] is False
    code, output = tunnel_lab.exec("alice", "ip", "link", "show", "natlab0")
    assert code != 0, output  # wireguard-go stopped: its interface went with it
    assert "bob.natlab" not in tunnel_lab.exec_ok("alice", "cat", "/etc/hosts")
    assert tunnel_lab.exec("alice", "nft", "list", "table", "inet", "natlab_tunnel")[0] != 0
    assert tunnel_lab.exec("alice", "pgrep", "-x", "wireguard-go")[0] != 0

    up = tunnel_lab.json("alice", "client", "tunnel", "up", "--json")
    assert up["up"] is True
    handshaken(tunnel_lab, "alice", "bob")
    code, output = tunnel_lab.exec("alice", "ping", "-c", "3", "-i", "0.2", "-w", "15", "bob.natlab")
    assert code == 0, output
