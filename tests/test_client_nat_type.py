"""The RFC 5780 verdicts of ``client nat-type``, pure: observations in, RFC 4787 words (or a refusal) out."""

from __future__ import annotations

import dataclasses

import pytest

from client.diagnostics.nat_discovery import lifetime_schedule
from client.diagnostics.nat_type import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    BEHAVIOURS,
    ENDPOINT_INDEPENDENT,
    DiscoveryError,
    Lifetime,
    Observations,
    binding_lifetime,
    classic_name,
    classify,
    filtering_behaviour,
    mapping_behaviour,
    other_address,
)
from common.rfc4787 import Behaviour
from protocol import Endpoint

SERVER = Endpoint("198.18.0.20", 3478)
OTHER = Endpoint("198.18.0.21", 3479)
LOCAL = Endpoint("198.18.1.10", 40000)
ROUTER = "198.18.0.11"


def test_words_are_the_nat_profiles_words() -> None:
    assert tuple(str(b) for b in Behaviour) == BEHAVIOURS


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ((40000, 40000, 40000), ENDPOINT_INDEPENDENT),
        ((40000, 40001, 40001), ADDRESS_DEPENDENT),
        ((40000, 40001, 40002), ADDRESS_AND_PORT_DEPENDENT),
        ((40000, 51234, 40000), ADDRESS_AND_PORT_DEPENDENT),  # RFC 5780: test III is compared with test II
    ],
)
def test_mapping_behaviour(ports: tuple[int, int, int], expected: str) -> None:
    primary, alternate_ip, alternate_both = (Endpoint(ROUTER, port) for port in ports)
    assert mapping_behaviour(primary, alternate_ip, alternate_both) == expected


def test_mapping_that_changes_with_the_port_only_is_refused() -> None:
    with pytest.raises(DiscoveryError, match="not an RFC 4787 behaviour"):
        mapping_behaviour(Endpoint(ROUTER, 1), Endpoint(ROUTER, 1), Endpoint(ROUTER, 2))


@pytest.mark.parametrize(
    ("both", "port", "expected"),
    [
        (True, True, ENDPOINT_INDEPENDENT),
        (False, True, ADDRESS_DEPENDENT),
        (False, False, ADDRESS_AND_PORT_DEPENDENT),
    ],
)
def test_filtering_behaviour(both: bool, port: bool, expected: str) -> None:
    assert filtering_behaviour(both, port) == expected


