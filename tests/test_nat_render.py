"""Rendering profiles into nft scripts: the right rules, atomic replacement, determinism, valid syntax."""

import itertools
import os
import subprocess
from ipaddress import IPv4Address

import pytest

from common.rfc4787 import Behaviour, PortAllocation
from nat.behaviours import SEQUENTIAL_FIRST_PORT, SEQUENTIAL_PORT_COUNT
from nat.profiles import PROFILES, Profile, get_profile
from nat.render import TABLE, UnsupportedProfile, render
from tests.support.host import missing, require

EIM = Behaviour.ENDPOINT_INDEPENDENT
ADM = Behaviour.ADDRESS_DEPENDENT
APDM = Behaviour.ADDRESS_AND_PORT_DEPENDENT

WAN_ADDRESS = IPv4Address("198.18.0.11")
ALLOWED = [IPv4Address("198.18.0.20"), IPv4Address("198.18.0.10")]

# Every profile with every option, for the properties that must hold whatever the operator picks.
VARIANTS = {
    f"{name}{'+hairpin' if hairpin else ''}{'+udp-blocked' if blocked else ''}": PROFILES[name].with_options(
        hairpinning=hairpin, udp_blocked=blocked
    )
    for name, hairpin, blocked in itertools.product(sorted(PROFILES), (False, True), (False, True))
}


def rendered(name, udp_timeout=None, **options):
    return render_profile(get_profile(name, udp_timeout).with_options(**options))


def render_profile(profile, blocked=()):
    return render(profile, "eth0", "eth1", "198.18.1.0/24", blocked, wan_address=WAN_ADDRESS, udp_allowed=ALLOWED)


def rules(script):
    """The script's statements, comments and blank lines dropped, indentation stripped."""
    return [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]


def chain_lines(script, header):
    """The raw lines of the block opened by ``<header> {`` (a chain, map or ct timeout), braces excluded."""
    lines = script.splitlines()
    openers = {f"chain {header} {{", f"{header} {{"}
    start = next(i for i, line in enumerate(lines) if line.strip() in openers)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    return lines[start + 1 : end]


def chain_body(script, header):
    return rules("\n".join(chain_lines(script, header)))


def has_chain(script, name):
    return f"chain {name} {{" in rules(script)


MASQUERADE = 'oifname "eth0" ip saddr 198.18.1.0/24'
SRCNAT_HOOK = "type nat hook postrouting priority srcnat; policy accept;"
DSTNAT_HOOK = "type nat hook prerouting priority dstnat; policy accept;"
LEARN_HOOK = "type filter hook postrouting priority srcnat + 1; policy accept;"
LEARN = 'oifname "eth0" meta l4proto udp'
LEARN_MAPPINGS = [
    f"{LEARN} ct direction original ct original ip saddr 198.18.1.0/24 "
    "update @mappings { udp sport : ct original ip saddr . ct original proto-src }",
    f"{LEARN} ct direction reply ct status dnat "
    "update @mappings { udp sport : ct reply ip saddr . ct reply proto-src }",
]
ADMIT_DNAT = 'oifname "eth1" ct status dnat accept'


# Mapping: the postrouting chain.


@pytest.mark.parametrize(
    ("name", "srcnat"),
    [
        ("cone", [f"{MASQUERADE} masquerade"]),
        ("full-cone", [f"{MASQUERADE} masquerade"]),
        ("restricted-cone", [f"{MASQUERADE} masquerade"]),
        ("udp-blocked", [f"{MASQUERADE} masquerade"]),
        ("symmetric", [f"{MASQUERADE} masquerade fully-random"]),
        (
            "symmetric-pp",
            [
                f"{MASQUERADE} meta l4proto udp ip saddr . udp sport @mapped_endpoints masquerade fully-random",
                f"{MASQUERADE} meta l4proto udp masquerade",
                f"{MASQUERADE} masquerade fully-random",
            ],
        ),
        (
            "symmetric-seq",
            [
                f"{MASQUERADE} meta l4proto udp masquerade to :numgen inc mod 256 map @sequential_ports",
                f"{MASQUERADE} masquerade fully-random",
            ],
        ),
    ],
)
def test_mapping_is_the_postrouting_chain(name, srcnat):
    assert chain_body(rendered(name), "postrouting") == [SRCNAT_HOOK, *srcnat]


