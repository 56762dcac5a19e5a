"""`make lab-status` rendering, one service role at a time (no Docker: the views are built by hand)."""

from __future__ import annotations

import ipaddress

import pytest

from scenarios.harness import LabError, Role, Service, Topology
from scenarios.lab_status import ServiceView, describe, render

WAN = {"wan": "198.19.0.20"}
TURN = Service("turn", Role.TURN, WAN, {"NATLAB_TURN_IP": "198.19.0.20", "NATLAB_TURN_ALT_IP": "198.19.0.21"})
ROUTER = Service("router-a", Role.ROUTER, {"wan": "198.19.0.11", "lan-a": "198.19.1.2"}, {"NAT_PROFILE": "cone"})
SERVER = Service("server", Role.SERVER, {"wan": "198.19.0.10"})
ALICE = Service("alice", Role.HOST, {"lan-a": "198.19.1.10"})
ALICE_STATUS = {
    "id": "alice",
    "registered": True,
    "server": "198.19.0.10:9000",
    "turn": {"state": "allocated"},
    "peers": [{"id": "bob", "path": "direct", "addr": "198.19.0.12:4000", "time_to_direct_ms": 3.25, "reason": None}],
}


def test_turn_says_where_it_listens_and_never_speaks_of_registration() -> None:
    line = describe(ServiceView(TURN, "healthy", None))
    assert line == "STUN/TURN relay on 198.19.0.20:3478 and 198.19.0.21:3478, answering STUN"
    assert "registered" not in line
    assert "?" not in line
    assert describe(ServiceView(TURN, "starting", None)).endswith("not answering STUN yet")


def test_router_shows_its_profile() -> None:
    state = {"name": "cone", "mapping": "endpoint-independent", "filtering": "address-and-port-dependent"}
    line = describe(ServiceView(ROUTER, "healthy", state))
    assert line == "profile cone (mapping endpoint-independent, filtering address-and-port-dependent)"
    assert describe(ServiceView(ROUTER, "starting", None)) == "profile cone (?)"  # from its environment


def test_server_lists_who_is_registered() -> None:
    state = {"peers": [{"id": "alice", "addr": "198.19.0.11:4000"}, {"id": "bob", "addr": "198.19.0.12:4000"}]}
    assert (
        describe(ServiceView(SERVER, "healthy", state)) == "2 registered: alice@198.19.0.11:4000, bob@198.19.0.12:4000"
    )
    assert describe(ServiceView(SERVER, "starting", None)) == "0 registered: -"


def test_host_shows_registration_and_relay() -> None:
    assert describe(ServiceView(ALICE, "healthy", ALICE_STATUS)) == (
        "registered as alice with 198.19.0.10:9000, relay allocated"
    )
    unregistered = ALICE_STATUS | {"registered": False, "turn": None}
    assert describe(ServiceView(ALICE, "starting", unregistered)) == (
        "NOT registered as alice with 198.19.0.10:9000, no relay"
    )
    assert describe(ServiceView(ALICE, "exited", None)) == "agent not answering"


def test_attacker_says_how_to_attack_and_victim_what_reached_it() -> None:
    mallory = Service("mallory", Role.ATTACKER, {"wan": "198.19.0.66"})
    assert describe(ServiceView(mallory, "running", None)) == (
        "attacker: docker compose --profile attack exec mallory python3 -m attacks --help"
    )
    victim = Service("victim", Role.VICTIM, {"wan": "198.19.0.77"})
    state = {"total": {"datagrams": 3, "payload_bytes": 183}, "by_source": {"198.19.0.10:9000": {}}}
    assert describe(ServiceView(victim, "healthy", state)) == "victim: received 3 datagrams, 183 bytes from 1 sources"
    assert describe(ServiceView(victim, "starting", None)) == "counter not answering"


def test_a_users_own_image_shows_what_it_runs_and_where_its_agent_is() -> None:
    alice = Service("alice", Role.USER, {})
    state = {"image": "myapp:latest", "command": ["myapp", "--serve"]}
    assert describe(ServiceView(alice, "running", state)) == (
        "your image myapp:latest (myapp --serve), in alice-agent's network namespace"
    )
    assert describe(ServiceView(alice, "running", {"image": "myapp:latest", "command": []})) == (
        "your image myapp:latest (its own command), in alice-agent's network namespace"
    )


def test_render_shows_networks_addresses_and_paths() -> None:
    networks = {"lan-a": ipaddress.IPv4Network("198.19.1.0/24"), "wan": ipaddress.IPv4Network("198.19.0.0/24")}
    views = [ServiceView(ALICE, "healthy", ALICE_STATUS), ServiceView(TURN, "healthy", None)]
    text = render("natlab-x", networks, views).splitlines()
    assert text[0] == "natlab lab 'natlab-x': lan-a 198.19.1.0/24, wan 198.19.0.0/24"
    assert text[2].split()[:3] == ["alice", "healthy", "198.19.1.10"]
    assert text[3].split()[:3] == ["turn", "healthy", "198.19.0.20"]
    assert text[-1] == "  alice -> bob: direct via 198.19.0.12:4000, direct in 3.2 ms"


