"""Which asyncio event loop the server runs on: uvloop when it is importable, else the standard one.

uvloop (libuv under asyncio's API; Debian's python3-uvloop in the lab image) receives and sends each
datagram in C, which on loopback more than doubles the requests per second one core answers (see the
README's server-rate figure). The server's code is the same on both: only ``asyncio.Runner``'s loop
factory changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

CHOICES = ("auto", "uvloop", "asyncio")


class LoopUnavailable(RuntimeError):
    """``--loop uvloop`` was asked for and uvloop cannot be imported."""


@dataclass(frozen=True)
class EventLoop:
    """A loop to run the server on: its name for the log and the factory ``asyncio.Runner`` takes."""

    name: str
    factory: Callable[[], asyncio.AbstractEventLoop] | None
    """None: asyncio's default loop."""


def choose(choice: str) -> EventLoop:
    """The loop for ``--loop``: ``auto`` takes uvloop when importable, ``uvloop`` insists on it."""
    if choice not in CHOICES:
        raise ValueError(f"unknown event loop {choice!r}: expected one of {', '.join(CHOICES)}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError as exc:
            if choice == "uvloop":
                raise LoopUnavailable(f"--loop uvloop: cannot import uvloop ({exc})") from None
        else:
            version = getattr(uvloop, "__version__", "")  # (not in its type stubs)
            return EventLoop(f"uvloop {version}".strip(), uvloop.new_event_loop)
    return EventLoop("asyncio", None)
