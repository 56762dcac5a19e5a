"""The one result schema every interop driver prints: what a stack did as one side of one attempt.

Standard library only: the drivers import it inside the lab's containers (Debian's python3.11, or aiortc's
venv) and the host side reads it back (:meth:`Report.from_json`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

DIRECT, RELAY, NONE = "direct", "relay", "none"
PATHS = (DIRECT, RELAY, NONE)


@dataclass
class Report:
    """One side's outcome.

    ``path`` is what the stack itself says it uses (``direct``: to the peer's own or NATed address, ``relay``:
    through a TURN server or a nebula relay, ``none``); ``how_path_was_known`` says from what (the nominated ICE
    pair, a handshake log line, ``client status``), with the addresses, so a reader can check it.
    ``peer_endpoint`` is the ``ip:port`` the side sends its traffic to (the peer's NATed address, or the relay's),
    which the scenarios look up in the routers' conntrack. ``time_to_connect_ms``: from the moment the side knew
    how to reach its peer (descriptions exchanged, tunnel asked for, connect issued) until data flowed.
    """

    stack: str
    side: str
    connected: bool = False
    path: str = NONE
    how_path_was_known: str = ""
    time_to_connect_ms: float | None = None
    rtt_ms: float | None = None
    error: str | None = None
    peer_endpoint: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Report:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = data.keys() - known
        if unknown:
            raise ValueError(f"not a report: unknown fields {sorted(unknown)}")
        report = cls(**data)
        if report.path not in PATHS:
            raise ValueError(f"not a report: path {report.path!r} is not one of {', '.join(PATHS)}")
        return report


def write_report(report: Report, folder: Path) -> None:
    """Print the report and leave it as ``<folder>/result-<side>.json`` (written whole, then renamed), where the
    host side polls for it."""
    print(report.to_json(), flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".result-{report.side}.json"
    temporary.write_text(report.to_json() + "\n")
    os.replace(temporary, folder / f"result-{report.side}.json")
