"""``nat`` subcommands: run, health, show, conntrack, block, unblock, impair, render, capture (``nat.capture_cli``).

Exit status: 0 success; 1 runtime failure (setup failed, unhealthy, a tool failed); 2 bad input
(command line, ``NAT_*`` environment, unknown or unsupported profile). Bad input never prints a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nat import capture_cli, conntrack, nft, state
from nat.behaviours import UDP_ALLOWED
from nat.impair import control
from nat.impair.apply import ApplyError, apply_impairments
from nat.impair.model import ImpairmentError, Impairments
from nat.impair.presets import PRESETS
from nat.impair.spec import DIRECTIONS, KEYS, parse_link
from nat.profiles import DEFAULT_PROFILE, PROFILES, ProfileError, get_profile, parse_switch
from nat.render import TABLE, render

HEALTH_NFT_TIMEOUT = 3.0

_NFT_LISTING_NOTE = "# (nft lists no ct timeout value equal to the kernel default: unreplied 30s for UDP)"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s nat: %(message)s")
    try:
        status: int = args.handler(args)
    except ProfileError as exc:
        _error(str(exc))
        return 2
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nat", description="natlab NAT router")
    parser.add_argument(
        "--state-dir", type=Path, default=state.STATE_DIR, help="where run leaves its state (%(default)s)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="configure this container as a NAT router and wait for SIGTERM")
    run.set_defaults(handler=_run)

    health = commands.add_parser("health", help="exit 0 iff the router is ready (Docker healthcheck)")
    health.set_defaults(handler=_health)

    show = commands.add_parser("show", help="profile, applied ruleset and UDP conntrack table")
    show.add_argument("--json", action="store_true", help="one JSON object instead of text")
    show.add_argument("--all", action="store_true", help="the whole nft ruleset, not only natlab's table")
    show.set_defaults(handler=_show)

    track = commands.add_parser("conntrack", help="UDP conntrack entries (the NAT mappings)")
    track.add_argument("--json", action="store_true", help="a JSON list instead of text")
    track.set_defaults(handler=_conntrack)

    blk = commands.add_parser("block", help="drop inbound UDP from these WAN addresses (a peer cut off)")
    blk.add_argument("addresses", nargs="+", type=_ipv4, help="IPv4 addresses")
    blk.set_defaults(handler=_block)

    unblk = commands.add_parser("unblock", help="let blocked addresses in again (all of them if none given)")
    unblk.add_argument("addresses", nargs="*", type=_ipv4, help="IPv4 addresses")
    unblk.set_defaults(handler=_unblock)

    imp = commands.add_parser(
        "impair",
        help="impair the links: delay, jitter, loss, duplication, rate (no SPEC: print what is in force)",
        description="Set this router's impairments, per direction: up (LAN -> WAN), down (WAN -> LAN) or both "
        f"(the default). SPEC is key=value tokens (keys: {', '.join(KEYS)}), a preset "
        f"({', '.join(sorted(PRESETS))}) or off; later tokens override earlier ones. "
        "`nat impair clear` clears both. Examples: `nat impair up delay=80ms loss=2%`, `nat impair lte`.",
    )
    imp.add_argument("words", nargs="*", metavar="[up|down|both] SPEC", help="direction, then the settings")
    imp.add_argument("--json", action="store_true", help="print what is in force as one JSON object")
    imp.set_defaults(handler=_impair)

    rend = commands.add_parser("render", help="print the ruleset a profile renders to, apply nothing")
    rend.add_argument("profile", nargs="?", default=DEFAULT_PROFILE, help=", ".join(sorted(PROFILES)))
    rend.add_argument("--wan", default="eth0", help="WAN interface name (%(default)s)")
    rend.add_argument("--lan", default="eth1", help="LAN interface name (%(default)s)")
    rend.add_argument("--lan-subnet", default="198.18.1.0/24", help="LAN subnet (%(default)s)")
    rend.add_argument("--wan-address", type=_ipv4, default="198.18.0.11", help="the router's WAN address (%(default)s)")
    rend.add_argument("--udp-timeout", type=int, help="override the profile's UDP timeout (seconds)")
    rend.add_argument("--hairpin", type=parse_switch, help="override the profile's hairpinning (on/off)")
    rend.add_argument("--udp-blocked", type=parse_switch, help="override whether UDP to the WAN is blocked (on/off)")
    rend.add_argument("--udp-allow", type=_ipv4, nargs="*", default=[], help="WAN addresses exempt from --udp-blocked")
    rend.set_defaults(handler=_render)

    capture_cli.add_parser(commands)
    return parser


def _run(args: argparse.Namespace) -> int:
    from nat import router  # pyroute2 and tenacity: only the router's main process needs them

    return router.run(os.environ, args.state_dir)


def _health(args: argparse.Namespace) -> int:
    ready = args.state_dir / state.READY_FILE
    if not ready.exists():
        _error(f"not ready: {ready} does not exist")
        return 1
    try:
        nft.list_table(timeout=HEALTH_NFT_TIMEOUT)
    except nft.NftError as exc:
        _error(f"unhealthy: {exc}")
        return 1
    return 0


@dataclass
class _ShowReport:
    profile: dict[str, Any] | None = None
    impairments: Impairments | None = None
    impair_stats: Any = None
    ruleset: str | None = None
    entries: list[conntrack.Entry] | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        entries = None if self.entries is None else [entry.as_dict() for entry in self.entries]
        return {
            "profile": self.profile,
            "impairments": control.describe(self.impairments, self.impair_stats),
            "ruleset": self.ruleset,
            "conntrack": entries,
            "errors": self.errors,
        }


def _show(args: argparse.Namespace) -> int:
    """Gather what can be gathered: this runs when a scenario has failed, so one broken part must not
    hide the others. Exit status 1 if any part is missing."""
    report = _ShowReport()
    profile_file = args.state_dir / state.PROFILE_FILE
    try:
        report.profile = json.loads(profile_file.read_text())
    except (OSError, ValueError) as exc:
        report.errors.append(f"no router state in {profile_file}: {exc}")
    try:
        report.impairments = control.read_impairments(args.state_dir)
    except ImpairmentError as exc:
        report.errors.append(str(exc))
    report.impair_stats = control.read_stats(args.state_dir)
    try:
        report.ruleset = nft.list_ruleset() if args.all else nft.list_table()
    except nft.NftError as exc:
        report.errors.append(str(exc))
    try:
        report.entries = conntrack.list_entries()
    except conntrack.ConntrackError as exc:
        report.errors.append(str(exc))
    print(json.dumps(report.as_dict(), indent=2) if args.json else _show_text(report, args.all))
    return 1 if report.errors else 0


def _show_text(report: _ShowReport, whole_ruleset: bool) -> str:
    lines = []
    if report.profile is not None:
        lines += [f"{key:<12}{value}" for key, value in _profile_rows(report.profile)]
        lines += control.describe_text(report.impairments, report.impair_stats)
    if report.ruleset is not None:
        source = "nft list ruleset" if whole_ruleset else f"nft list table {TABLE}"
        lines += ["", f"# {source}", _NFT_LISTING_NOTE, report.ruleset.rstrip()]
    if report.entries is not None:
        lines += ["", f"# conntrack -L -p udp ({len(report.entries)} entries)"]
        lines += [entry.describe() for entry in report.entries] or ["(none)"]
    lines += [f"error: {error}" for error in report.errors]
    return "\n".join(lines)


def _profile_rows(profile: dict[str, Any]) -> list[tuple[str, str]]:
    wan, lan = profile["wan"], profile["lan"]
    udp = f"blocked to and from the WAN but for set {UDP_ALLOWED} (below)" if profile["udp_blocked"] else "open"
    return [
        ("profile", profile["name"]),
        ("summary", profile["summary"]),
        ("mapping", profile["mapping"]),
        ("filtering", profile["filtering"]),
        ("ports", profile["ports"]),
        ("hairpin", "on" if profile["hairpinning"] else "off"),
        ("udp timeout", f"{profile['udp_timeout']}s"),
        ("udp", udp),
        ("wan", f"{wan['ifname']} {wan['address']} ({wan['subnet']})"),
        ("lan", f"{lan['ifname']} {lan['address']} ({lan['subnet']})"),
    ]


def _conntrack(args: argparse.Namespace) -> int:
    try:
        entries = conntrack.list_entries()
    except conntrack.ConntrackError as exc:
        _error(str(exc))
        return 1
    if args.json:
        print(json.dumps([entry.as_dict() for entry in entries], indent=2))
    else:
        print("\n".join(entry.describe() for entry in entries) or "(no UDP conntrack entries)")
    return 0


def _ipv4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def _block(args: argparse.Namespace) -> int:
    return _edit_block_list(nft.block, args.addresses)


def _unblock(args: argparse.Namespace) -> int:
    return _edit_block_list(nft.unblock, args.addresses)


def _edit_block_list(edit: Callable[[list[ipaddress.IPv4Address]], None], addresses: list[Any]) -> int:
    try:
        edit(addresses)
    except nft.NftError as exc:
        _error(str(exc))
        return 1
    return 0


def _impair(args: argparse.Namespace) -> int:
    """Validate, apply the kernel side, record, tell ``nat run`` (its delay line), print what is in force."""
    words = list(args.words)
    if not words:
        return _print_impairments(args)
    targets: tuple[str, ...] = DIRECTIONS
    if words[0] in (*DIRECTIONS, "both"):
        named = words.pop(0)
        targets = DIRECTIONS if named == "both" else (named,)
        if not words:
            _error(f"impair {args.words[0]}: expected settings after the direction (key=value, a preset, or off)")
            return 2
    try:
        new = {direction: parse_link(" ".join(words), direction) for direction in targets}
    except ImpairmentError as exc:
        _error(f"impair: {exc}")
        return 2
    try:
        wan, lan = control.router_links(args.state_dir)
        pid = control.router_pid(args.state_dir)
        current = control.read_impairments(args.state_dir) or Impairments()
        impairments = Impairments(new.get("up", current.up), new.get("down", current.down))
        apply_impairments(impairments, wan, lan)
        control.write_impairments(args.state_dir, impairments)
        control.notify_router(pid)
    except (control.RouterNotRunning, ImpairmentError, ApplyError, OSError) as exc:
        _error(f"impair: {exc}")
        return 1
    return _print_impairments(args)


def _print_impairments(args: argparse.Namespace) -> int:
    try:
        impairments = control.read_impairments(args.state_dir)
    except ImpairmentError as exc:
        _error(f"impair: {exc}")
        return 1
    stats = control.read_stats(args.state_dir)
    if args.json:
        print(json.dumps(control.describe(impairments, stats), indent=2))
    else:
        print("\n".join(control.describe_text(impairments, stats)))
    return 0


def _render(args: argparse.Namespace) -> int:
    profile = get_profile(args.profile).with_options(
        udp_timeout=args.udp_timeout, hairpinning=args.hairpin, udp_blocked=args.udp_blocked
    )
    try:
        script = render(
            profile, args.wan, args.lan, args.lan_subnet, wan_address=args.wan_address, udp_allowed=args.udp_allow
        )
    except ValueError as exc:  # ProfileError included: also the caller's input
        _error(str(exc))
        return 2
    sys.stdout.write(script)
    return 0


def _error(message: str) -> None:
    print(f"nat: {message}", file=sys.stderr)
