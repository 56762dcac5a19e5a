"""Third-party NAT classifiers: the command lines to run them, and parsers for their output, in RFC 4787's
words (the strings of ``nat.profiles.Behaviour``), so a lab can check them against a router's profile.

* coturn's ``turnutils_natdiscovery`` (RFC 5780: mapping, filtering, hairpinning);
* the classic ``stun`` client (Debian's stun-client 0.97, Vovida; RFC 3489 CHANGE-REQUEST).

Both print a verdict even when their own evidence does not support one, and both exit as if all was well
(turnutils_natdiscovery always exits 0; stun's exit status is a bit mask of the verdict). Measured in a
network-namespace lab (``tests/fixtures/classifiers``):

* turnutils_natdiscovery keeps the previous answer when a request times out (no retransmissions, 3 s), so a
  symmetric NAT whose answer from the alternate address was lost is reported as "Endpoint Independent
  Mapping"; asked on coturn's second listening IP (whose OTHER-ADDRESS names its own IP) it sends "test II"
  to the very address of test I, and reports a symmetric NAT as endpoint-independent again;
* stun counts any message with the right transaction ID as an answer, error responses included: against a
  coturn without RFC 5780 (one listening IP; "420 Unknown attribute" to CHANGE-REQUEST) or asked on coturn's
  second IP, a symmetric NAT comes out as "Independent Mapping, Independent Filter". When the alternate
  address does not answer at all it assumes the mapping is independent.

So the parsers read the evidence the tools print along with the verdict (the answers' origins, the
timeouts, stun's ``-v`` trace) and raise :class:`NoVerdict`, with the reason, whenever the verdict does
not follow from it. A field the tool does not measure is left open (``None``), never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from client.diagnostics.nat_type import ADDRESS_AND_PORT_DEPENDENT, ADDRESS_DEPENDENT, BEHAVIOURS, ENDPOINT_INDEPENDENT
from protocol import Endpoint


class NoVerdict(ValueError):
    """The output holds no verdict that can be trusted; the message says why."""


@dataclass(frozen=True)
class Verdict:
    """What a classifier says. ``*_possible``: the RFC 4787 behaviours its output allows (all three when it
    did not test; stun's "Dependent Mapping" allows both dependent ones); ``mapping`` and ``filtering`` name
    the behaviour when exactly one is possible, else None. ``nat``, ``hairpinning``, ``port_preserved``:
    None when the tool does not tell."""

    tool: str
    nat: bool | None
    mapping_possible: tuple[str, ...] = BEHAVIOURS
    filtering_possible: tuple[str, ...] = BEHAVIOURS
    hairpinning: bool | None = None
    port_preserved: bool | None = None
    summary: str = ""
    """The tool's own verdict words."""

    @property
    def mapping(self) -> str | None:
        return self.mapping_possible[0] if len(self.mapping_possible) == 1 else None

    @property
    def filtering(self) -> str | None:
        return self.filtering_possible[0] if len(self.filtering_possible) == 1 else None

    def allows(self, mapping: str, filtering: str) -> bool:
        """Whether a NAT with this mapping and filtering behaviour fits the verdict."""
        return mapping in self.mapping_possible and filtering in self.filtering_possible

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "nat": self.nat,
            "mapping": self.mapping,
            "filtering": self.filtering,
            "mapping_possible": list(self.mapping_possible),
            "filtering_possible": list(self.filtering_possible),
            "hairpinning": self.hairpinning,
            "port_preserved": self.port_preserved,
            "summary": self.summary,
        }


# -- turnutils_natdiscovery (coturn) ---------------------------------------------------------------------

NATDISCOVERY = "turnutils_natdiscovery"

