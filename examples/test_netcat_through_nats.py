"""An example of another project's test, written only against natlab's pytest fixture ``natlab_lab``.

The stack under test is netcat in a plain Debian image that knows nothing of natlab (NETCAT_IMAGE; natlab's
`make -s user-image` builds one). Each side sends from UDP port 40000 to the other side's public address at
port 40000, both at once, as a naive peer-to-peer app would. Theory (RFC 4787): behind two port-preserving
cone NATs each side's own sends open its NAT for the other's, so both hear each other; behind two symmetric
NATs every send leaves from a fresh random port nobody aims at, so neither does, and the router's conntrack
keeps the flow UNREPLIED.

Run it from any project where natlab is installed (`pip install -e '/path/to/natlab[pytest]'`):

    NETCAT_IMAGE=$(make -s -C /path/to/natlab user-image) pytest examples/test_netcat_through_nats.py
"""

from __future__ import annotations

import os

import pytest

from natlab_pytest.handle import NatLab
from natlab_pytest.plugin import LabFactory

PORT = 40000


@pytest.fixture
def netcat_image() -> str:
    """The image under test; your project's CI would build its own and pass its tag."""
    image = os.environ.get("NETCAT_IMAGE")
    if not image:
        pytest.fail("set NETCAT_IMAGE to the image under test (in natlab: `make -s user-image`)", pytrace=False)
    return image


def exchange(lab: NatLab, host: str, peer: str) -> None:
    """In `host`'s own container: 50 lines to the peer's public address, 6 s of listening; output to /tmp."""
    lines = f"i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo '{host} '$i; sleep 0.1; done"
    netcat = f"timeout 6 nc -u -p {PORT} {lab.wan_address(peer)} {PORT} >/tmp/heard"
    lab.spawn(host, f"rm -f /tmp/heard /tmp/done; {lines} | {netcat}; echo $? >/tmp/done")


def heard(lab: NatLab, host: str) -> list[str] | None:
    """What `host`'s netcat received, once it has finished; None before."""
    if not lab.exec(host, "test", "-f", "/tmp/done").ok:
        return None
    return lab.exec_ok(host, "cat", "/tmp/heard").splitlines()


@pytest.mark.parametrize(("nat", "reaches"), [("cone", True), ("symmetric", False)])
def test_netcat_reaches_the_other_side_exactly_when_theory_says(
    natlab_lab: LabFactory, netcat_image: str, nat: str, reaches: bool
) -> None:
    lab = natlab_lab(nat_a=nat, nat_b=nat, host_a_image=netcat_image, host_b_image=netcat_image)
    assert lab.router_profile("alice")["name"] == nat
    pairs = (("alice", "bob"), ("bob", "alice"))
    for host, peer in pairs:
        exchange(lab, host, peer)
    for host, peer in pairs:
        received = lab.wait_for(lambda host=host: heard(lab, host), 20, f"{host}'s netcat to finish")
        from_peer = [line for line in received if line.startswith(f"{peer} ")]
        (flow,) = lab.flows(host, PORT, peer)
        if reaches:
            assert from_peer, received
            assert "UNREPLIED" not in flow["flags"], flow
        else:
            assert not from_peer, received
            assert "UNREPLIED" in flow["flags"], flow
