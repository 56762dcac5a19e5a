"""Placeholder for slice A's text form: only what ``nat run`` needs to read its impairments from the environment.

(Branch impair-b: slice A's ``nat/impair/spec.py`` replaces this file at merge; ``parse_impairments_env`` keeps
its name and meaning. This one reads ``key=value`` tokens for the settings the delay line does.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from nat.impair.model import ImpairmentError, Impairments, LinkImpairment

ENV_UP, ENV_DOWN = "NAT_IMPAIR_UP", "NAT_IMPAIR_DOWN"


def _duration_ms(text: str) -> float:
    for suffix, scale in (("ms", 1.0), ("us", 0.001), ("s", 1000.0)):
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * scale
    return float(text)


def _share(text: str) -> float:
    if not text.endswith("%"):
        raise ValueError("a share needs %")
    return float(text.removesuffix("%")) / 100


_KEYS: dict[str, tuple[str, Callable[[str], float]]] = {
    "delay": ("delay_ms", _duration_ms),
    "jitter": ("jitter_ms", _duration_ms),
    "reorder": ("reorder", _share),
    "loss": ("loss", _share),
    "burst": ("loss_burst", float),
    "limit": ("limit", int),
}


def parse_link(text: str) -> LinkImpairment:
    fields: dict[str, float | int] = {}
    for token in text.split():
        if token in ("off", "none", "clear"):
            fields.clear()
            continue
        key, _, value = token.partition("=")
        if key not in _KEYS:
            raise ImpairmentError(f"{token!r}: expected key=value with key one of {', '.join(_KEYS)}")
        name, parse = _KEYS[key]
        try:
            fields[name] = parse(value)
        except ValueError as exc:
            raise ImpairmentError(f"{token!r}: {exc}") from None
    return LinkImpairment(**fields)  # type: ignore[arg-type]


def parse_impairments_env(env: Mapping[str, str]) -> Impairments:
    """``NAT_IMPAIR_UP`` and ``NAT_IMPAIR_DOWN`` (blank: off); ``ImpairmentError`` names the variable."""
    links = []
    for name in (ENV_UP, ENV_DOWN):
        try:
            links.append(parse_link(env.get(name, "")))
        except ImpairmentError as exc:
            raise ImpairmentError(f"{name}: {exc}") from None
    return Impairments(*links)
