"""The JSON-lines event log that scenarios read: one event per line, flushed as it is written.

Inside the agent's event loop, "as it is written" means at the end of the loop iteration that wrote it:
a flood writes several events per datagram, and one flush (a write system call) per iteration instead of
one per line is most of the log's cost. Outside a loop, each line is flushed at once.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from types import TracebackType

logger = logging.getLogger("client")


class EventLog:
    """Appends events to ``path`` (creating its directory); a context manager that closes the file."""

    def __init__(self, path: str) -> None:
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._flush_pending = False

    def write(self, lines: list[str]) -> None:
        """Append events' lines (:meth:`client.engine.events.Event.json_line`, stamped), in one write: an
        ack settles a run of messages at once."""
        try:
            self._file.write("\n".join(lines) + "\n")
        except OSError as exc:
            self._failed(exc)
            return
        if not self._flush_pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
                self._flush_pending = True
            except RuntimeError:  # no event loop: flush now
                self.flush()

    def flush(self) -> None:
        self._flush_pending = False
        if self._file.closed:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
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
