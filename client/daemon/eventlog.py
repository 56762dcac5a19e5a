"""The JSON-lines event log that scenarios read: one event per line, flushed as it is written."""

from __future__ import annotations

import json
import logging
import pathlib
from types import TracebackType

from client.engine.events import JSON

logger = logging.getLogger("client")


class EventLog:
    """Appends events to ``path`` (creating its directory); a context manager that closes the file."""

    def __init__(self, path: str) -> None:
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, stamped: JSON) -> None:
        """Append one event's JSON (:meth:`client.engine.events.Event.to_json`, stamped)."""
        try:
            self._file.write(json.dumps(stamped, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as exc:
            # A full disk must not take the agent (and the lab's paths) down with it.
            logger.error("cannot write event log %s: %s", self.path, exc)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