_RFC4787 = {
    "Endpoint Independent": ENDPOINT_INDEPENDENT,
    "Address Dependent": ADDRESS_DEPENDENT,
    "Address and Port Dependent": ADDRESS_AND_PORT_DEPENDENT,
}
_SECTION = re.compile(r"^-= (?P<name>.+) Behavior Discovery =-$")
_RESPONSE = re.compile(r"^RFC 5780 response \d+$")
_ADDRESS = re.compile(r"(?P<label>Response origin|Other addr|UDP reflexive addr|Local addr)[\s:]+(?P<addr>\S+)$")
_VERDICT = re.compile(r"^NAT with (?P<words>.+) (?P<kind>Mapping|Filtering)!$")
_NO_NAT = "No NAT! (Endpoint Independent Mapping)"
_TIMEOUT = "STUN receive timeout.."
_HAIRPIN_REQUEST = "Received a request (maybe a successful hairpinning)"
_LOG_PREFIX = re.compile(r"^\d+: : ")
_ERRORS = (
    "The response is",  # an error NNN (...), an unrecognized error, not a response message, not a STUN message...
    "Cannot read the response",
    "Wrong ",
    "Not received mapped address attribute",
    "Cannot get address",
    "error resolving",
    "Usage:",
    "Unexpected error",
    "Please use either",
    "ERROR",
    'Use "-',
    "It is mandatory",
    "To use local port",
)


def natdiscovery_argv(server: Endpoint, local_ip: str | None = None, hairpinning: bool = False) -> list[str]:
    """The command line for mapping and filtering discovery (``-H``: hairpinning too, 6 s more).

    ``local_ip``: the address to send from (``-L``); without it the tool cannot tell "no NAT" (it compares
    the mapped address with 0.0.0.0). The server must be coturn's *first* ``--listening-ip``.
    """
    argv = [NATDISCOVERY, "-m", "-f"]
    if hairpinning:
        argv.append("-H")
    if local_ip:
        argv += ["-L", local_ip]
    return [*argv, "-p", str(server.port), server.host]


@dataclass
class _Response:
    rfc5780: bool
    addresses: dict[str, str] = field(default_factory=dict)

    def get(self, label: str) -> str | None:
        return self.addresses.get(label)


@dataclass
class _Section:
    name: str
    events: list[tuple[str, Any]] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events if kind in ("response", "timeout", "request")]

    def responses(self) -> list[_Response]:
        return [value for kind, value in self.events if kind == "response"]

    def verdicts(self) -> list[str]:
        return [value for kind, value in self.events if kind == "verdict"]

    def fail(self, reason: str) -> NoVerdict:
        return NoVerdict(f"{NATDISCOVERY}: {self.name.lower()} discovery: {reason}")


def _natdiscovery_sections(output: str) -> list[_Section]:
    sections: list[_Section] = []
    current = _Section("preamble")
    response: _Response | None = None
    for raw in output.splitlines():
        line = _LOG_PREFIX.sub("", raw.strip())
        if not line or set(line) == {"="} or line.startswith("No ALG") or line.startswith("-= ALG detected"):
            continue
        if match := _SECTION.match(line):
            current = _Section(match["name"])
            sections.append(current)
            response = None
        elif _RESPONSE.match(line):
            response = _Response(rfc5780=True)
            current.events.append(("response", response))
        elif match := _ADDRESS.search(line):
            if response is None:  # a plain answer: no OTHER-ADDRESS, so no "RFC 5780 response" header
                response = _Response(rfc5780=False)
                current.events.append(("response", response))
            response.addresses.setdefault(match["label"], match["addr"])  # coturn logs its first line twice
            if match["label"] == "Local addr":
                response = None
        elif line == _TIMEOUT:
            current.events.append(("timeout", None))
            response = None
        elif line == _HAIRPIN_REQUEST:
            current.events.append(("request", None))
            response = None
        elif line == _NO_NAT or _VERDICT.match(line):
            current.events.append(("verdict", line))
            response = None
        elif any(marker in line for marker in _ERRORS):
            if current.name == "preamble":
                raise NoVerdict(f"{NATDISCOVERY}: {line}")
            current.events.append(("error", line))
            response = None
    return sections


def _host(address: str | None) -> str | None:
    return None if address is None else address.rpartition(":")[0]


def _port(address: str | None) -> str | None:
    return None if address is None else address.rpartition(":")[2]


