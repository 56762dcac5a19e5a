"""NAT profiles are validated data; the registry names them; the environment selects one."""

import dataclasses
import ipaddress

import pytest

from common.rfc4787 import Behaviour, PortAllocation
from nat.profiles import (
    DEFAULT_UDP_TIMEOUT,
    MAX_UDP_TIMEOUT,
    PROFILES,
    Profile,
    ProfileError,
    get_profile,
    parse_switch,
    parse_udp_timeout,
)
from nat.router import ConfigError, RouterConfig

EIM = Behaviour.ENDPOINT_INDEPENDENT
ADM = Behaviour.ADDRESS_DEPENDENT
APDM = Behaviour.ADDRESS_AND_PORT_DEPENDENT
PRESERVE, RANDOM, SEQUENTIAL = PortAllocation.PRESERVE, PortAllocation.RANDOM, PortAllocation.SEQUENTIAL
KNOWN = "cone, full-cone, restricted-cone, symmetric, symmetric-pp, symmetric-seq, udp-blocked"

ENV = {"NAT_WAN_SUBNET": "198.18.0.0/24", "NAT_LAN_SUBNET": "198.18.1.0/24"}


CATALOGUE = {
    # name: (mapping, filtering, ports, udp_blocked, classic name)
    "cone": (EIM, APDM, PRESERVE, False, "port-restricted cone"),
    "full-cone": (EIM, EIM, PRESERVE, False, "full cone"),
    "restricted-cone": (EIM, ADM, PRESERVE, False, "restricted cone"),
    "symmetric": (APDM, APDM, RANDOM, False, "symmetric"),
    "symmetric-pp": (APDM, APDM, PRESERVE, False, "port-preserving symmetric"),
    "symmetric-seq": (APDM, APDM, SEQUENTIAL, False, "sequential symmetric"),
    "udp-blocked": (EIM, APDM, PRESERVE, True, "port-restricted cone"),
}


def test_registry_is_the_rfc_4787_catalogue_by_name():
    assert set(PROFILES) == set(CATALOGUE)
    assert all(name == profile.name for name, profile in PROFILES.items())


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_profile_behaves_as_its_classic_name_says(name):
    profile = get_profile(name)
    mapping, filtering, ports, udp_blocked, classic = CATALOGUE[name]
    assert (profile.mapping, profile.filtering, profile.ports, profile.udp_blocked) == (
        mapping,
        filtering,
        ports,
        udp_blocked,
    )
    assert profile.classic == classic
    assert profile.hairpinning is False, "hairpinning is an option (NAT_HAIRPIN), off unless asked for"
    assert profile.udp_timeout == DEFAULT_UDP_TIMEOUT == 30


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_profile_has_a_one_line_summary_that_starts_with_its_classic_name(name):
    profile = get_profile(name)
    assert "\n" not in profile.summary
    head, _, rest = profile.summary.partition(": ")
    assert head == profile.classic + (", UDP blocked" if profile.udp_blocked else "")
    assert rest


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ProfileError, match=rf"unknown NAT profile 'full-cones'; known profiles: {KNOWN}\Z"):
        get_profile("full-cones")


def test_timeout_override_returns_a_new_profile():
    assert get_profile("cone", 45).udp_timeout == 45
    assert get_profile("cone").udp_timeout == 30


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_profile("cone").udp_timeout = 5  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -1, MAX_UDP_TIMEOUT + 1, True, 2.5, "30"])
def test_bad_timeout_is_refused(bad):
    with pytest.raises(ProfileError, match="UDP timeout must be a whole number of seconds"):
        Profile("x", mapping=EIM, filtering=APDM, ports=PortAllocation.PRESERVE, udp_timeout=bad)


def test_empty_name_is_refused():
    with pytest.raises(ProfileError, match="name must not be empty"):
        Profile("", mapping=EIM, filtering=APDM, ports=PortAllocation.PRESERVE)