def test_cone_and_symmetric_are_conntrack_and_masquerade_only():
    for name in ("cone", "symmetric"):
        script = rendered(name)
        assert not has_chain(script, "dstnat")
        assert not has_chain(script, "learn")
        assert "dnat" not in script
        assert [line for line in rules(script) if line.startswith(("set", "map"))] == [
            "set blocked_peers { type ipv4_addr; }"
        ]


def test_symmetric_pp_learns_which_endpoints_hold_a_mapping_after_srcnat():
    script = rendered("symmetric-pp", udp_timeout=12)
    assert "set mapped_endpoints { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 12s; }" in script
    assert chain_body(script, "learn") == [
        LEARN_HOOK,
        f"{LEARN} ct direction original ct original ip saddr 198.18.1.0/24 "
        "update @mapped_endpoints { ct original ip saddr . ct original proto-src }",
    ]


def test_symmetric_seq_counts_through_a_constant_map_of_consecutive_ports():
    script = rendered("symmetric-seq")
    body = chain_body(script, "map sequential_ports")
    assert body[0] == f"typeof numgen inc mod {SEQUENTIAL_PORT_COUNT} : udp sport"
    elements = " ".join(body[2:]).replace(",", " ").split()
    pairs = list(zip(elements[0::3], elements[2::3], strict=True))
    assert pairs == [(str(i), str(SEQUENTIAL_FIRST_PORT + i)) for i in range(SEQUENTIAL_PORT_COUNT)]
    assert not has_chain(script, "learn"), "the counter is the only state"


# Filtering: conntrack, or DNAT through learned mappings.


def test_full_cone_dnats_any_inbound_udp_to_a_learned_mapping():
    script = rendered("full-cone", udp_timeout=45)
    assert "map mappings { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 45s; }" in (
        script
    )
    assert chain_body(script, "dstnat") == [
        DSTNAT_HOOK,
        'iifname "eth0" meta l4proto udp dnat ip to udp dport map @mappings',
    ]
    assert chain_body(script, "learn") == [LEARN_HOOK, *LEARN_MAPPINGS]
    assert ADMIT_DNAT in chain_body(script, "forward")


def test_restricted_cone_dnats_only_from_addresses_the_mapping_has_sent_to():
    script = rendered("restricted-cone", udp_timeout=45)
    assert "set contacted { type inet_service . ipv4_addr; flags dynamic,timeout; timeout 45s; }" in script
    assert chain_body(script, "dstnat") == [
        DSTNAT_HOOK,
        'iifname "eth0" meta l4proto udp udp dport . ip saddr @contacted dnat ip to udp dport map @mappings',
    ]
    assert chain_body(script, "learn") == [
        LEARN_HOOK,
        *LEARN_MAPPINGS,
        f"{LEARN} update @contacted {{ udp sport . ip daddr }}",
    ]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_dynamic_set_times_out_with_the_udp_timeout(name):
    for line in rules(rendered(name, udp_timeout=77, hairpinning=True)):
        if "flags dynamic" in line:
            assert line.endswith("flags dynamic,timeout; timeout 77s; }"), line


# The stateful firewall, whatever the profile and options.


@pytest.mark.parametrize("profile", VARIANTS.values(), ids=VARIANTS.keys())
def test_stateful_firewall_drops_unsolicited_wan_traffic_in_input_and_forward(profile):
    script = render_profile(profile)
    guards = ['iifname "eth0" meta l4proto udp ip saddr @blocked_peers drop']
    if profile.udp_blocked:
        guards.append('iifname "eth0" meta l4proto udp ip saddr != @udp_allowed drop')
    outbound = ['oifname "eth0" meta l4proto udp ip daddr != @udp_allowed drop'] if profile.udp_blocked else []
    established = "ct state established,related accept"
    assert chain_body(script, "input") == [
        "type filter hook input priority filter; policy accept;",
        *guards,
        established,
        'iifname "eth0" drop',
    ]
    # The only new inbound flows forwarded are those a learned mapping DNATed (the dstnat chain).
    admitted = [ADMIT_DNAT] if has_chain(script, "dstnat") else []
    assert chain_body(script, "forward") == [
        "type filter hook forward priority filter; policy drop;",
        *guards,
        *outbound,
        established,
        'iifname "eth1" oifname "eth0" accept',
        *admitted,
    ]


