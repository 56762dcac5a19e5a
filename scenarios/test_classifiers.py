"""Every NAT profile is what its label says, according to three classifiers that agree with each other.

Behind each profile (two profiles per lab, one per router), from the host: natlab's own ``client nat-type``
(RFC 5780), coturn's ``turnutils_natdiscovery -m -f`` and the classic ``stun`` client, all against the lab's
coturn on its primary WAN address (it listens on a second one for the "change IP" tests). Neither of the
last two signals its verdict by exit code, so their output is parsed (``scenarios.classifiers``); output that
does not support a verdict fails the test with the reason, rather than passing or guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from common.rfc4787 import Behaviour
from nat.profiles import get_profile
from protocol import Endpoint
from scenarios.classifiers import (
    NoVerdict,
    Verdict,
    natdiscovery_argv,
    parse_natdiscovery,
    parse_stun_client,
    stun_client_argv,
)
from scenarios.harness import Lab, start_lab

# Two profiles per lab (alice's router, bob's router): every profile of the catalogue, in four bring-ups.
LABS = [
    ("full-cone", "restricted-cone"),
    ("cone", "symmetric"),
    ("symmetric-pp", "symmetric-seq"),
    ("udp-blocked", "cone"),
]


@pytest.fixture(scope="module", params=LABS, ids=[f"{a}+{b}" for a, b in LABS])
def classified_lab(request: pytest.FixtureRequest, docker_ready: None) -> Iterator[Lab]:
    a, b = request.param
    with start_lab(name="classify", env={"NAT_A": a, "NAT_B": b}) as lab:
        yield lab


def profile_of(lab: Lab, host: str) -> str:
    """The NAT profile of the host's router, as the lab's compose model sets it."""
    return lab.service(lab.topology.router_of(host)).environment["NAT_PROFILE"]


def verdict_or_output(parse: Callable[[], Verdict], output: str) -> Verdict:
    """The parsed verdict; when the output holds none, fail with the reason and the whole output."""
    try:
        return parse()
    except NoVerdict as exc:
        pytest.fail(f"{exc}\n--- output ---\n{output}", pytrace=False)


@pytest.mark.parametrize("host", ["alice", "bob"])
def test_client_nat_type_reports_the_profile(classified_lab: Lab, host: str) -> None:
    lab, profile = classified_lab, get_profile(profile_of(classified_lab, host))
    report = lab.json(host, "client", "nat-type", "--server", f"{lab.address('turn')}:3478", "--json")
    assert report["nat"] is True, report
    assert (report["mapping"], report["filtering"]) == (str(profile.mapping), str(profile.filtering)), report


@pytest.mark.parametrize("host", ["alice", "bob"])
def test_turnutils_natdiscovery_agrees(classified_lab: Lab, host: str) -> None:
    lab, profile = classified_lab, get_profile(profile_of(classified_lab, host))
    local_ip = lab.address(host)
    argv = natdiscovery_argv(Endpoint(lab.address("turn"), 3478), local_ip=local_ip)
    _, output = lab.exec(host, *argv)  # exits 0 whatever happened: the parser judges the output
    verdict = verdict_or_output(lambda: parse_natdiscovery(output), output)
    assert verdict.nat is True, output
    assert (verdict.mapping, verdict.filtering) == (str(profile.mapping), str(profile.filtering)), output


@pytest.mark.parametrize("host", ["alice", "bob"])
def test_classic_stun_client_agrees(classified_lab: Lab, host: str) -> None:
    lab, profile = classified_lab, get_profile(profile_of(classified_lab, host))
    code, out, err = lab.exec_split(host, *stun_client_argv(Endpoint(lab.address("turn"), 3478)))
    output = f"{out}\n{err}"  # its verdict on stdout, the -v trace the parser checks it against on stderr
    verdict = verdict_or_output(lambda: parse_stun_client(output, code), f"exit {code}\n{output}")
    assert verdict.nat is True, output
    # stun says "Dependent Mapping" without saying on what, and tests filtering only behind a cone: its
    # verdict must allow the profile's behaviour, be cone-like exactly when the profile is, and name the
    # filtering whenever it tested it.
    assert verdict.allows(str(profile.mapping), str(profile.filtering)), output
    endpoint_independent = profile.mapping is Behaviour.ENDPOINT_INDEPENDENT
    assert (str(Behaviour.ENDPOINT_INDEPENDENT) in verdict.mapping_possible) == endpoint_independent, output
    if endpoint_independent:
        assert verdict.filtering == str(profile.filtering), output
