"""Steps on the WireGuard tunnel shared by its scenarios and the bench: a host's tunnel status for a peer, and
waiting for WireGuard's handshake over a path."""

from __future__ import annotations

from typing import Any

from scenarios.harness import Lab

HANDSHAKE_TIMEOUT_S = 40


def tunnel_peer(lab: Lab, host: str, peer: str) -> dict[str, Any] | None:
    status = lab.json(host, "client", "tunnel", "status", "--json")
    return next((p for p in status["peers"] if p["id"] == peer), None)


def handshaken(lab: Lab, host: str, peer: str, path: str | None = None) -> dict[str, Any]:
    """Wait until WireGuard on ``host`` has completed a handshake with ``peer`` over a path (``path`` if
    given); the peer's tunnel status."""

    def ready() -> dict[str, Any] | None:
        found = tunnel_peer(lab, host, peer)
        if found is None or not found["latest_handshake"] or found["path"] == "none":
            return None
        return found if path is None or found["path"] == path else None

    return lab.wait_for(
        ready,
        timeout=HANDSHAKE_TIMEOUT_S,
        what=f"a WireGuard handshake between {host} and {peer} over {path or 'a path'}",
    )