def _check_answers(section: _Section) -> list[_Response]:
    """Errors and non-RFC 5780 answers spoil a section; the answers otherwise."""
    for kind, value in section.events:
        if kind == "error":
            raise section.fail(f"{value!r}")
    responses = section.responses()
    if not responses:
        raise section.fail("the server never answered (STUN receive timeout)")
    if not all(response.rfc5780 for response in responses):
        raise section.fail(
            "the server's answer has no OTHER-ADDRESS: it does not support RFC 5780 (coturn needs two "
            "--listening-ip addresses)"
        )
    for response in responses:
        if response.get("Response origin") is None or response.get("UDP reflexive addr") is None:
            raise section.fail("an answer without RESPONSE-ORIGIN or XOR-MAPPED-ADDRESS: cannot check it")
    return responses


def _verdict_words(section: _Section, kind: str) -> str:
    verdicts = [match for line in section.verdicts() if (match := _VERDICT.match(line)) and match["kind"] == kind]
    if len(verdicts) != 1 or verdicts[0]["words"] not in _RFC4787:
        raise section.fail(f"expected one 'NAT with ... {kind}!' line, found {section.verdicts()}")
    return _RFC4787[verdicts[0]["words"]]


def _no_nat(section: _Section, responses: Sequence[_Response]) -> bool | None:
    """False when the tool saw no NAT; True when it sent from a known address and was mapped elsewhere."""
    if _NO_NAT in section.verdicts():
        return False
    local = responses[0].get("Local addr")
    if local is None or _host(local) in ("0.0.0.0", "::", "[::]"):
        return None  # sent from the wildcard address (no -L): the tool cannot tell
    return local != responses[0].get("UDP reflexive addr")


def _judge_mapping(section: _Section) -> tuple[str, bool | None]:
    responses = _check_answers(section)
    if "timeout" in section.kinds():
        raise section.fail("a request went unanswered, and the tool then compares with a stale mapped address")
    mapping = _verdict_words(section, "Mapping")
    expected = 2 if mapping == ENDPOINT_INDEPENDENT else 3
    if len(responses) != expected:
        raise section.fail(f"{mapping} needs {expected} answers, the output has {len(responses)}")
    first, second = responses[0], responses[1]
    origin1, origin2 = first.get("Response origin"), second.get("Response origin")
    if _host(origin2) == _host(origin1) or _port(origin2) != _port(origin1):
        raise section.fail(
            f"test II was answered from {origin2}, test I from {origin1}: not the server's other IP with the same "
            "port (a wrong OTHER-ADDRESS: coturn's second --listening-ip names itself)"
        )
    mapped = [response.get("UDP reflexive addr") for response in responses]
    if mapping == ENDPOINT_INDEPENDENT:
        consistent = mapped[0] == mapped[1]
    else:
        origin3 = responses[2].get("Response origin")
        if _host(origin3) != _host(origin2) or _port(origin3) == _port(origin2):
            raise section.fail(f"test III was answered from {origin3}, not from the other port of {origin2}")
        consistent = mapped[0] != mapped[1] and (mapped[1] == mapped[2]) == (mapping == ADDRESS_DEPENDENT)
    if not consistent:
        raise section.fail(f"the mapped addresses {mapped} do not support '{mapping}'")
    nat = _no_nat(section, responses)
    if nat is False and mapping != ENDPOINT_INDEPENDENT:
        raise section.fail(f"'No NAT!' and '{mapping}' mapping contradict each other")
    return mapping, nat


def _judge_filtering(section: _Section) -> tuple[str, bool | None]:
    responses = _check_answers(section)
    filtering = _verdict_words(section, "Filtering")
    kinds = section.kinds()
    expected = {
        ENDPOINT_INDEPENDENT: ["response", "response"],
        ADDRESS_DEPENDENT: ["response", "timeout", "response"],
        ADDRESS_AND_PORT_DEPENDENT: ["response", "timeout", "timeout"],
    }[filtering]
    if kinds != expected:
        raise section.fail(f"answers and timeouts {kinds} do not support '{filtering}' (expected {expected})")
    if len(responses) == 2:
        origin1, origin2 = responses[0].get("Response origin"), responses[1].get("Response origin")
        other_ip = filtering == ENDPOINT_INDEPENDENT
        if (_host(origin2) != _host(origin1)) != other_ip or _port(origin2) == _port(origin1):
            asked = "other IP and port" if other_ip else "other port"
            raise section.fail(
                f"the answer to CHANGE-REQUEST ({asked}) came from {origin2}, test I's from {origin1}: the server "
                "does not honour CHANGE-REQUEST"
            )
    return filtering, _no_nat(section, responses)


