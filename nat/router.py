"""``nat run``: configure this container as a NAT router, report ready, wait for SIGTERM.

Configuration comes from the environment (all set by compose):

- ``NAT_WAN_SUBNET``, ``NAT_LAN_SUBNET``: IPv4 subnets that identify the WAN and LAN interfaces;
- ``NAT_PROFILE``: a name from ``nat.profiles.PROFILES`` (default ``cone``);
- ``NAT_UDP_TIMEOUT``: optional, seconds, overrides the profile's UDP mapping timeout;
- ``NAT_BLOCK``: optional, comma-separated WAN addresses whose inbound UDP is dropped from the start.

State for ``nat health`` / ``nat show`` and for scenario artifacts goes to the state directory
(``/run/natlab``): ``profile.json``, ``ruleset.nft`` (the exact applied text), and ``ready`` last.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import tenacity

from nat import conntrack, interfaces, nft
from nat.interfaces import Link
from nat.profiles import DEFAULT_PROFILE, Profile, ProfileError, get_profile, parse_udp_timeout
from nat.render import render
from nat.state import PROFILE_FILE, READY_FILE, RULESET_FILE, STATE_DIR, write_atomically

log = logging.getLogger("nat")

INTERFACE_WAIT = 10.0
"""Seconds to wait for Docker to attach both networks before giving up."""

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


class ConfigError(ValueError):
    """The router's environment is wrong (missing or malformed variable): the operator's fault."""


@dataclass(frozen=True)
class RouterConfig:
    profile: Profile
    wan_subnet: ipaddress.IPv4Network
    lan_subnet: ipaddress.IPv4Network
    blocked: tuple[ipaddress.IPv4Address, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RouterConfig:
        """Read the ``NAT_*`` variables; ``ConfigError`` names the one that is wrong."""
        timeout_text = env.get("NAT_UDP_TIMEOUT", "").strip()
        try:
            timeout = parse_udp_timeout(timeout_text) if timeout_text else None
        except ProfileError as exc:
            raise ConfigError(f"NAT_UDP_TIMEOUT: {exc}") from None
        try:
            profile = get_profile(env.get("NAT_PROFILE", "").strip() or DEFAULT_PROFILE, timeout)
        except ProfileError as exc:
            raise ConfigError(f"NAT_PROFILE: {exc}") from None
        wan, lan = _subnet(env, "NAT_WAN_SUBNET"), _subnet(env, "NAT_LAN_SUBNET")
        if wan.overlaps(lan):
            raise ConfigError(f"NAT_WAN_SUBNET {wan} and NAT_LAN_SUBNET {lan} overlap")
        return cls(profile, wan, lan, _addresses(env, "NAT_BLOCK"))


def _addresses(env: Mapping[str, str], name: str) -> tuple[ipaddress.IPv4Address, ...]:
    items = [item.strip() for item in env.get(name, "").split(",") if item.strip()]
    try:
        return tuple(ipaddress.IPv4Address(item) for item in items)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc} (expected comma-separated IPv4 addresses)") from None


def _subnet(env: Mapping[str, str], name: str) -> ipaddress.IPv4Network:
    text = env.get(name, "").strip()
    if not text:
        raise ConfigError(f"{name} is not set (expected an IPv4 subnet such as 198.18.0.0/24)")
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an IPv4 subnet such as 198.18.0.0/24") from None


class StopSignals:
    """SIGTERM/SIGINT turned into a return value: enter early, ``wait`` once the router is up.

    A signal that arrives before ``wait`` is remembered; ``wait`` blocks the signals before it checks, and
    ``sigwait`` collects any that arrive after, so none is lost in between. Leaving the block restores the
    previous handlers and signal mask.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._mask: set[int | signal.Signals] | None = None

    def __enter__(self) -> StopSignals:
        self._previous = {signum: signal.signal(signum, self._note) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def wait(self) -> int:
        """The stop signal's number, waiting for one if none has arrived yet."""
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        if self.received is None:
            self.received = signal.sigwait(STOP_SIGNALS)
        return self.received


def find_links(config: RouterConfig) -> tuple[Link, Link]:
    """WAN and LAN links by subnet, waiting briefly in case Docker is still attaching networks."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(interfaces.InterfaceNotFound),
        stop=tenacity.stop_after_delay(INTERFACE_WAIT),
        wait=tenacity.wait_fixed(0.2),
        reraise=True,
    )
    return retrying(lambda: interfaces.pick_wan_lan(interfaces.ipv4_links(), config.wan_subnet, config.lan_subnet))


def state_record(profile: Profile, wan: Link, lan: Link) -> dict[str, Any]:
    """What ``profile.json`` holds: the profile's fields plus both links."""

    def link(item: Link) -> dict[str, str]:
        return {"ifname": item.ifname, "address": str(item.address.ip), "subnet": str(item.address.network)}

    return {**profile.as_dict(), "wan": link(wan), "lan": link(lan)}


def setup(config: RouterConfig, state_dir: Path) -> tuple[Link, Link]:
    """Everything ``nat run`` does before it reports ready. Raises on the first failure."""
    (state_dir / READY_FILE).unlink(missing_ok=True)  # a restarted container must not look ready early
    wan, lan = find_links(config)
    for route in interfaces.delete_default_routes():
        log.info("deleted %s", route)
    script = render(config.profile, wan.ifname, lan.ifname, config.lan_subnet, config.blocked)
    try:
        nft.apply(script)
    except nft.NftError:
        log.error("nft rejected this ruleset:\n%s", script)
        raise
    try:
        conntrack.flush()
    except conntrack.ConntrackError as exc:
        log.warning("could not flush conntrack (flows from before the ruleset may bypass NAT): %s", exc)
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(state_dir / PROFILE_FILE, json.dumps(state_record(config.profile, wan, lan), indent=2))
    write_atomically(state_dir / RULESET_FILE, script)
    write_atomically(state_dir / READY_FILE, "")
    return wan, lan


def run(env: Mapping[str, str], state_dir: Path = STATE_DIR) -> int:
    """The router's main process. Exit status: 0 stopped by SIGTERM/SIGINT, 1 setup failed,
    2 bad configuration (unknown or unsupported profile, bad ``NAT_*`` variable). Errors are logged."""
    with StopSignals() as stop:
        try:
            config = RouterConfig.from_env(env)
            wan, lan = setup(config, state_dir)
        except (ConfigError, ProfileError) as exc:  # UnsupportedProfile is a ProfileError
            log.error("bad configuration: %s", exc)
            return 2
        except (interfaces.InterfaceNotFound, nft.NftError, OSError) as exc:
            log.error("router setup failed: %s", exc)
            return 1
        log.info(
            "router ready: profile=%s wan=%s %s lan=%s %s",
            config.profile.name,
            wan.ifname,
            wan.address.ip,
            lan.ifname,
            lan.address.ip,
        )
        signum = stop.wait()
    (state_dir / READY_FILE).unlink(missing_ok=True)
    log.info("router stopping on %s", signal.Signals(signum).name)
    return 0
