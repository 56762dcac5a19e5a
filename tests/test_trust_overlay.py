"""Overlay addresses (trust.overlay): one per keyed host in 198.19.255.0/24, kept, lowest free for new ids."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from trust.overlay import OVERLAY_NET, OverlayFull, assign, is_overlay


def test_new_ids_take_the_lowest_free_addresses_in_order() -> None:
    assert assign(["alice", "bob"], {}) == {"alice": IPv4Address("198.19.255.1"), "bob": IPv4Address("198.19.255.2")}


def test_kept_addresses_stay_and_gaps_are_filled_first() -> None:
    kept = {"bob": IPv4Address("198.19.255.2"), "gone": IPv4Address("198.19.255.1")}
    assert assign(["alice", "bob", "carol"], kept) == {
        "alice": IPv4Address("198.19.255.1"),
        "bob": IPv4Address("198.19.255.2"),
        "carol": IPv4Address("198.19.255.3"),
    }


@pytest.mark.parametrize("bad", ["198.19.255.0", "198.19.255.255", "198.18.0.10"])
def test_a_kept_address_outside_the_hosts_of_the_block_is_replaced(bad: str) -> None:
    assert assign(["alice"], {"alice": IPv4Address(bad)}) == {"alice": IPv4Address("198.19.255.1")}


def test_two_ids_never_share_an_address() -> None:
    kept = {"alice": IPv4Address("198.19.255.7"), "bob": IPv4Address("198.19.255.7")}
    assert assign(["alice", "bob"], kept) == {"alice": IPv4Address("198.19.255.7"), "bob": IPv4Address("198.19.255.1")}


def test_the_block_holds_254_hosts_and_then_is_full() -> None:
    ids = [f"h{i}" for i in range(254)]
    assigned = assign(ids, {})
    assert len(set(assigned.values())) == 254
    assert all(is_overlay(address) for address in assigned.values())
    with pytest.raises(OverlayFull, match="no overlay address left for 'extra'"):
        assign([*ids, "extra"], assigned)


def test_the_block_is_inside_the_lab_range_and_outside_the_private_ranges() -> None:
    assert OVERLAY_NET.subnet_of(IPv4Network("198.18.0.0/15"))
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"):
        assert not OVERLAY_NET.overlaps(IPv4Network(private)), private