def _judge_hairpinning(section: _Section) -> bool:
    _check_answers(section)
    kinds = section.kinds()
    if kinds == ["response", "request"]:
        return True
    if kinds == ["response", "timeout", "timeout"]:
        return False
    raise section.fail(f"answers {kinds}: expected the request to arrive, or two timeouts")


def parse_natdiscovery(output: str) -> Verdict:
    """The verdict in ``turnutils_natdiscovery -m -f [-H]`` output (stdout), or :class:`NoVerdict`."""
    sections = {section.name: section for section in _natdiscovery_sections(output)}
    if not any(name in sections for name in ("Mapping", "Filtering", "Hairpinning")):
        raise NoVerdict(f"{NATDISCOVERY}: no mapping, filtering or hairpinning discovery in the output")
    nat: set[bool | None] = set()
    mapping_possible: tuple[str, ...] = BEHAVIOURS
    filtering_possible: tuple[str, ...] = BEHAVIOURS
    hairpinning: bool | None = None
    summary: list[str] = []
    if "Mapping" in sections:
        mapping, seen = _judge_mapping(sections["Mapping"])
        mapping_possible = (mapping,)
        summary.append(f"{mapping} mapping")
        nat.add(seen)
    if "Filtering" in sections:
        filtering, seen = _judge_filtering(sections["Filtering"])
        filtering_possible = (filtering,)
        summary.append(f"{filtering} filtering")
        nat.add(seen)
    if "Hairpinning" in sections:
        hairpinning = _judge_hairpinning(sections["Hairpinning"])
        summary.append("hairpinning" if hairpinning else "no hairpinning")
    nat.discard(None)
    if len(nat) > 1:
        raise NoVerdict(f"{NATDISCOVERY}: the sections disagree on whether there is a NAT")
    return Verdict(
        NATDISCOVERY,
        nat=nat.pop() if nat else None,
        mapping_possible=mapping_possible,
        filtering_possible=filtering_possible,
        hairpinning=hairpinning,
        summary=", ".join(summary),
    )


# -- stun (stun-client 0.97) ---------------------------------------------------------------------------

STUN_CLIENT = "stun"

_PRIMARY = re.compile(r"^Primary: (?P<verdict>.*?)\s*$")
_RETURN = re.compile(r"^Return value is 0x(?P<value>[0-9a-fA-F]+)\s*$")
_FLAGS = ("test I", "test II", "test III", "test I(2)", "is nat", "mapped IP same", "hairpin", "preserver port")
_FLAG = re.compile(rf"^(?P<name>{'|'.join(re.escape(flag) for flag in _FLAGS)})\s*= (?P<value>\d+)\s*$")
_BLOCK_START = re.compile(r"^Received stun message: \d+ bytes$")
_BLOCK_END = re.compile(r"^Received message of type (?P<type>\d+)\s+id=(?P<id>\d+)$")
_BLOCK_FIELD = re.compile(r"^(?P<name>MappedAddress|SourceAddress|ChangedAddress|ErrorCode) = (?P<value>.*?)\s*$")
BINDING_ERROR_RESPONSE = 0x0111
DEPENDENT_MAPPING = "Dependent Mapping"

