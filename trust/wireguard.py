"""WireGuard's keys and configuration, from a host's identity (pure).

WireGuard's keys ARE the hosts' identity X25519 keys (:class:`trust.keys.Identity`'s ``box`` pair): a host's
WireGuard public key is ``base64(its registry "box" key)``, so the key the signal server's punch carries is
already the peer's WireGuard key and no key is typed by hand. Nothing else derives a key: this module only
re-encodes them.

The agent configures wireguard-go through its UAPI socket (``/var/run/wireguard/<interface>.sock``), whose
text protocol (wireguard.com/xplatform) takes keys in lowercase hex: ``set=1`` then ``key=value`` lines and an
empty line; the answer ends with ``errno=<n>`` and an empty line. ``get=1`` answers the device's and every
peer's state in the same form, which :func:`parse_get` reads. ``wg show natlab0`` (wireguard-tools) reads
the same socket, for people.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass

from trust.keys import KEY_SIZE, Identity, PublicKeys


class UapiError(RuntimeError):
    """wireguard-go refused a request (``errno`` not 0) or answered something that is not UAPI."""


def private_key(identity: Identity) -> bytes:
    """The host's WireGuard private key: its identity's X25519 secret."""
    return identity.tunnel_secret()


def public_key(keys: PublicKeys) -> bytes:
    """A host's WireGuard public key: its X25519 ("box") public key."""
    return keys.box


def wg_key(key: bytes) -> str:
    """A key as ``wg`` and WireGuard's configuration files write it: standard base64, padded."""
    return base64.b64encode(key).decode("ascii")


def uapi_key(key: bytes) -> str:
    """A key as the UAPI protocol writes it: 64 lowercase hex digits."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"WireGuard key: expected {KEY_SIZE} bytes, got {len(key)}")
    return key.hex()


def set_device(private: bytes, listen_port: int) -> str:
    """The UAPI request that sets the interface's private key and listen port (and drops stale peers)."""
    return f"set=1\nprivate_key={uapi_key(private)}\nlisten_port={listen_port}\nreplace_peers=true\n\n"


def set_peer(
    public: bytes, endpoint: tuple[str, int], overlay: ipaddress.IPv4Address, keepalive: int | None = 25
) -> str:
    """The UAPI request that adds (or updates) one peer: its endpoint (the agent's loopback socket for it),
    its overlay address as its only allowed IP (a /32), and a persistent keepalive in seconds."""
    lines = [
        "set=1",
        f"public_key={uapi_key(public)}",
        f"endpoint={endpoint[0]}:{endpoint[1]}",
        "replace_allowed_ips=true",
        f"allowed_ip={overlay}/32",
    ]
    if keepalive is not None:
        lines.append(f"persistent_keepalive_interval={keepalive}")
    return "\n".join(lines) + "\n\n"


def set_endpoint(public: bytes, endpoint: tuple[str, int]) -> str:
    """The UAPI request that moves an existing peer's endpoint (``update_only``: it never adds a peer, so a
    move that comes after the peer's removal changes nothing)."""
    return f"set=1\npublic_key={uapi_key(public)}\nupdate_only=true\nendpoint={endpoint[0]}:{endpoint[1]}\n\n"


def remove_peer(public: bytes) -> str:
    """The UAPI request that removes one peer."""
    return f"set=1\npublic_key={uapi_key(public)}\nremove=true\n\n"


GET = "get=1\n\n"
"""The UAPI request for the device's state."""


@dataclass(frozen=True)
class PeerState:
    """One peer as wireguard-go reports it: the latest handshake (Unix seconds, 0: none yet) and bytes."""

    public: bytes
    endpoint: str | None
    last_handshake: float
    rx_bytes: int
    tx_bytes: int


def check_errno(answer: str) -> None:
    """:class:`UapiError` unless ``answer`` (a ``set`` or ``get`` answer) ends in ``errno=0``."""
    lines = [line for line in answer.splitlines() if line]
    if not lines or not lines[-1].startswith("errno="):
        raise UapiError(f"not a UAPI answer: {answer[:80]!r}")
    if lines[-1] != "errno=0":
        raise UapiError(f"wireguard-go refused the request: {lines[-1]}")


def parse_get(answer: str) -> dict[bytes, PeerState]:
    """The peers of a ``get=1`` answer, by public key. :class:`UapiError` for a refused or garbled one."""
    check_errno(answer)
    peers: dict[bytes, PeerState] = {}
    current: dict[str, str] | None = None

    def flush() -> None:
        if current is not None:
            public = bytes.fromhex(current["public_key"])
            seconds = int(current.get("last_handshake_time_sec", "0"))
            nanoseconds = int(current.get("last_handshake_time_nsec", "0"))
            peers[public] = PeerState(
                public,
                current.get("endpoint"),
                seconds + nanoseconds / 1e9,
                int(current.get("rx_bytes", "0")),
                int(current.get("tx_bytes", "0")),
            )

    try:
        for line in answer.splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key == "public_key":
                flush()
                current = {}
            if current is not None:
                current[key] = value
        flush()
    except (KeyError, ValueError) as exc:
        raise UapiError(f"garbled UAPI answer: {exc}") from None
    return peers