@pytest.mark.parametrize("profile", VARIANTS.values(), ids=VARIANTS.keys())
def test_replaces_only_its_own_table_atomically(profile):
    lines = rules(render_profile(profile))
    assert lines[:3] == [f"table {TABLE} {{}}", f"delete table {TABLE}", f"table {TABLE} {{"]
    assert [line for line in lines if line.startswith("table") or "delete" in line] == lines[:3]
    assert "flush" not in render_profile(profile)
    assert lines[-1] == "}"


@pytest.mark.parametrize("profile", VARIANTS.values(), ids=VARIANTS.keys())
def test_rendering_is_deterministic(profile):
    assert render_profile(profile) == render_profile(profile)


def test_blocked_peers_start_in_the_set_and_are_dropped_before_conntrack_admits_them():
    script = render(get_profile("cone"), "eth0", "eth1", "198.18.1.0/24", [IPv4Address("198.18.0.12")])
    assert "set blocked_peers { type ipv4_addr; elements = { 198.18.0.12 }; }" in script
    assert "set blocked_peers { type ipv4_addr; }" in rendered("cone"), "empty by default"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_udp_timeout_object_set_on_every_new_udp_flow(name):
    script = rendered(name, udp_timeout=17)
    assert chain_body(script, "ct timeout udp_mapping") == [
        "protocol udp",
        "l3proto ip",
        "policy = { unreplied : 17, replied : 17 }",
    ]
    assert chain_body(script, "prerouting") == [
        "type filter hook prerouting priority filter; policy accept;",
        'meta nfproto ipv4 meta l4proto udp ct timeout set "udp_mapping"',
    ]


def test_default_timeout_is_the_profiles():
    assert "policy = { unreplied : 30, replied : 30 }" in rendered("cone")


# Options: hairpinning and UDP blocking.


def test_hairpinning_off_has_its_marked_place():
    forward = "\n".join(line.strip() for line in chain_lines(rendered("cone"), "forward"))
    assert "# hairpinning: off" in forward
    assert "198.18.0.11" not in rendered("cone"), "the WAN address is only needed for hairpinning"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_hairpinning_reflects_lan_traffic_to_the_wan_address_and_snats_it_back(name):
    script = rendered(name, hairpinning=True)
    dstnat = chain_body(script, "dstnat")
    assert dstnat[-1] == 'iifname "eth1" ip daddr 198.18.0.11 meta l4proto udp dnat ip to udp dport map @mappings'
    assert chain_body(script, "postrouting")[-1] == (
        'oifname "eth1" ip saddr 198.18.1.0/24 ct status dnat snat ip to 198.18.0.11'
    )
    assert ADMIT_DNAT in chain_body(script, "forward")
    assert chain_body(script, "learn")[1:3] == LEARN_MAPPINGS
    assert "# hairpinning: on" in script


def test_hairpinning_needs_the_wan_address():
    with pytest.raises(ValueError, match="hairpinning needs the router's WAN address"):
        render(get_profile("cone").with_options(hairpinning=True), "eth0", "eth1", "198.18.1.0/24")


def test_udp_blocked_allows_only_the_listed_addresses_sorted_and_once():
    profile = get_profile("udp-blocked")
    script = render(profile, "eth0", "eth1", "198.18.1.0/24", udp_allowed=[*ALLOWED, ALLOWED[0]])
    assert "set udp_allowed { type ipv4_addr; elements = { 198.18.0.10, 198.18.0.20 }; }" in script
    nothing = render(profile, "eth0", "eth1", "198.18.1.0/24")
    assert "set udp_allowed { type ipv4_addr; }" in nothing, "no allow-list: no UDP with the WAN at all"