_STUN_CLASSES: dict[str, tuple[int, bool, tuple[str, ...], tuple[str, ...]]] = {
    "Open": (0x00, False, (ENDPOINT_INDEPENDENT,), (ENDPOINT_INDEPENDENT,)),
    "Independent Mapping, Independent Filter": (0x02, True, (ENDPOINT_INDEPENDENT,), (ENDPOINT_INDEPENDENT,)),
    "Independent Mapping, Address Dependent Filter": (0x04, True, (ENDPOINT_INDEPENDENT,), (ADDRESS_DEPENDENT,)),
    "Independent Mapping, Port Dependent Filter": (0x06, True, (ENDPOINT_INDEPENDENT,), (ADDRESS_AND_PORT_DEPENDENT,)),
    DEPENDENT_MAPPING: (0x08, True, (ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT), BEHAVIOURS),
    "Firewall": (0x0A, False, (ENDPOINT_INDEPENDENT,), (ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT)),
}
"""The classes stun prints: (code in its return value, NAT?, mapping allowed, filtering allowed). stun does
not test filtering behind a "Dependent Mapping", nor tell which dependent mapping it saw."""

_SUFFIXES = tuple(
    f"{port}{hairpin}"
    for port in (", preserves ports", ", random port")
    for hairpin in (", will hairpin", ", no hairpin")
)


def stun_client_argv(server: Endpoint) -> list[str]:
    """``stun IP:PORT -v``: ``-v`` is required, its trace (on stderr) is what the verdict is checked against;
    pass stdout and stderr to the parser together, but capture them apart and join them: on one pipe the
    verdict line (stdout) can land in the middle of a trace line (stderr). IPv4 only (stun-client 0.97)."""
    if server.is_ipv6:
        raise ValueError(f"{STUN_CLIENT} speaks IPv4 only, not {server}")
    return [STUN_CLIENT, f"{server.host}:{server.port}", "-v"]


@dataclass(frozen=True)
class _StunRun:
    """One stun run as printed: its verdict line, its ``-v`` flags, the first message received per test id."""

    text: str
    name: str
    flags: dict[str, int]
    blocks: dict[int, dict[str, str]]
    returns: list[int]

    def fail(self, reason: str) -> NoVerdict:
        return NoVerdict(f"{STUN_CLIENT}: {self.text!r}: {reason}")

    def source(self, test: int) -> str | None:
        return self.blocks.get(test, {}).get("SourceAddress")


def _stun_run(output: str) -> _StunRun:
    lines = [line.rstrip() for line in output.splitlines()]
    primaries = [match["verdict"] for line in lines if (match := _PRIMARY.match(line))]
    if len(primaries) != 1:
        raise NoVerdict(f"{STUN_CLIENT}: expected one 'Primary:' line, found {len(primaries)}")
    text = primaries[0]
    name = next((name for name in _STUN_CLASSES if text == name or text.startswith(f"{name}, ")), None)
    if name is None:
        raise NoVerdict(f"{STUN_CLIENT}: no verdict: {text!r}")
    flags: dict[str, int] = {}
    blocks: dict[int, dict[str, str]] = {}
    block: dict[str, str] | None = None
    for line in lines:
        if match := _FLAG.match(line):
            flags[match["name"]] = int(match["value"])
        elif _BLOCK_START.match(line):
            block = {}
        elif block is not None and (match := _BLOCK_FIELD.match(line)):
            block.setdefault(match["name"], match["value"])
        elif block is not None and (match := _BLOCK_END.match(line)):
            blocks.setdefault(int(match["id"]), {**block, "type": match["type"]})  # retransmissions: the first
            block = None
    returns = [int(match["value"], 16) for line in lines if (match := _RETURN.match(line))]
    return _StunRun(text, name, flags, blocks, returns)


def _check_stun_server(run: _StunRun) -> None:
    """The trace is there, the server answered test I without errors, and it has another IP and port."""
    if missing := [flag for flag in _FLAGS if flag not in run.flags]:
        raise run.fail(f"no -v trace ({', '.join(missing)} missing): run it with -v and capture stderr too")
    errors = [block for block in run.blocks.values() if int(block["type"]) == BINDING_ERROR_RESPONSE]
    if errors:
        raise run.fail(
            f"the server answered with an error ({errors[0].get('ErrorCode', '?')}), which stun counts as an "
            "answer (coturn without RFC 5780: one --listening-ip)"
        )
    if not run.flags["test I"] or 1 not in run.blocks:
        raise run.fail("no answer to test I")
    source, changed = run.source(1), run.blocks[1].get("ChangedAddress")
    if _host(changed) == _host(source) or _port(changed) == _port(source):
        raise run.fail(
            f"the server's CHANGED-ADDRESS {changed} is not another IP and port than {source} (coturn: ask its "
            "first --listening-ip, and give it two)"
        )


