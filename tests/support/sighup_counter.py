"""A stand-in for ``nat run``'s signal handling: counts the SIGHUPs ``nat impair`` sends it.

``python -m tests.support.sighup_counter FILE`` prints ``ready`` once its handler is in place, then appends a
line to FILE per SIGHUP until SIGTERM. The kernel-side tests point ``nat.pid`` at it: they measure what
``nat impair`` applies itself, and check that it tells the router (the delay line's own tests use ``nat run``).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType


def main(path: Path) -> None:
    def note(signum: int, frame: FrameType | None) -> None:
        with path.open("a") as file:
            file.write("SIGHUP\n")

    signal.signal(signal.SIGHUP, note)
    print("ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
