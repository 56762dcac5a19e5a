"""Parsers for turnutils_natdiscovery and stun output, on real captured outputs (tests/fixtures/classifiers).

Where the tools' printed verdict is wrong (measured: a symmetric NAT reported as endpoint-independent), the
parsers must refuse with the reason, never pass the verdict on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.diagnostics.nat_type import ADDRESS_AND_PORT_DEPENDENT, ADDRESS_DEPENDENT, BEHAVIOURS, ENDPOINT_INDEPENDENT
from protocol import Endpoint
from scenarios.classifiers import (
    NoVerdict,
    Verdict,
    natdiscovery_argv,
    parse_natdiscovery,
    parse_stun_client,
    stun_client_argv,
)

FIXTURES = Path(__file__).parent / "fixtures" / "classifiers"
EI, AD, APD = ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT

# stun's exit status as captured (the printed "Return value" & 0xFF)
STUN_EXIT = {
    "stun-loopback-open.txt": 0x01,
    "stun-cone.txt": 0x17,
    "stun-symmetric.txt": 0x18,
    "stun-symmetric-without-v.txt": 0x18,
    "stun-symmetric-alternate-listener.txt": 0x12,
    "stun-symmetric-alternate-blocked.txt": 0x16,
    "stun-symmetric-no-rfc5780.txt": 0x12,
    "stun-blocked.txt": 0x1C,
    "stun-garbage.txt": 139,
}


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def stun(name: str) -> Verdict:
    return parse_stun_client(fixture(name), STUN_EXIT[name])


def test_every_fixture_is_tested() -> None:
    tested = set(STUN_EXIT) | {f"natdiscovery-{name}.txt" for name in NATDISCOVERY_CASES} | NATDISCOVERY_REFUSED
    assert {path.name for path in FIXTURES.glob("*.txt")} == tested


# -- turnutils_natdiscovery ------------------------------------------------------------------------------

NATDISCOVERY_CASES = {
    # fixture: (nat, mapping, filtering, hairpinning)
    "loopback-no-nat": (False, EI, EI, True),
    "loopback-without-L": (None, EI, EI, None),  # without -L it cannot tell there is no NAT
    "cone": (True, EI, APD, False),
    "symmetric": (True, APD, APD, False),
}


@pytest.mark.parametrize(("name", "expected"), NATDISCOVERY_CASES.items())
def test_natdiscovery(name: str, expected: tuple[bool | None, str, str, bool | None]) -> None:
    verdict = parse_natdiscovery(fixture(f"natdiscovery-{name}.txt"))
    assert (verdict.nat, verdict.mapping, verdict.filtering, verdict.hairpinning) == expected
    assert verdict.port_preserved is None  # it does not tell
    assert verdict.allows(expected[1], expected[2])


NATDISCOVERY_REFUSED_REASONS = {
    # The alternate address was blocked: the tool printed "Endpoint Independent Mapping" for a symmetric NAT.
    "natdiscovery-symmetric-alternate-blocked.txt": "mapping discovery: a request went unanswered",
    # Asked on coturn's second IP: test II went to test I's own address; "Endpoint Independent" again.
    "natdiscovery-symmetric-alternate-listener.txt": (
        r"test II was answered from 198\.19\.210\.3:3478, test I from 198\.19\.210\.3:3478"
    ),
    "natdiscovery-symmetric-no-rfc5780.txt": "has no OTHER-ADDRESS: it does not support RFC 5780",
    "natdiscovery-timeout.txt": r"the server never answered \(STUN receive timeout\)",
    "natdiscovery-truncated.txt": "an answer without RESPONSE-ORIGIN or XOR-MAPPED-ADDRESS",
    "natdiscovery-garbage.txt": "no mapping, filtering or hairpinning discovery in the output",
}
NATDISCOVERY_REFUSED = set(NATDISCOVERY_REFUSED_REASONS)


@pytest.mark.parametrize(("name", "reason"), NATDISCOVERY_REFUSED_REASONS.items())
def test_natdiscovery_no_verdict(name: str, reason: str) -> None:
    with pytest.raises(NoVerdict, match=reason):
        parse_natdiscovery(fixture(name))


def edited(name: str, old: str, new: str) -> str:
    """A fixture with the first ``old`` replaced."""
    text = fixture(name)
    assert old in text
    return text.replace(old, new, 1)


CONE, SYMMETRIC, NO_NAT = "natdiscovery-cone.txt", "natdiscovery-symmetric.txt", "natdiscovery-loopback-no-nat.txt"
EI_FILTERING, APD_FILTERING = "Endpoint Independent Filtering!", "Address and Port Dependent Filtering!"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            edited(CONE, APD_FILTERING, EI_FILTERING),
            r"answers and timeouts \['response', 'timeout', 'timeout'\] do not support 'endpoint-independent'",
        ),
        (
            edited(CONE, "Endpoint Independent Mapping!", "Address Dependent Mapping!"),
            "address-dependent needs 3 answers, the output has 2",
        ),
        (edited(SYMMETRIC, "198.19.210.1:61124", "198.19.210.1:21134"), "do not support 'address-and-port-dependent'"),
        (edited(NO_NAT, "origin: : 127.0.0.2:34781", "origin: : 127.0.0.1:34780"), "does not honour CHANGE-REQUEST"),
        (
            edited(CONE, "STUN receive timeout..", "The response is an error 400 (Bad Request)"),
            r"'The response is an error 400 \(Bad Request\)'",
        ),
        ("\n-= Mapping Behavior Discovery =-\n", "the server never answered"),
    ],
)
def test_natdiscovery_verdict_that_does_not_follow_is_refused(text: str, reason: str) -> None:
    with pytest.raises(NoVerdict, match=reason):
        parse_natdiscovery(text)


def test_natdiscovery_argv() -> None:
    lab = Endpoint("198.18.0.20", 3478)
    assert natdiscovery_argv(lab) == ["turnutils_natdiscovery", "-m", "-f", "-p", "3478", "198.18.0.20"]
    assert natdiscovery_argv(lab, local_ip="198.18.1.10", hairpinning=True) == [
        "turnutils_natdiscovery", "-m", "-f", "-H", "-L", "198.18.1.10", "-p", "3478", "198.18.0.20",
    ]  # fmt: skip


# -- stun ------------------------------------------------------------------------------------------------


def test_stun_open() -> None:
    verdict = stun("stun-loopback-open.txt")
    assert (verdict.nat, verdict.mapping, verdict.filtering, verdict.summary) == (False, EI, EI, "Open")
    assert (verdict.hairpinning, verdict.port_preserved) == (True, True)


def test_stun_cone() -> None:
    verdict = stun("stun-cone.txt")
    assert (verdict.nat, verdict.mapping, verdict.filtering) == (True, EI, APD)
    assert (verdict.hairpinning, verdict.port_preserved) == (False, True)
    assert verdict.summary == "Independent Mapping, Port Dependent Filter, preserves ports, no hairpin"


def test_stun_symmetric_leaves_open_what_it_does_not_tell() -> None:
    verdict = stun("stun-symmetric.txt")
    assert (verdict.nat, verdict.mapping, verdict.filtering) == (True, None, None)
    assert verdict.mapping_possible == (AD, APD)
    assert verdict.filtering_possible == BEHAVIOURS
    assert verdict.allows(APD, APD)
    assert not verdict.allows(EI, APD)
    assert (verdict.hairpinning, verdict.port_preserved) == (False, False)
    assert verdict.as_dict()["mapping_possible"] == [AD, APD]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        # Each of these printed a verdict; the first three are wrong about a symmetric NAT.
        ("stun-symmetric-alternate-listener.txt", r"CHANGED-ADDRESS 198\.19\.210\.3:3479 is not another IP and port"),
        ("stun-symmetric-no-rfc5780.txt", r"answered with an error \(4 20 Unknown attribute"),
        ("stun-symmetric-alternate-blocked.txt", "the request to the other address went unanswered"),
        ("stun-symmetric-without-v.txt", "no -v trace"),
        ("stun-blocked.txt", "no verdict: 'Blocked or could not reach STUN server'"),
        ("stun-garbage.txt", "no verdict: 'Independent Mapping, Port Dep#%!garbage'"),
    ],
)
def test_stun_no_verdict(name: str, reason: str) -> None:
    with pytest.raises(NoVerdict, match=reason):
        stun(name)


STUN_CONE, STUN_OPEN = "stun-cone.txt", "stun-loopback-open.txt"


@pytest.mark.parametrize(
    ("text", "returncode", "reason"),
    [
        (fixture(STUN_CONE), 0x16, r"exit status 22 do not match 0x17"),
        (edited(STUN_CONE, "no hairpin", "will hairpin"), 0x17, "hairpin / preserver port flags contradict it"),
        (edited(STUN_CONE, "Port Dependent Filter", "Address Dependent Filter"), 0x17, "'test III = 0' contradicts it"),
        (edited(STUN_CONE, "Primary:", "Primary: Open\nPrimary:"), 0x17, "expected one 'Primary:' line"),
        (
            edited(STUN_OPEN, "SourceAddress = 127.0.0.2:34780", "SourceAddress = 127.0.0.1:34780"),
            0x01,
            "CHANGE-REQUEST answered from 127.0.0.1:34780 .* the server ignores it",
        ),
        (edited(STUN_OPEN, "is nat  = 0", "is nat  = 1"), 0x01, "'is nat = 1' contradicts it"),
    ],
)
def test_stun_verdict_that_does_not_follow_is_refused(text: str, returncode: int, reason: str) -> None:
    with pytest.raises(NoVerdict, match=reason):
        parse_stun_client(text, returncode)


def test_stun_without_exit_status_still_checks_the_return_value_line() -> None:
    assert parse_stun_client(fixture("stun-cone.txt")).mapping == EI
    with pytest.raises(NoVerdict, match="return value"):
        parse_stun_client(edited("stun-cone.txt", "Return value is 0x000017", "Return value is 0x000006"))


def test_stun_argv() -> None:
    assert stun_client_argv(Endpoint("198.18.0.20", 3478)) == ["stun", "198.18.0.20:3478", "-v"]
    with pytest.raises(ValueError, match="IPv4 only"):
        stun_client_argv(Endpoint("2001:db8::20", 3478))
