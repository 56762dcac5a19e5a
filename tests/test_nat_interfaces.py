"""Choosing the WAN and LAN interfaces by subnet (the pure part; pyroute2 only lists the links)."""

import ipaddress

import pytest

from nat.interfaces import InterfaceNotFound, Link, pick, pick_wan_lan

WAN = ipaddress.IPv4Network("198.18.0.0/24")
LAN = ipaddress.IPv4Network("198.18.1.0/24")


def link(ifname, address):
    return Link(ifname, ipaddress.IPv4Interface(address))


LO = link("lo", "127.0.0.1/8")


def test_found_by_subnet_whatever_the_order_docker_attached_them():
    lan_first = [LO, link("eth0", "198.18.1.2/24"), link("eth1", "198.18.0.11/24")]
    wan, lan = pick_wan_lan(lan_first, WAN, LAN)
    assert (wan.ifname, str(wan.address.ip)) == ("eth1", "198.18.0.11")
    assert (lan.ifname, str(lan.address.ip)) == ("eth0", "198.18.1.2")


def test_missing_subnet_names_it_and_what_was_seen():
    seen = [LO, link("eth0", "198.18.1.2/24")]
    with pytest.raises(InterfaceNotFound) as caught:
        pick_wan_lan(seen, WAN, LAN)
    assert str(caught.value) == (
        "no interface has an address in the WAN subnet 198.18.0.0/24; seen: lo 127.0.0.1/8, eth0 198.18.1.2/24"
    )


def test_nothing_seen():
    with pytest.raises(InterfaceNotFound, match=r"LAN subnet 198.18.1.0/24; seen: none"):
        pick([], LAN, "LAN")


def test_two_interfaces_in_one_subnet_is_ambiguous():
    seen = [link("eth0", "198.18.0.11/24"), link("eth2", "198.18.0.12/24")]
    with pytest.raises(InterfaceNotFound, match=r"more than one .* WAN subnet .*: eth0 198.18.0.11/24, eth2"):
        pick(seen, WAN, "WAN")


def test_wan_and_lan_must_be_different_interfaces():
    one = link("eth0", "198.18.0.11/24")
    two = link("eth0", "198.18.1.2/24")
    with pytest.raises(InterfaceNotFound, match="are both on eth0"):
        pick_wan_lan([one, two], WAN, LAN)