def test_udp_blocked_profile_is_cone_plus_the_guards():
    blocked, cone = rendered("udp-blocked"), rendered("cone")
    extra = [line for line in rules(blocked) if line not in rules(cone)]
    assert extra == [
        "set udp_allowed { type ipv4_addr; elements = { 198.18.0.10, 198.18.0.20 }; }",
        'iifname "eth0" meta l4proto udp ip saddr != @udp_allowed drop',
        'iifname "eth0" meta l4proto udp ip saddr != @udp_allowed drop',
        'oifname "eth0" meta l4proto udp ip daddr != @udp_allowed drop',
    ]


def test_options_are_described_in_the_header():
    first = rendered("full-cone", hairpinning=True, udp_blocked=True).splitlines()[0]
    assert first == (
        "# natlab router ruleset, rendered by nat.render. full-cone (full cone): mapping=endpoint-independent "
        "filtering=endpoint-independent ports=preserve hairpin=on udp_blocked=on udp_timeout=30s"
    )


# The caller's input.


def test_interface_names_come_from_the_caller():
    script = render(get_profile("full-cone"), "wan7", "lan3", "10.9.0.0/16")
    assert 'oifname "wan7" ip saddr 10.9.0.0/16 masquerade' in script
    assert 'iifname "wan7" meta l4proto udp dnat ip to udp dport map @mappings' in script
    assert '"eth0"' not in script
    assert '"eth1"' not in script


@pytest.mark.parametrize("ifname", ["", 'eth0"; flush ruleset', "a" * 16, "eth 0"])
def test_unusable_interface_name_is_refused(ifname):
    with pytest.raises(ValueError, match="unusable interface name"):
        render(get_profile("cone"), ifname, "eth1", "198.18.1.0/24")


def test_unusable_wan_address_is_refused():
    with pytest.raises(ValueError, match=r"198\.18\.0\.300"):
        render(get_profile("cone"), "eth0", "eth1", "198.18.1.0/24", wan_address="198.18.0.300")


UNSUPPORTED = {
    "address-dependent-mapping": Profile("adm", ADM, APDM, PortAllocation.PRESERVE),
    "cone-random": Profile("cone-r", EIM, APDM, PortAllocation.RANDOM),
    "cone-sequential": Profile("cone-s", EIM, EIM, PortAllocation.SEQUENTIAL, hairpinning=True),
}


@pytest.mark.parametrize("profile", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unimplemented_mappings_raise_unsupported_profile_naming_what_is_supported(profile):
    with pytest.raises(UnsupportedProfile) as caught:
        render(profile, "eth0", "eth1", "198.18.1.0/24", wan_address=WAN_ADDRESS)
    message = str(caught.value)
    assert message.startswith(
        f"NAT profile '{profile.name}' is not supported: mapping={profile.mapping} with ports={profile.ports} "
    )
    assert "(supported: endpoint-independent/preserve, address-and-port-dependent/random, " in message
    assert caught.value.problems == [message.split(": ", 1)[1]]


def nft_check_command():
    """``nft -c -f -``, in a throwaway user+net namespace unless we are root (nft -c needs CAP_NET_ADMIN)."""
    require(missing(["nft"]))  # apt-get install nftables
    if os.geteuid() == 0:
        return ["nft", "-c", "-f", "-"]
    require(missing(["unshare"]))  # not root: nft -c needs CAP_NET_ADMIN, which a user namespace gives
    return ["unshare", "--user", "--map-root-user", "--net", "nft", "-c", "-f", "-"]


@pytest.mark.parametrize("profile", VARIANTS.values(), ids=VARIANTS.keys())
def test_nft_accepts_the_script(profile):
    command = nft_check_command()
    script = render_profile(profile, blocked=[IPv4Address("198.18.0.12")])
    done = subprocess.run(command, input=script, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0 and command[0] == "unshare" and "Operation not permitted" in done.stderr:
        require([f"root or unprivileged namespaces for nft -c ({done.stderr.strip()})"])
    assert done.returncode == 0, done.stderr
