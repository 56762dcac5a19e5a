"""Rendering profiles into nft scripts: the right rules, atomic replacement, determinism, valid syntax."""

import os
import shutil
import subprocess
from ipaddress import IPv4Address

import pytest

from nat.profiles import PROFILES, Behaviour, PortAllocation, Profile, get_profile
from nat.render import TABLE, UnsupportedProfile, render

EIM = Behaviour.ENDPOINT_INDEPENDENT
ADM = Behaviour.ADDRESS_DEPENDENT
APDM = Behaviour.ADDRESS_AND_PORT_DEPENDENT


def rendered(name, udp_timeout=None):
    return render(get_profile(name, udp_timeout), "eth0", "eth1", "198.18.1.0/24")


def rules(script):
    """The script's statements, comments and blank lines dropped, indentation stripped."""
    return [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_cone_masquerades_keeping_ports():
    assert 'oifname "eth0" ip saddr 198.18.1.0/24 masquerade' in rules(rendered("cone"))
    assert "fully-random" not in rendered("cone")


def test_symmetric_masquerades_fully_random():
    assert 'oifname "eth0" ip saddr 198.18.1.0/24 masquerade fully-random' in rules(rendered("symmetric"))


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_replaces_only_its_own_table_atomically(name):
    lines = rules(rendered(name))
    assert lines[:3] == [f"table {TABLE} {{}}", f"delete table {TABLE}", f"table {TABLE} {{"]
    assert [line for line in lines if line.startswith("table") or "delete" in line] == lines[:3]
    assert "flush" not in rendered(name)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_stateful_firewall_drops_unsolicited_wan_traffic_in_input_and_forward(name):
    script = rendered(name)
    for chain, policy in (("input", "accept"), ("forward", "drop")):
        body = chain_body(script, chain)
        assert body[0] == f"type filter hook {chain} priority filter; policy {policy};"
        assert body[1] == 'iifname "eth0" meta l4proto udp ip saddr @blocked_peers drop'
        assert body[2] == "ct state established,related accept"
    assert chain_body(script, "input")[3:] == ['iifname "eth0" drop']
    assert chain_body(script, "forward")[3:] == ['iifname "eth1" oifname "eth0" accept']


def test_blocked_peers_start_in_the_set_and_are_dropped_before_conntrack_admits_them():
    script = render(get_profile("cone"), "eth0", "eth1", "198.18.1.0/24", [IPv4Address("198.18.0.12")])
    assert "set blocked_peers { type ipv4_addr; elements = { 198.18.0.12 }; }" in script
    assert "set blocked_peers { type ipv4_addr; }" in rendered("cone"), "empty by default"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_udp_timeout_object_set_on_new_lan_udp_flows(name):
    script = rendered(name, udp_timeout=17)
    assert chain_body(script, "ct timeout udp_mapping") == [
        "protocol udp",
        "l3proto ip",
        "policy = { unreplied : 17, replied : 17 }",
    ]
    assert chain_body(script, "prerouting") == [
        "type filter hook prerouting priority filter; policy accept;",
        'iifname "eth1" meta nfproto ipv4 meta l4proto udp ct timeout set "udp_mapping"',
    ]


def test_default_timeout_is_the_profiles():
    assert "policy = { unreplied : 30, replied : 30 }" in rendered("cone")


def test_hairpinning_off_has_its_marked_place():
    assert "# hairpinning: off" in "\n".join(line.strip() for line in chain_lines(rendered("cone"), "forward"))


def test_nat_chain_is_source_nat_only():
    assert chain_body(rendered("cone"), "postrouting")[0] == "type nat hook postrouting priority srcnat; policy accept;"
    assert "dnat" not in rendered("cone")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_rendering_is_deterministic(name):
    assert rendered(name) == rendered(name)


def test_interface_names_come_from_the_caller():
    script = render(get_profile("cone"), "wan7", "lan3", "10.9.0.0/16")
    assert 'oifname "wan7" ip saddr 10.9.0.0/16 masquerade' in script
    assert '"eth0"' not in script


@pytest.mark.parametrize("ifname", ["", 'eth0"; flush ruleset', "a" * 16, "eth 0"])
def test_unusable_interface_name_is_refused(ifname):
    with pytest.raises(ValueError, match="unusable interface name"):
        render(get_profile("cone"), ifname, "eth1", "198.18.1.0/24")


FUTURE_PROFILES = {
    "full-cone": (Profile("full-cone", EIM, Behaviour.ENDPOINT_INDEPENDENT, PortAllocation.PRESERVE), "filtering"),
    "restricted-cone": (Profile("restricted-cone", EIM, ADM, PortAllocation.PRESERVE), "filtering"),
    "symmetric-preserving": (Profile("sym-p", APDM, APDM, PortAllocation.PRESERVE), "mapping"),
    "cone-random": (Profile("cone-r", EIM, APDM, PortAllocation.RANDOM), "mapping"),
    "hairpin": (Profile("hairpin", EIM, APDM, PortAllocation.PRESERVE, hairpinning=True), "hairpinning"),
}


@pytest.mark.parametrize(("profile", "problem"), FUTURE_PROFILES.values(), ids=FUTURE_PROFILES.keys())
def test_unimplemented_combinations_raise_unsupported_profile(profile, problem):
    with pytest.raises(UnsupportedProfile, match=rf"NAT profile '{profile.name}' is not supported yet: .*{problem}="):
        render(profile, "eth0", "eth1", "198.18.1.0/24")


def test_unsupported_profile_lists_every_gap():
    profile = Profile("all-wrong", ADM, ADM, PortAllocation.RANDOM, hairpinning=True)
    with pytest.raises(UnsupportedProfile) as caught:
        render(profile, "eth0", "eth1", "198.18.1.0/24")
    assert caught.value.problems == [
        "mapping=address-dependent with ports=random",
        "filtering=address-dependent",
        "hairpinning=on",
    ]


def nft_check_command():
    """``nft -c -f -``, in a throwaway user+net namespace unless we are root (nft -c needs CAP_NET_ADMIN)."""
    if shutil.which("nft") is None:
        pytest.skip("nft not installed on this host (apt-get install nftables); syntax check skipped")
    if os.geteuid() == 0:
        return ["nft", "-c", "-f", "-"]
    if shutil.which("unshare") is None:
        pytest.skip("not root and no unshare: nft -c needs CAP_NET_ADMIN")
    return ["unshare", "--user", "--map-root-user", "--net", "nft", "-c", "-f", "-"]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_nft_accepts_the_script(name):
    command = nft_check_command()
    done = subprocess.run(command, input=rendered(name), capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0 and command[0] == "unshare" and "Operation not permitted" in done.stderr:
        pytest.skip(f"unprivileged namespaces unavailable for nft -c: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr


def chain_lines(script, header):
    """The raw lines of the block opened by ``<header> {`` (a chain or ct timeout), braces excluded."""
    lines = script.splitlines()
    openers = {f"chain {header} {{", f"{header} {{"}
    start = next(i for i, line in enumerate(lines) if line.strip() in openers)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    return lines[start + 1 : end]


def chain_body(script, header):
    return rules("\n".join(chain_lines(script, header)))
