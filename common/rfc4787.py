"""RFC 4787's words for NAT behaviour, and the classic (RFC 3489) names they replace.

The routers (``nat.profiles``) are built from these words and the client's RFC 5780 discovery
(``client.diagnostics.nat_type``) reports in them, so both import them from here rather than one
layer reaching into the other.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Behaviour(enum.StrEnum):
    """How a NAT's mapping or filtering depends on the remote endpoint (RFC 4787 sections 4.1, 5)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


class PortAllocation(enum.StrEnum):
    """How the external port of a new mapping is chosen (RFC 4787 section 4.2.1)."""

    PRESERVE = "preserve"
    """Keep the internal source port unless another mapping already holds it. With address-and-port-dependent
    mapping only an endpoint's first mapping can keep it; later ones (other destinations) get random ports."""
    RANDOM = "random"
    """A random port for every new mapping."""
    SEQUENTIAL = "sequential"
    """Each new mapping takes the port after the previous one's, whoever made it: what port prediction exploits."""


CLASSIC_CONE: Mapping[Behaviour, str] = {
    Behaviour.ENDPOINT_INDEPENDENT: "full cone",
    Behaviour.ADDRESS_DEPENDENT: "restricted cone",
    Behaviour.ADDRESS_AND_PORT_DEPENDENT: "port-restricted cone",
}
"""The RFC 3489 name of an endpoint-independent mapping NAT, by its filtering behaviour."""

CLASSIC_SYMMETRIC: Mapping[PortAllocation, str] = {
    PortAllocation.PRESERVE: "port-preserving symmetric",
    PortAllocation.RANDOM: "symmetric",
    PortAllocation.SEQUENTIAL: "sequential symmetric",
}
"""The folklore name of a dependent-mapping NAT, by how it picks ports."""


def classic_name(mapping: Behaviour, filtering: Behaviour, ports: PortAllocation) -> str:
    """The pre-RFC 4787 name (RFC 3489 and folklore): ``full cone`` ... ``sequential symmetric``."""
    if mapping is Behaviour.ENDPOINT_INDEPENDENT:
        return CLASSIC_CONE[filtering]
    return CLASSIC_SYMMETRIC[ports]