def test_render_shows_the_tunnel_under_each_pair_while_it_is_up() -> None:
    tunnel_peer: dict[str, object] = {"id": "bob", "name": "bob.natlab", "overlay": "198.19.255.2", "path": "direct"}
    tunnel_peer |= {"carrier": "kernel", "handshake_age_s": 3.4, "rx_bytes": 1200, "tx_bytes": 900}
    up = {**ALICE_STATUS, "tunnel": {"up": True, "peers": [tunnel_peer]}}
    text = render("natlab", {}, [ServiceView(ALICE, "healthy", up)]).splitlines()
    assert text[-2:] == [
        "  alice -> bob: direct via 198.19.0.12:4000, direct in 3.2 ms",
        "    tunnel bob.natlab (198.19.255.2) over direct by the kernel, handshake 3 s ago, 1200 B in, 900 B out",
    ]
    down = {**ALICE_STATUS, "tunnel": {"up": False, "peers": [tunnel_peer]}}
    assert render("natlab", {}, [ServiceView(ALICE, "healthy", down)]).splitlines()[-1].startswith("  alice -> bob")


def test_render_without_paths_says_how_to_make_one() -> None:
    text = render("natlab", {}, [ServiceView(SERVER, "healthy", {"peers": []})])
    assert text.splitlines()[-1].startswith("  none yet")


def test_compose_model_gives_roles_addresses_and_each_hosts_router() -> None:
    config = {
        "services": {
            "carrier": {"labels": {"natlab.role": "router"}, "networks": {"wan": {"ipv4_address": "198.19.0.13"}}},
            "router-a": {
                "labels": {"natlab.role": "router"},
                "environment": {"NAT_PROFILE": "cone", "NAT_HAIRPIN": None},
                "networks": {"cgn": {"ipv4_address": "100.64.0.3"}, "lan-a": {"ipv4_address": "198.19.1.2"}},
            },
            "alice": {"labels": {"natlab.role": "host"}, "networks": {"lan-a": {"ipv4_address": "198.19.1.10"}}},
        },
        "networks": {"lan-a": {"ipam": {"config": [{"subnet": "198.19.1.0/24"}]}}, "wan": {}},
    }
    topology = Topology.from_config(config)
    assert topology.with_role(Role.ROUTER) == ["carrier", "router-a"]
    assert topology.router_of("alice") == "router-a"
    assert topology.services["router-a"].environment == {"NAT_PROFILE": "cone", "NAT_HAIRPIN": ""}
    assert topology.services["alice"].address == "198.19.1.10"
    assert topology.networks == {"lan-a": ipaddress.IPv4Network("198.19.1.0/24")}
    with pytest.raises(LabError, match="name the network"):
        _ = topology.services["router-a"].address


@pytest.mark.parametrize("labels", [{}, {"natlab.role": "printer"}])
def test_a_service_without_a_known_role_is_a_clear_error(labels: dict[str, str]) -> None:
    with pytest.raises(LabError, match=r"needs the label natlab.role: one of server, turn, router, host"):
        Topology.from_config({"services": {"x": {"labels": labels}}})


def test_server_counters_one_line_per_kind_that_is_not_zero() -> None:
    state = {"peers": [], "counters": {"empty": 0, "not_utf8": 3, "rate_limited": 2920, "quota": 32, "error": 0}}
    text = render("natlab", {}, [ServiceView(SERVER, "healthy", state)]).splitlines()
    at = text.index("server counters:")
    assert text[at + 1 : at + 4] == [
        "  not_utf8                 3",
        "  rate_limited          2920",
        "  quota                   32",
    ]
    assert text[at + 4] == "paths:"


def test_server_counters_all_zero_or_not_known_yet() -> None:
    zero = render("natlab", {}, [ServiceView(SERVER, "healthy", {"peers": [], "counters": {"quota": 0}})])
    assert "server counters: all zero" in zero.splitlines()
    starting = render("natlab", {}, [ServiceView(SERVER, "starting", None)])
    assert "counters" not in starting, "no state file yet: nothing to say"


def test_presence_shows_each_host_online_or_offline_with_the_age_of_its_last_datagram() -> None:
    bob = Service("bob", Role.HOST, {"lan-b": "198.19.2.10"})
    carol = Service("carol", Role.HOST, {"lan-a": "198.19.1.11"})
    state = {
        "peers": [{"id": "alice", "addr": "198.19.0.11:4000", "last_seen": "2025-01-01T12:00:00+00:00"}],
        "gone": [{"id": "bob", "last_seen": "2025-01-01T11:57:30+00:00"}],
        "counters": {},
    }
    views = [
        ServiceView(SERVER, "healthy", state),
        ServiceView(ALICE, "healthy", ALICE_STATUS),
        ServiceView(bob, "healthy", None),
        ServiceView(carol, "healthy", {"id": "carol"}),
    ]
    noon_and_3_s = 1_735_732_803.0  # 2025-01-01T12:00:03Z
    text = render("natlab", {}, views, wall_now=noon_and_3_s).splitlines()
    at = text.index("presence (signal server):")
    assert text[at + 1 : at + 4] == [
        "  alice     online   last heard 3 s ago",
        "  bob       offline  last heard 2 min 33 s ago",
        "  carol     offline  never heard",
    ]
    assert text[at + 4] == "paths:"


def test_no_presence_without_the_servers_state() -> None:
    text = render("natlab", {}, [ServiceView(SERVER, "starting", None), ServiceView(ALICE, "healthy", ALICE_STATUS)])
    assert "presence" not in text
