"""The WireGuard tunnel (issue 12): a host that is not a peer cannot send into it, from a real host on the WAN.

A lab of its own: alice's router is full-cone (it forwards anyone's datagram to a mapped port, so nothing but
natlab's own check stands in the way), bob is direct, the tunnel is up at start, and mallory sits on the WAN
(compose profile ``attack``, as in scenarios/test_attacks.py). mallory sends real WireGuard handshake
initiations (scenarios/wireguard_forge.py) to alice's mapped port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scenarios.attacker import ATTACK_ENV, attack, public_address
from scenarios.harness import Lab, start_lab
from scenarios.tunnel_steps import handshaken
from scenarios.wireguard_forge import initiation
from trust.keys import Identity, Registry

FORGED = 10
"""Handshake initiations mallory sends."""
INITIATION_BYTES, RESPONSE_BYTES = 148, 92


@pytest.fixture(scope="module")
def stranger_lab(docker_ready: None) -> Iterator[Lab]:
    """alice behind a full-cone NAT (anyone on the WAN reaches her agent's mapped port), bob direct, the
    tunnel up at start, and mallory on the WAN; removed afterwards."""
    env = {"NAT_A": "full-cone", "NAT_B": "full-cone", "NATLAB_TUNNEL": "1", "NATLAB_KEEPALIVE": "2", **ATTACK_ENV}
    with start_lab(name="tunnel-stranger", env=env) as lab:
        yield lab


def test_a_host_that_is_not_a_peer_cannot_send_into_the_tunnel(stranger_lab: Lab, tmp_path: Path) -> None:
    """mallory sends alice's mapped port real WireGuard handshake initiations, sealed with bob's own key (as
    if stolen: the worst case, which alice's WireGuard would accept and answer). The agent drops every one
    as not from a peer's path (``dropped.not_peer``), mallory hears nothing, and WireGuard's own counters for
    bob do not move by an initiation's size (its handshake neither). Then the control: the same kind of
    datagram handed to WireGuard's port from inside alice is answered with a handshake response, so what
    mallory sent was real WireGuard, stopped by the agent alone."""
    lab = stranger_lab
    handshaken(lab, "alice", "bob")
    handshaken(lab, "bob", "alice")
    (tmp_path / "bob.json").write_text(lab.exec_ok("bob", "cat", "/run/natlab-secrets/keys/bob.json"))
    (tmp_path / "registry.json").write_text(lab.exec_ok("alice", "cat", "/run/natlab-secrets/registry.json"))
    bob_secret = Identity.load(tmp_path / "bob.json").tunnel_secret()
    alice_key = Registry.load(tmp_path / "registry.json")["alice"].box
    forged = [initiation(bob_secret, alice_key).hex() for _ in range(FORGED)]
    target = public_address(lab, "alice")  # router-a's mapping of alice's agent socket
    before = lab.json("alice", "client", "tunnel", "status", "--json")
    sent = attack(lab, "send", "--dst", target, *(f"--hex={h}" for h in forged), "--listen", "1")
    assert sent["heard"] == [], sent
    after = lab.wait_for(
        lambda: (
            s
            if (s := lab.json("alice", "client", "tunnel", "status", "--json"))["dropped"]["not_peer"]
            >= before["dropped"]["not_peer"] + FORGED
            else None
        ),
        timeout=10,
        what="alice's agent to count mallory's initiations as not from a peer",
    )
    assert after["dropped"]["not_peer"] == before["dropped"]["not_peer"] + FORGED, after["dropped"]
    was, now = (next(p for p in s["peers"] if p["id"] == "bob") for s in (before, after))
    assert now["latest_handshake"] == was["latest_handshake"], (was, now)
    assert now["rx_bytes"] - was["rx_bytes"] < INITIATION_BYTES, (was, now)  # a keepalive (32 B) may come
    assert now["tx_bytes"] - was["tx_bytes"] < RESPONSE_BYTES, (was, now)  # WireGuard answered nothing

    port = str(after["port"])  # WireGuard's own port: loopback (and the kernel path) only
    control = lab.json("alice", "python3", "-m", "attacks", "send", "--dst", f"127.0.0.1:{port}",
                       f"--hex={initiation(bob_secret, alice_key).hex()}", "--listen", "2")  # fmt: skip
    answers = [bytes.fromhex(h["hex"]) if "hex" in h else h["text"].encode() for h in control["heard"]]
    assert any(a[:4] == b"\x02\x00\x00\x00" and len(a) == RESPONSE_BYTES for a in answers), control
