"""The kernel path's nftables text (client.tunnel.steering), checked by nft itself where it can (root)."""

from __future__ import annotations

import subprocess

import pytest

from client.tunnel.steering import DROP, MARK, elements, steerable, table
from protocol import Endpoint


def test_without_the_agents_port_the_table_only_keeps_strangers_away_from_wireguard() -> None:
    text = table(51820, None)
    assert "@direct" not in text
    assert "notrack" not in text
    assert f'iifname != "lo" udp dport 51820 meta mark != {MARK:#x} counter drop' in text


def test_with_it_wireguard_leaves_and_arrives_through_the_agents_port() -> None:
    text = table(51820, 40000)
    assert "udp sport 51820 ip daddr . udp dport @direct counter notrack udp sport set 40000" in text
    assert "udp dport 40000 ip saddr . udp sport @direct @th,64,32" in text
    assert "udp dport set 51820" in text


def test_set_changes_are_one_transaction() -> None:
    add, remove = [Endpoint("198.18.0.12", 40000)], [Endpoint("198.18.0.11", 41000)]
    assert elements(add, remove) == (
        "add element inet natlab_tunnel direct { 198.18.0.12 . 40000 }\n"
        "delete element inet natlab_tunnel direct { 198.18.0.11 . 41000 }\n"
    )
    assert elements() == ""


def test_only_ipv4_peers_are_steered() -> None:
    assert steerable(Endpoint("198.18.0.12", 1))
    assert not steerable(Endpoint("2001:db8::1", 1))
    assert not steerable(Endpoint("bob", 1))


@pytest.mark.needs("nft", "unshare", root=True)
@pytest.mark.parametrize("agent_port", [None, 40000])
def test_nft_accepts_the_table(agent_port: int | None) -> None:
    script = DROP + table(51820, agent_port) + elements([Endpoint("198.18.0.12", 40000)] if agent_port else [])
    done = subprocess.run(
        ["unshare", "--net", "nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
