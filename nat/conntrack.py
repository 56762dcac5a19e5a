"""The router's conntrack table: parse ``conntrack -L -o xml`` (pure) and run it.

Each entry is one NAT mapping: ``orig`` is the flow as the LAN host sent it, ``reply`` is what the remote
side answers to, so ``reply.dst:reply.dport`` is the external (mapped) address and port.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from nat.tools import run_tool

TIMEOUT = 10.0


class ConntrackError(RuntimeError):
    """``conntrack`` failed, is missing, or printed something that is not its XML format."""


@dataclass(frozen=True)
class Endpoints:
    """One direction of a flow. Ports are ``None`` for protocols without them (ICMP)."""

    src: str
    sport: int | None
    dst: str
    dport: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"src": self.src, "sport": self.sport, "dst": self.dst, "dport": self.dport}


@dataclass(frozen=True)
class Entry:
    """One conntrack entry. ``state`` is the protocol state (TCP has one, UDP none); ``flags`` are
    conntrack's status words such as ``UNREPLIED`` and ``ASSURED``; ``timeout`` is seconds left."""

    proto: str
    orig: Endpoints
    reply: Endpoints
    state: str | None
    flags: tuple[str, ...]
    timeout: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "orig": self.orig.as_dict(),
            "reply": self.reply.as_dict(),
            "state": self.state,
            "flags": list(self.flags),
            "timeout": self.timeout,
        }

    def describe(self) -> str:
        """``udp 198.18.1.2:40000 -> 198.18.0.3:5000 via 198.18.0.11:40000 [ASSURED] 27s``."""
        o, r = self.orig, self.reply
        parts = [
            self.proto,
            f"{_endpoint(o.src, o.sport)} -> {_endpoint(o.dst, o.dport)}",
            f"via {_endpoint(r.dst, r.dport)}",
        ]
        if self.state:
            parts.append(self.state)
        parts.extend(f"[{flag}]" for flag in self.flags)
        if self.timeout is not None:
            parts.append(f"{self.timeout}s")
        return " ".join(parts)


def parse_xml(text: str) -> list[Entry]:
    """Entries from ``conntrack -L -o xml`` output. An empty table prints nothing at all: that is ``[]``."""
    if not text.strip():
        return []
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ConntrackError(f"conntrack printed malformed XML: {exc}") from None
    if root.tag != "conntrack":
        raise ConntrackError(f"conntrack XML has root <{root.tag}>, expected <conntrack>")
    return [_parse_flow(flow) for flow in root.iter("flow")]


def list_entries(proto: str = "udp") -> list[Entry]:
    """The live conntrack table for ``proto`` in this netns (needs CAP_NET_ADMIN)."""
    return parse_xml(_run_conntrack("-L", "-p", proto, "-o", "xml"))


def flush() -> None:
    """Forget every tracked flow in this netns: entries made before the ruleset was applied were never NATed
    nor filtered, and would keep that for as long as traffic keeps them alive."""
    _run_conntrack("-F")


def _run_conntrack(*args: str) -> str:
    return run_tool(["conntrack", *args], ConntrackError, "conntrack", TIMEOUT)


def _parse_flow(flow: ET.Element) -> Entry:
    metas = {meta.get("direction"): meta for meta in flow.findall("meta")}
    try:
        orig, reply = metas["original"], metas["reply"]
    except KeyError as missing:
        raise ConntrackError(f"conntrack flow without a {missing} direction") from None
    independent = metas.get("independent", ET.Element("meta"))
    layer4 = _child(orig, "layer4")
    # Flags are empty elements (<assured/>, <unreplied/>); everything else there carries a value.
    flags = tuple(el.tag.upper() for el in independent if len(el) == 0 and not (el.text or "").strip())
    return Entry(
        proto=layer4.get("protoname") or layer4.get("protonum") or "unknown",
        orig=_parse_direction(orig),
        reply=_parse_direction(reply),
        state=independent.findtext("state"),
        flags=flags,
        timeout=_optional_int(independent.findtext("timeout"), "timeout"),
    )


def _parse_direction(meta: ET.Element) -> Endpoints:
    layer3, layer4 = _child(meta, "layer3"), _child(meta, "layer4")
    return Endpoints(
        src=_text(layer3, "src"),
        sport=_optional_int(layer4.findtext("sport"), "sport"),
        dst=_text(layer3, "dst"),
        dport=_optional_int(layer4.findtext("dport"), "dport"),
    )


def _child(parent: ET.Element, tag: str) -> ET.Element:
    child = parent.find(tag)
    if child is None:
        raise ConntrackError(f"conntrack flow has no <{tag}> in its {parent.get('direction')} direction")
    return child


def _text(parent: ET.Element, tag: str) -> str:
    text = parent.findtext(tag)
    if not text:
        raise ConntrackError(f"conntrack flow has no <{tag}>")
    return text


def _optional_int(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConntrackError(f"conntrack flow has a non-numeric {what}: {text!r}") from None


def _endpoint(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"
