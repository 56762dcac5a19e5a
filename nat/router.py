"""``nat run``: configure this container as a NAT router, report ready, wait for SIGTERM.

Configuration comes from the environment (all set by compose):

- ``NAT_WAN_SUBNET``, ``NAT_LAN_SUBNET``: IPv4 subnets that identify the WAN and LAN interfaces;
- ``NAT_PROFILE``: a name from ``nat.profiles.PROFILES`` (default ``cone``);
- ``NAT_UDP_TIMEOUT``: optional, seconds, overrides the profile's UDP mapping timeout;
- ``NAT_HAIRPIN``: optional, ``on`` or ``off``, overrides the profile's hairpinning;
- ``NAT_UDP_BLOCKED``: optional, ``on`` or ``off``, overrides whether UDP to and from the WAN is dropped
  (the ``udp-blocked`` profile turns it on);
- ``NAT_UDP_ALLOW``: optional, comma-separated WAN addresses that still exchange UDP with the LAN when UDP
  is blocked (the lab's TURN and signal servers); without them a blocked router passes no UDP at all;
- ``NAT_BLOCK``: optional, comma-separated WAN addresses whose inbound UDP is dropped from the start;
- ``NAT_CAPTURE``: optional, ``ring`` or ``full``: capture the WAN and LAN sides with tcpdump from boot
  (``nat.capture``);
- ``NAT_GATEWAY``: optional, an upstream router on the WAN subnet to send everything else to (a home NAT
  behind a carrier NAT); without it the router reaches only its own subnets, which is all a one-level lab
  needs;
- ``NAT_IMPAIR_UP``, ``NAT_IMPAIR_DOWN``: optional, the link's impairments per direction
  (``nat.impair.spec``: ``delay=40ms jitter=5ms loss=2%``, a preset, ``off``).

``1``/``0`` and ``true``/``false`` work wherever ``on``/``off`` do.

State for ``nat health`` / ``nat show`` and for scenario artifacts goes to the state directory
(``/run/natlab``): ``profile.json``, ``ruleset.nft`` (the exact applied text), ``impair.json`` (the
impairments in force), ``nat.pid``, ``impair-stats.json`` (the delay line's counters), and ``ready`` last.

Impairments: the kernel's part is applied after the NAT ruleset (``nat.impair.apply``), and the delay line
(``nat.impair.delayline``) runs in this process for as long as the router does. ``nat impair`` changes the
kernel's part itself, rewrites ``impair.json`` and sends SIGHUP: the delay line then takes its new settings
from the file (a file it cannot read is logged and the old settings stay).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import tenacity

from common.files import write_atomic
from nat import capture, conntrack, interfaces, nft
from nat.impair import control
from nat.impair.apply import ApplyError, apply_impairments
from nat.impair.delayline import DelayLines
from nat.impair.model import ImpairmentError, Impairments
from nat.impair.spec import parse_impairments_env
from nat.interfaces import Link
from nat.profiles import DEFAULT_PROFILE, Profile, ProfileError, get_profile, parse_switch, parse_udp_timeout
from nat.render import render
from nat.state import (
    IMPAIR_FILE,
    IMPAIR_STATS_FILE,
    PID_FILE,
    PROFILE_FILE,
    READY_FILE,
    RULESET_FILE,
    STATE_DIR,
)

log = logging.getLogger("nat")

T = TypeVar("T")

INTERFACE_WAIT = 10.0
"""Seconds to wait for Docker to attach both networks before giving up."""

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
RELOAD_SIGNAL = signal.SIGHUP
"""``nat impair`` rewrote ``impair.json``: the delay line takes the new settings."""
WAITED_SIGNALS = STOP_SIGNALS | {RELOAD_SIGNAL}


class ConfigError(ValueError):
    """The router's environment is wrong (missing or malformed variable): the operator's fault."""


@dataclass(frozen=True)
class RouterConfig:
    profile: Profile
    wan_subnet: ipaddress.IPv4Network
    lan_subnet: ipaddress.IPv4Network
    blocked: tuple[ipaddress.IPv4Address, ...] = ()
    udp_allowed: tuple[ipaddress.IPv4Address, ...] = ()
    gateway: ipaddress.IPv4Address | None = None
    impairments: Impairments = field(default_factory=Impairments)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RouterConfig:
        """Read the ``NAT_*`` variables; ``ConfigError`` names the one that is wrong."""
        timeout = _optional(env, "NAT_UDP_TIMEOUT", parse_udp_timeout)
        hairpinning = _optional(env, "NAT_HAIRPIN", parse_switch)
        udp_blocked = _optional(env, "NAT_UDP_BLOCKED", parse_switch)
        try:
            profile = get_profile(env.get("NAT_PROFILE", "").strip() or DEFAULT_PROFILE)
        except ProfileError as exc:
            raise ConfigError(f"NAT_PROFILE: {exc}") from None
        profile = profile.with_options(udp_timeout=timeout, hairpinning=hairpinning, udp_blocked=udp_blocked)
        wan, lan = _subnet(env, "NAT_WAN_SUBNET"), _subnet(env, "NAT_LAN_SUBNET")
        if wan.overlaps(lan):
            raise ConfigError(f"NAT_WAN_SUBNET {wan} and NAT_LAN_SUBNET {lan} overlap")
        gateways = _addresses(env, "NAT_GATEWAY")
        if len(gateways) > 1 or any(g not in wan for g in gateways):
            raise ConfigError(f"NAT_GATEWAY: expected one address in NAT_WAN_SUBNET {wan}, got {env['NAT_GATEWAY']!r}")
        blocked, allowed = _addresses(env, "NAT_BLOCK"), _addresses(env, "NAT_UDP_ALLOW")
        try:
            impairments = parse_impairments_env(env)
        except ImpairmentError as exc:  # its message names the variable
            raise ConfigError(str(exc)) from None
        return cls(profile, wan, lan, blocked, allowed, gateways[0] if gateways else None, impairments)


def _optional(env: Mapping[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    """``parse`` of the variable ``name``, ``None`` when it is unset or blank; ``ConfigError`` names it."""
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        return parse(text)
    except ProfileError as exc:
        raise ConfigError(f"{name}: {exc}") from None


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


class RouterSignals:
    """SIGTERM/SIGINT/SIGHUP turned into return values: enter early, ``wait`` once the router is up.

    Signals that arrive before the first ``wait`` are remembered in order; ``wait`` blocks the signals before
    it looks, and ``sigwait`` collects any that arrive after, so none is lost in between. Leaving the block
    restores the previous handlers and signal mask.
    """

    def __init__(self) -> None:
        self._early: list[int] = []
        self._previous: dict[int, Any] = {}
        self._mask: set[int | signal.Signals] | None = None

    def __enter__(self) -> RouterSignals:
        self._previous = {signum: signal.signal(signum, self._note) for signum in WAITED_SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._early.append(signum)

    def wait(self) -> int:
        """The next signal's number, waiting for one if none is pending."""
        if self._mask is None:
            self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_SIGNALS)
        if self._early:
            return self._early.pop(0)
        return signal.sigwait(WAITED_SIGNALS)


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
    """What ``profile.json`` holds: the profile's fields plus both links (the UDP allow-list, like the block
    list, lives in the ruleset, where ``nat show`` lists it)."""

    def link(item: Link) -> dict[str, str]:
        return {"ifname": item.ifname, "address": str(item.address.ip), "subnet": str(item.address.network)}

    return {**profile.as_dict(), "wan": link(wan), "lan": link(lan)}