def _check_stun_mapping(run: _StunRun, nat: bool) -> None:
    """Behind a NAT, test I(2) went to the other IP and its mapped address decides the mapping."""
    if bool(run.flags["is nat"]) != nat:
        raise run.fail(f"'is nat = {run.flags['is nat']}' contradicts it")
    if not nat:
        return
    if not run.flags["test I(2)"] or 10 not in run.blocks:
        raise run.fail("the request to the other address went unanswered; stun then assumes independent mapping")
    changed = run.blocks[1].get("ChangedAddress")
    if _host(run.source(10)) != _host(changed) or _host(run.source(10)) == _host(run.source(1)):
        raise run.fail(f"test I(2) was answered from {run.source(10)}, not the other IP {_host(changed)}")
    first, second = run.blocks[1].get("MappedAddress"), run.blocks[10].get("MappedAddress")
    same = first == second
    if same != bool(run.flags["mapped IP same"]) or same != (run.name != DEPENDENT_MAPPING):
        raise run.fail(f"mapped addresses {first} and {second} contradict it")


def _check_stun_filtering(run: _StunRun) -> None:
    """Test II (change IP) and III (change port) answered as the verdict says, and from where they asked."""
    if run.name == DEPENDENT_MAPPING:
        return  # not reported
    expected_ip = run.name in ("Open", "Independent Mapping, Independent Filter")
    if bool(run.flags["test II"]) != expected_ip:
        raise run.fail(f"'test II = {run.flags['test II']}' contradicts it")
    if run.name.endswith("Dependent Filter") and bool(run.flags["test III"]) != run.name.endswith(
        "Address Dependent Filter"
    ):
        raise run.fail(f"'test III = {run.flags['test III']}' contradicts it")
    source = run.source(1)
    for test, flag, other_ip in ((2, "test II", True), (3, "test III", False)):
        if test not in run.blocks:
            if run.flags[flag]:
                raise run.fail(f"{flag} counted as answered, but no answer in the trace")
            continue
        origin = run.source(test)
        if (_host(origin) != _host(source)) != other_ip or (not other_ip and _port(origin) == _port(source)):
            raise run.fail(f"CHANGE-REQUEST answered from {origin} (test I from {source}): the server ignores it")


def parse_stun_client(output: str, returncode: int | None = None) -> Verdict:
    """The verdict in ``stun IP:PORT -v`` output (stdout and stderr), or :class:`NoVerdict`.

    ``returncode``, when given, must agree with the printed "Return value": the class code, 0x10 if it does
    not hairpin, 0x01 if it preserves ports.
    """
    run = _stun_run(output)
    code, nat, mapping_possible, filtering_possible = _STUN_CLASSES[run.name]
    _check_stun_server(run)
    _check_stun_mapping(run, nat)
    _check_stun_filtering(run)
    hairpinning, port_preserved = bool(run.flags["hairpin"]), bool(run.flags["preserver port"])
    if rest := run.text[len(run.name) :]:
        if rest not in _SUFFIXES:
            raise run.fail(f"unexpected {rest!r}")
        if ("preserves ports" in rest) != port_preserved or ("will hairpin" in rest) != hairpinning:
            raise run.fail("the trace's hairpin / preserver port flags contradict it")
    expected = code | (0 if hairpinning else 0x10) | (0x01 if port_preserved else 0)
    if run.returns != [expected] or (returncode is not None and returncode != expected & 0xFF):
        raise run.fail(f"return value {run.returns} / exit status {returncode} do not match {expected:#x}")
    return Verdict(
        STUN_CLIENT,
        nat=nat,
        mapping_possible=mapping_possible,
        filtering_possible=filtering_possible,
        hairpinning=hairpinning,
        port_preserved=port_preserved,
        summary=run.text,
    )