@pytest.mark.parametrize(("text", "seconds"), [("1", 1), (" 45 ", 45), (str(MAX_UDP_TIMEOUT), MAX_UDP_TIMEOUT)])
def test_parse_udp_timeout(text, seconds):
    assert parse_udp_timeout(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5", "1.5", "30s", "0", "86401"])
def test_parse_udp_timeout_refuses(text):
    with pytest.raises(ProfileError, match=repr(text.strip()) if not text.strip().isdecimal() else "in 1.."):
        parse_udp_timeout(text)


def test_options_return_a_new_profile_with_only_the_given_ones_changed():
    cone = get_profile("cone")
    assert cone.with_options() == cone
    assert cone.with_options(hairpinning=True) == dataclasses.replace(cone, hairpinning=True)
    changed = cone.with_options(udp_timeout=5, hairpinning=True, udp_blocked=True)
    assert (changed.udp_timeout, changed.hairpinning, changed.udp_blocked) == (5, True, True)
    assert changed.with_options(hairpinning=False).hairpinning is False
    with pytest.raises(ProfileError, match="UDP timeout"):
        cone.with_options(udp_timeout=0)


@pytest.mark.parametrize(
    ("text", "value"), [("on", True), ("off", False), (" ON ", True), ("1", True), ("0", False), ("false", False)]
)
def test_parse_switch(text, value):
    assert parse_switch(text) is value


@pytest.mark.parametrize("text", ["", "yes please", "2", "enabled"])
def test_parse_switch_refuses(text):
    with pytest.raises(ProfileError, match=rf"expected on or off \(or 1/0, true/false\), got {text!r}"):
        parse_switch(text)


def test_as_dict_uses_rfc_4787_words():
    assert get_profile("cone").as_dict() == {
        "name": "cone",
        "classic": "port-restricted cone",
        "mapping": "endpoint-independent",
        "filtering": "address-and-port-dependent",
        "ports": "preserve",
        "hairpinning": False,
        "udp_timeout": 30,
        "udp_blocked": False,
        "summary": get_profile("cone").summary,
    }


def test_as_dict_carries_the_options():
    shown = get_profile("symmetric-seq").with_options(hairpinning=True, udp_blocked=True, udp_timeout=9).as_dict()
    assert (shown["ports"], shown["hairpinning"], shown["udp_blocked"], shown["udp_timeout"]) == (
        "sequential",
        True,
        True,
        9,
    )


def test_describe_is_one_line():
    assert get_profile("symmetric", 7).describe() == (
        "symmetric (symmetric): mapping=address-and-port-dependent filtering=address-and-port-dependent "
        "ports=random hairpin=off udp_blocked=off udp_timeout=7s"
    )
    assert get_profile("restricted-cone").with_options(hairpinning=True, udp_blocked=True).describe() == (
        "restricted-cone (restricted cone): mapping=endpoint-independent filtering=address-dependent "
        "ports=preserve hairpin=on udp_blocked=on udp_timeout=30s"
    )


def test_config_defaults_to_cone():
    config = RouterConfig.from_env(ENV)
    assert config.profile == get_profile("cone")
    assert config.wan_subnet == ipaddress.IPv4Network("198.18.0.0/24")
    assert config.lan_subnet == ipaddress.IPv4Network("198.18.1.0/24")


def test_config_reads_profile_and_timeout():
    config = RouterConfig.from_env({**ENV, "NAT_PROFILE": "symmetric", "NAT_UDP_TIMEOUT": "12"})
    assert config.profile == get_profile("symmetric", 12)


def test_config_reads_the_options_for_any_profile():
    env = {**ENV, "NAT_PROFILE": "full-cone", "NAT_HAIRPIN": "on", "NAT_UDP_BLOCKED": "1"}
    config = RouterConfig.from_env({**env, "NAT_UDP_ALLOW": " 198.18.0.20, 198.18.0.10 ,"})
    assert config.profile == get_profile("full-cone").with_options(hairpinning=True, udp_blocked=True)
    assert config.udp_allowed == (ipaddress.IPv4Address("198.18.0.20"), ipaddress.IPv4Address("198.18.0.10"))


def test_config_reads_the_upstream_gateway():
    assert RouterConfig.from_env(ENV).gateway is None
    assert RouterConfig.from_env({**ENV, "NAT_GATEWAY": "198.18.0.2"}).gateway == ipaddress.IPv4Address("198.18.0.2")


def test_config_options_default_to_the_profiles():
    blocked = RouterConfig.from_env({**ENV, "NAT_PROFILE": "udp-blocked", "NAT_HAIRPIN": " "})
    assert blocked.profile == get_profile("udp-blocked")
    assert blocked.udp_allowed == ()
    opened = RouterConfig.from_env({**ENV, "NAT_PROFILE": "udp-blocked", "NAT_UDP_BLOCKED": "off"})
    assert opened.profile.udp_blocked is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NAT_PROFILE": "nope"}, rf"NAT_PROFILE: unknown NAT profile 'nope'; known profiles: {KNOWN}"),
        ({"NAT_HAIRPIN": "maybe"}, r"NAT_HAIRPIN: expected on or off \(or 1/0, true/false\), got 'maybe'"),
        ({"NAT_UDP_BLOCKED": "2"}, r"NAT_UDP_BLOCKED: expected on or off"),
        ({"NAT_UDP_ALLOW": "198.18.0.20,turn"}, r"NAT_UDP_ALLOW: .*'turn'.* \(expected comma-separated IPv4"),
        ({"NAT_GATEWAY": "198.18.9.1"}, r"NAT_GATEWAY: expected one address in NAT_WAN_SUBNET 198.18.0.0/24"),
        ({"NAT_GATEWAY": "198.18.0.2,198.18.0.3"}, r"NAT_GATEWAY: expected one address"),
        ({"NAT_UDP_TIMEOUT": "soon"}, r"NAT_UDP_TIMEOUT: UDP timeout must be a whole number of seconds, got 'soon'"),
        ({"NAT_UDP_TIMEOUT": "0"}, r"NAT_UDP_TIMEOUT: .* in 1\.\.86400, got 0"),
        ({"NAT_WAN_SUBNET": ""}, r"NAT_WAN_SUBNET is not set"),
        ({"NAT_LAN_SUBNET": "lan"}, r"NAT_LAN_SUBNET='lan' is not an IPv4 subnet"),
        ({"NAT_LAN_SUBNET": "198.18.0.128/25"}, r"NAT_WAN_SUBNET 198.18.0.0/24 and NAT_LAN_SUBNET .* overlap"),
    ],
)
def test_config_errors_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        RouterConfig.from_env({**ENV, **env})