def setup(config: RouterConfig, state_dir: Path) -> tuple[Link, Link, DelayLines]:
    """Everything ``nat run`` does before it reports ready, the delay line started last. Raises on the first
    failure."""
    (state_dir / READY_FILE).unlink(missing_ok=True)  # a restarted container must not look ready early
    wan, lan = find_links(config)
    for route in interfaces.delete_default_routes():
        log.info("deleted %s", route)
    if config.gateway is not None:
        log.info("added %s", interfaces.add_default_route(config.gateway))
    script = render(
        config.profile,
        wan.ifname,
        lan.ifname,
        config.lan_subnet,
        config.blocked,
        wan_address=wan.address.ip,
        udp_allowed=config.udp_allowed,
    )
    try:
        nft.apply(script)
    except nft.NftError:
        log.error("nft rejected this ruleset:\n%s", script)
        raise
    try:
        conntrack.flush()
    except conntrack.ConntrackError as exc:
        log.warning("could not flush conntrack (flows from before the ruleset may bypass NAT): %s", exc)
    apply_impairments(config.impairments, wan.ifname, lan.ifname)
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(state_dir / PROFILE_FILE, json.dumps(state_record(config.profile, wan, lan), indent=2))
    write_atomic(state_dir / RULESET_FILE, script)
    control.write_impairments(state_dir, config.impairments)
    lines = DelayLines(config.impairments, state_dir / IMPAIR_STATS_FILE)
    lines.start()
    try:
        write_atomic(state_dir / PID_FILE, f"{os.getpid()}\n")
        write_atomic(state_dir / READY_FILE, "")
    except OSError:
        lines.stop()
        raise
    return wan, lan, lines


def reload_impairments(configure: Callable[[Impairments], None], state_dir: Path) -> None:
    """SIGHUP: ``impair.json``'s settings go to ``configure`` (the delay line's); a file that cannot be read
    is logged and the old settings stay."""
    try:
        impairments = control.read_impairments(state_dir)
        if impairments is None:
            raise ImpairmentError(f"{state_dir / IMPAIR_FILE} does not exist")
    except ImpairmentError as exc:
        log.error("impairments not reloaded, the old ones stay: %s", exc)
        return
    configure(impairments)


def run(env: Mapping[str, str], state_dir: Path = STATE_DIR) -> int:
    """The router's main process. Exit status: 0 stopped by SIGTERM/SIGINT, 1 setup failed,
    2 bad configuration (unknown or unsupported profile, bad ``NAT_*`` variable). Errors are logged."""
    with RouterSignals() as signals:
        try:
            config = RouterConfig.from_env(env)
            wan, lan, lines = setup(config, state_dir)
        except (ConfigError, ProfileError) as exc:  # UnsupportedProfile is a ProfileError
            log.error("bad configuration: %s", exc)
            return 2
        except (interfaces.InterfaceNotFound, nft.NftError, ApplyError, OSError) as exc:
            log.error("router setup failed: %s", exc)
            return 1
        if (failed := capture.start_at_boot(env, state_dir)) is not None:  # NAT_CAPTURE=ring|full (nat/capture.py)
            (state_dir / READY_FILE).unlink(missing_ok=True)
            lines.stop()
            return failed
        log.info(
            "router ready: profile=%s wan=%s %s lan=%s %s",
            config.profile.name,
            wan.ifname,
            wan.address.ip,
            lan.ifname,
            lan.address.ip,
        )
        while (signum := signals.wait()) == RELOAD_SIGNAL:
            reload_impairments(lines.configure, state_dir)
    (state_dir / READY_FILE).unlink(missing_ok=True)
    log.info("router stopping on %s", signal.Signals(signum).name)
    lines.stop()
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return 0
