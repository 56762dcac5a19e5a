"""How the CLI and the chat show the agent's state to people: one line per peer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from client.engine.routes import Route


def peer_line(peer: Mapping[str, Any]) -> str:
    """A peer's status as one human line: ``bob  198.18.0.12:40000  direct  23 ms  online (seen 2 s ago)``; a
    seed-era peer is marked ``seed-era, unauthenticated``."""
    parts = [f"{peer['id']:<12}", f"{peer.get('addr') or '-':<22}", f"{peer['path']:<8}"]
    if peer["path"] == Route.RELAY and peer.get("relay"):
        parts.append(f"via {peer['relay']}")
    if peer["path"] == Route.DIRECT and peer.get("time_to_direct_ms") is not None:
        parts.append(f"{peer['time_to_direct_ms']:.0f} ms")
    if peer.get("online") is not None:
        seen = peer.get("last_seen_s")
        presence = "online" if peer["online"] else "offline"
        parts.append(presence if seen is None else f"{presence} (seen {seen:.0f} s ago)")
    if peer.get("seed"):
        parts.append("seed-era, unauthenticated")
    if peer.get("reason"):
        parts.append(str(peer["reason"]))
    return "  ".join(parts).rstrip()


def print_json(obj: Any) -> None:
    """What every ``--json`` prints: one indented JSON document, non-ASCII kept as is."""
    print(json.dumps(obj, indent=2, ensure_ascii=False))
