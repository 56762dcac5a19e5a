"""The text form of one direction's impairments: ``delay=40ms jitter=5ms loss=2%``, a preset name, or ``off``.

Tokens are read left to right and later ones override earlier ones, so ``lte loss=5%`` is the ``lte``
preset with 5% loss, and ``delay=80ms off`` is nothing at all. Values are held at the resolution the text
and the kernel share: durations in whole microseconds, shares in parts per million (the nft rules' unit),
rates in bits per second. :func:`format_link` writes the canonical text back, and
``parse_link(format_link(x), d) == x`` for every setting the text can express.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from nat.impair.model import ImpairmentError, Impairments, LinkImpairment
from nat.impair.presets import PRESETS

DIRECTIONS = ("up", "down")
CLEAR_WORDS = ("off", "none", "clear")
ENV_UP, ENV_DOWN = "NAT_IMPAIR_UP", "NAT_IMPAIR_DOWN"

PPM = 1_000_000
"""Shares are whole parts per million: the nft loss and duplicate rules draw ``numgen random mod 1000000``."""
MAX_DURATION_US = 10_000_000
MIN_RATE_BPS, MAX_RATE_BPS = 8_000, 10_000_000_000
MAX_LIMIT = 100_000
MAX_BURST = 1000.0

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(_NUMBER + r"(us|ms|s)?")
_PERCENT = re.compile(_NUMBER + r"%")
_RATE = re.compile(_NUMBER + r"(bit|kbit|mbit|gbit)", re.IGNORECASE)
_BYTE_RATE = re.compile(_NUMBER + r"([kmgt]?bps|[kmgt]?b|[kmgt]i?b/s)", re.IGNORECASE)
_DURATION_US = {"us": 1, "ms": 1_000, "s": 1_000_000, None: 1_000}
_RATE_BPS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}
_DURATION_HINT = "a duration such as 40ms, 0.5s or 500us (a bare number is ms)"


def _duration_ms(value: str) -> float:
    match = _DURATION.fullmatch(value)
    if not match:
        raise ValueError(f"expected {_DURATION_HINT}")
    micros = round(float(match[1]) * _DURATION_US[match[2]])
    if micros > MAX_DURATION_US:
        raise ValueError("at most 10s")
    return micros / 1000


def _share(value: str) -> float:
    match = _PERCENT.fullmatch(value)
    if not match:
        raise ValueError("expected a percentage with %, such as 2% or 0.5%")
    percent = float(match[1])
    if percent > 100:
        raise ValueError("at most 100%")
    ppm = round(percent * PPM / 100)
    if percent and not ppm:
        raise ValueError("finer than 0.0001%, the smallest share the kernel's rules tell apart")
    return ppm / PPM


def _burst(value: str) -> float:
    try:
        burst = round(float(value), 3)
    except ValueError:
        raise ValueError("expected the mean loss burst length in packets, a number such as 3") from None
    if not 1 <= burst <= MAX_BURST:
        raise ValueError(f"expected a mean burst length from 1 to {MAX_BURST:g} packets")
    return burst


def _rate_bps(value: str) -> int:
    match = _RATE.fullmatch(value)
    if not match:
        if value == "0":
            return 0
        if _BYTE_RATE.fullmatch(value):
            raise ValueError(
                "byte units are ambiguous (tc reads mbps as megabytes per second); write bits: bit, kbit, "
                "mbit or gbit, such as 10mbit"
            )
        raise ValueError("expected a rate in bits with a unit: bit, kbit, mbit or gbit, such as 10mbit (0: unlimited)")
    bps = round(float(match[1]) * _RATE_BPS[match[2].lower()])
    if not MIN_RATE_BPS <= bps <= MAX_RATE_BPS:
        raise ValueError("expected from 8kbit to 10gbit (0: unlimited)")
    return bps


def _limit(value: str) -> int:
    if not value.isdigit():
        raise ValueError("expected a whole number of packets (0: the default)")
    if int(value) > MAX_LIMIT:
        raise ValueError(f"at most {MAX_LIMIT} packets")
    return int(value)


@dataclass(frozen=True)
class _Key:
    field: str
    parse: Callable[[str], Any]
    format: Callable[[Any], str]


def _format_duration(ms: float) -> str:
    micros = round(ms * 1000)
    return f"{micros // 1000}ms" if micros % 1000 == 0 else f"{micros}us"


def _format_share(share: float) -> str:
    whole, fraction = divmod(round(share * PPM), PPM // 100)
    return f"{whole}.{fraction:04d}".rstrip("0").rstrip(".") + "%"


def _format_rate(bps: int) -> str:
    unit = next(unit for unit, scale in reversed(_RATE_BPS.items()) if bps % scale == 0)
    return f"{bps // _RATE_BPS[unit]}{unit}"


def _format_burst(burst: float) -> str:
    return f"{burst:.3f}".rstrip("0").rstrip(".")


KEYS: dict[str, _Key] = {
    "delay": _Key("delay_ms", _duration_ms, _format_duration),
    "jitter": _Key("jitter_ms", _duration_ms, _format_duration),
    "reorder": _Key("reorder", _share, _format_share),
    "loss": _Key("loss", _share, _format_share),
    "burst": _Key("loss_burst", _burst, _format_burst),
    "duplicate": _Key("duplicate", _share, _format_share),
    "rate": _Key("rate_bps", _rate_bps, _format_rate),
    "limit": _Key("limit", _limit, str),
}
"""Every ``key=value`` the text knows, in the canonical order :func:`format_link` writes them."""

_WORDS = f"key=value (key {', '.join(KEYS)}), a preset ({', '.join(sorted(PRESETS))}) or off"


def parse_link(text: str, direction: str) -> LinkImpairment:
    """One direction's impairments from ``text`` (``up``: a preset's up half, ``down``: its down half).

    ``ImpairmentError`` names the token that is wrong and what was expected there.
    """
    if direction not in DIRECTIONS:
        raise ImpairmentError(f"direction must be up or down, got {direction!r}")
    link = LinkImpairment()
    for token in text.split():
        key, equals, value = token.partition("=")
        if token.lower() in CLEAR_WORDS:
            link = LinkImpairment()
        elif token.lower() in PRESETS:
            link = PRESETS[token.lower()].link(direction)
        elif not equals:
            raise ImpairmentError(f"{token!r}: expected {_WORDS}")
        elif key.lower() not in KEYS:
            raise ImpairmentError(f"{token!r}: unknown key {key!r} (expected {', '.join(KEYS)})")
        else:
            link = _set(link, token, KEYS[key.lower()], value)
    if link.loss_burst and not link.loss:
        raise ImpairmentError(f"burst={_format_burst(link.loss_burst)} needs loss (e.g. loss=2% burst=3)")
    return link


def _set(link: LinkImpairment, token: str, key: _Key, value: str) -> LinkImpairment:
    try:
        return replace(link, **{key.field: key.parse(value)})
    except ValueError as exc:  # ImpairmentError included: the model's own checks across fields
        raise ImpairmentError(f"{token!r}: {exc}") from None


def format_link(link: LinkImpairment) -> str:
    """The canonical text of ``link``: its non-zero settings in :data:`KEYS` order, or ``off``."""
    words = [f"{name}={key.format(getattr(link, key.field))}" for name, key in KEYS.items() if getattr(link, key.field)]
    return " ".join(words) or "off"


def parse_impairments_env(env: Mapping[str, str]) -> Impairments:
    """A router's impairments from ``NAT_IMPAIR_UP`` and ``NAT_IMPAIR_DOWN`` (unset or blank: off).

    ``ImpairmentError`` names the variable and the token. (Compose resolves the unsuffixed ``NAT_A_IMPAIR``
    into both before the router sees them.)
    """
    links = []
    for name, direction in ((ENV_UP, "up"), (ENV_DOWN, "down")):
        try:
            links.append(parse_link(env.get(name, ""), direction))
        except ImpairmentError as exc:
            raise ImpairmentError(f"{name}: {exc}") from None
    return Impairments(*links)
