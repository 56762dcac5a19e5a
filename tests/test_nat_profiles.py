"""NAT profiles are validated data; the registry names them; the environment selects one."""

import dataclasses
import ipaddress

import pytest

from nat.profiles import (
    DEFAULT_UDP_TIMEOUT,
    MAX_UDP_TIMEOUT,
    PROFILES,
    Behaviour,
    PortAllocation,
    Profile,
    ProfileError,
    get_profile,
    parse_udp_timeout,
)
from nat.router import ConfigError, RouterConfig

EIM = Behaviour.ENDPOINT_INDEPENDENT
APDM = Behaviour.ADDRESS_AND_PORT_DEPENDENT

ENV = {"NAT_WAN_SUBNET": "198.18.0.0/24", "NAT_LAN_SUBNET": "198.18.1.0/24"}


def test_registry_has_cone_and_symmetric_by_name():
    assert {"cone", "symmetric"} <= set(PROFILES)
    assert all(name == profile.name for name, profile in PROFILES.items())


def test_cone_is_port_restricted_cone():
    cone = get_profile("cone")
    assert (cone.mapping, cone.filtering, cone.ports) == (EIM, APDM, PortAllocation.PRESERVE)
    assert cone.hairpinning is False
    assert cone.udp_timeout == DEFAULT_UDP_TIMEOUT == 30


def test_symmetric_maps_per_destination_with_random_ports():
    symmetric = get_profile("symmetric")
    assert (symmetric.mapping, symmetric.filtering, symmetric.ports) == (APDM, APDM, PortAllocation.RANDOM)
    assert symmetric.hairpinning is False


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ProfileError, match=r"unknown NAT profile 'full-cones'; known profiles: cone, symmetric"):
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


def test_as_dict_uses_rfc_4787_words():
    assert get_profile("cone").as_dict() == {
        "name": "cone",
        "mapping": "endpoint-independent",
        "filtering": "address-and-port-dependent",
        "ports": "preserve",
        "hairpinning": False,
        "udp_timeout": 30,
    }


def test_describe_is_one_line():
    assert get_profile("symmetric", 7).describe() == (
        "symmetric: mapping=address-and-port-dependent filtering=address-and-port-dependent ports=random "
        "hairpin=off udp_timeout=7s"
    )


def test_config_defaults_to_cone():
    config = RouterConfig.from_env(ENV)
    assert config.profile == get_profile("cone")
    assert config.wan_subnet == ipaddress.IPv4Network("198.18.0.0/24")
    assert config.lan_subnet == ipaddress.IPv4Network("198.18.1.0/24")


def test_config_reads_profile_and_timeout():
    config = RouterConfig.from_env({**ENV, "NAT_PROFILE": "symmetric", "NAT_UDP_TIMEOUT": "12"})
    assert config.profile == get_profile("symmetric", 12)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NAT_PROFILE": "nope"}, r"NAT_PROFILE: unknown NAT profile 'nope'; known profiles: cone, symmetric"),
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