def test_filtering_that_lets_in_another_ip_but_not_another_port_is_refused() -> None:
    with pytest.raises(DiscoveryError, match="inconsistent"):
        filtering_behaviour(True, False)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (None, "does not support RFC 5780.*no OTHER-ADDRESS"),
        (Endpoint(SERVER.host, 3479), "needs another IP and another port.*first --listening-ip"),
        (Endpoint("198.18.0.21", SERVER.port), "needs another IP and another port"),
        (Endpoint("2001:db8::1", 3479), "another address family"),
    ],
)
def test_other_address_must_be_another_ip_and_port(other: Endpoint | None, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        other_address(SERVER, other)
    assert other_address(SERVER, OTHER) == OTHER


def observations(**changes: object) -> Observations:
    """A port-restricted cone (the lab's cone profile) seen from 198.18.1.10:40000."""
    mapped = Endpoint(ROUTER, 40000)
    seen = Observations(
        server=SERVER,
        other=OTHER,
        local=LOCAL,
        mapped=mapped,
        mapped_alternate_ip=mapped,
        mapped_alternate_both=mapped,
        changed_both_from=None,
        changed_port_from=None,
        hairpinning=False,
    )
    return dataclasses.replace(seen, **changes)  # type: ignore[arg-type]


def test_classify_cone() -> None:
    report = classify(observations())
    assert report.as_dict() == {
        "server": "198.18.0.20:3478",
        "other": "198.18.0.21:3479",
        "local": "198.18.1.10:40000",
        "mapped": "198.18.0.11:40000",
        "nat": True,
        "mapping": ENDPOINT_INDEPENDENT,
        "filtering": ADDRESS_AND_PORT_DEPENDENT,
        "classic": "port-restricted cone",
        "port_preserved": True,
        "hairpinning": False,
        "mapped_ports": [40000, 40000, 40000],
        "lifetime_max_s": 0,
        "lifetime_s": None,
        "lifetime_lost_s": None,
    }
    assert report.lines() == [
        "server       198.18.0.20:3478 (other address 198.18.0.21:3479)",
        "local        198.18.1.10:40000",
        "mapped       198.18.0.11:40000",
        "nat          yes",
        "mapping      endpoint-independent (mapped ports 40000, 40000, 40000)",
        "filtering    address-and-port-dependent",
        "classic      port-restricted cone",
        "port         preserved",
        "hairpinning  no",
        "lifetime     not measured (--lifetime-max 0)",
    ]


def test_classify_symmetric_with_sequential_ports() -> None:
    report = classify(
        observations(
            mapped=Endpoint(ROUTER, 50001),
            mapped_alternate_ip=Endpoint(ROUTER, 50002),
            mapped_alternate_both=Endpoint(ROUTER, 50003),
        )
    )
    assert (report.mapping, report.filtering, report.classic) == (
        ADDRESS_AND_PORT_DEPENDENT,
        ADDRESS_AND_PORT_DEPENDENT,
        "symmetric",
    )
    assert report.port_preserved is False
    assert report.mapped_ports == (50001, 50002, 50003)


def test_classify_no_nat() -> None:
    report = classify(
        observations(
            mapped=LOCAL,
            mapped_alternate_ip=LOCAL,
            mapped_alternate_both=LOCAL,
            changed_both_from=OTHER,
            changed_port_from=Endpoint(SERVER.host, OTHER.port),
            hairpinning=True,
        )
    )
    assert (report.nat, report.mapping, report.filtering, report.classic) == (
        False,
        ENDPOINT_INDEPENDENT,
        ENDPOINT_INDEPENDENT,
        "open",
    )
    assert "nat          no (mapped address == local address)" in report.lines()


def test_classify_restricted_cone() -> None:
    report = classify(observations(changed_port_from=Endpoint(SERVER.host, OTHER.port)))
    assert (report.filtering, report.classic) == (ADDRESS_DEPENDENT, "restricted cone")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"changed_both_from": SERVER, "changed_port_from": SERVER},
            r"came from 198\.18\.0\.20:3478, not 198\.18\.0\.21:3479",
        ),
        ({"changed_port_from": OTHER}, r"\(change port\) came from 198\.18\.0\.21:3479, not 198\.18\.0\.20:3479"),
    ],
)
def test_an_answer_from_the_wrong_address_is_no_verdict(changes: dict[str, Endpoint], message: str) -> None:
    """A server that ignores CHANGE-REQUEST answers from where it was asked: that is no evidence of EIF."""
    with pytest.raises(DiscoveryError, match=message):
        classify(observations(**changes))


def test_binding_lifetime() -> None:
    samples = [(1.0, True), (2.0, True), (3.0, False), (4.0, False)]
    assert binding_lifetime(4.0, samples) == Lifetime(4.0, 2.0, 3.0)
    assert binding_lifetime(2.0, [(1.0, True), (2.0, True)]) == Lifetime(2.0, 2.0, None)
    assert binding_lifetime(2.0, [(1.0, False), (2.0, False)]) == Lifetime(2.0, None, 1.0)
    with pytest.raises(DiscoveryError, match="binding lifetime inconsistent"):
        binding_lifetime(3.0, [(1.0, False), (2.0, True)])


def test_lifetime_in_the_report() -> None:
    report = classify(observations(lifetime=Lifetime(5.0, 2.0, 3.0)))
    assert report.as_dict()["lifetime_s"] == 2.0
    assert report.as_dict()["lifetime_lost_s"] == 3.0
    assert report.lines()[-1] == "lifetime     >= 2 s, gone after 3 s (probed up to 5 s)"
    report = classify(observations(lifetime=Lifetime(1.0, None, 1.0)))
    assert report.lines()[-1] == "lifetime     no probe kept it, gone after 1 s (probed up to 1 s)"


def test_lifetime_schedule() -> None:
    assert lifetime_schedule(0) == ()
    assert lifetime_schedule(0.5) == (0.5,)
    assert lifetime_schedule(5) == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert lifetime_schedule(40) == tuple(2.5 * step for step in range(1, 17))
    assert len(lifetime_schedule(3600)) == 16


@pytest.mark.parametrize(
    ("nat", "mapping", "filtering", "name"),
    [
        (True, ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT, "full cone"),
        (True, ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, "restricted cone"),
        (True, ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT, "symmetric"),
        (False, ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT, "firewall"),
    ],
)
def test_classic_names(nat: bool, mapping: str, filtering: str, name: str) -> None:
    assert classic_name(nat, mapping, filtering) == name
