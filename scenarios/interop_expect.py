"""What each interop stack should do across a pair of NAT sites: RFC 4787 theory (``scenarios.grid_expect``)
plus each stack's documented behaviour. Pure data and functions, unit-tested (tests/test_interop_expect.py).

The theory's premises (both peers learn each other's server-reflexive address and probe it at once; an answer
goes to the probe's actual source; nobody predicts ports) hold for all three stacks: ICE checks every pair and
answers checks at their source (peer-reflexive candidates), nebula answers a handshake where it came from and
``punchy.respond`` makes the far side punch back when the lighthouse tells it. They differ in what is left
when punching cannot work.
"""

from __future__ import annotations

from dataclasses import dataclass

from scenarios.grid_expect import DIRECT, RELAY, Site, expected_path

NONE = "none"


@dataclass(frozen=True)
class Stack:
    """One stack of the interop table: its name in reports, a title, and what it does where theory says relay."""

    name: str
    title: str
    when_relay: frozenset[str]
    """The paths it may take where punching cannot work (theory: relay)."""
    when_direct: frozenset[str]
    """The paths it may take where punching works (theory: direct)."""
    behaviour: str


STACKS = (
    Stack(
        "natlab",
        "natlab",
        frozenset({RELAY}),
        frozenset({DIRECT}),
        "natlab's own client: the relay first, then direct once a punch is confirmed (the theory is its own).",
    ),
    Stack(
        "aiortc",
        "aiortc (WebRTC)",
        frozenset({RELAY}),
        frozenset({DIRECT, RELAY}),
        "ICE through the lab's coturn. aioice, aiortc's ICE agent, nominates aggressively when controlling (every "
        "check side a sends carries USE-CANDIDATE): the first pair whose check succeeds carries the data and is "
        "never replaced. Where punching works, a direct pair or a TURN relay pair that answered first; where it "
        "cannot, a relay pair.",
    ),
    Stack(
        "nebula",
        "nebula, relays off",
        frozenset({NONE}),
        frozenset({DIRECT}),
        "nebula 1.6.1 with a lighthouse and punchy, no relay: where punching cannot work it has nothing else, "
        "so the tunnel never comes up.",
    ),
    Stack(
        "nebula-relays",
        "nebula, relays on",
        frozenset({RELAY}),
        frozenset({DIRECT, RELAY}),
        "nebula 1.6.1 with the lighthouse as relay: the relayed handshake races the direct one, and 1.6 never "
        "moves a tunnel from a relay to a direct path, so where punching works either may win (issue 13 saw the "
        "relay win cone-cone); where it cannot, the relay carries the tunnel.",
    ),
)
STACK_NAMES = tuple(stack.name for stack in STACKS)


def stack(name: str) -> Stack:
    for known in STACKS:
        if known.name == name:
            return known
    raise ValueError(f"unknown stack {name!r}: one of {', '.join(STACK_NAMES)}")


def expected(name: str, a: Site, b: Site) -> tuple[frozenset[str], str, str]:
    """The paths stack ``name`` may take between sites ``a`` and ``b``, theory's path, and theory's reason."""
    theory, why = expected_path(a, b)
    known = stack(name)
    return (known.when_direct if theory == DIRECT else known.when_relay), theory, why
