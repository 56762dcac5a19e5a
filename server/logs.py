"""The server's log handler: every line escaped, and at most so many lines a second of any one kind.

A flood of datagrams must not become a flood of log lines (the issue measured 3.4 MB in 30 s), nor may a
datagram write its own lines into the log. :class:`RateLimitedHandler` wraps the handler that writes (a
``StreamHandler`` on stderr) and, for each *template* (the logger and the unformatted message, e.g.
``"registered %s at %s"``), passes at most ``per_second`` records in each second of the clock; the rest
are counted, and one line per template and second then says ``suppressed K lines like '<template>'``.
The summaries are written with the next record after the second ends, or by :meth:`flush` (the server
calls it every second, and logging calls it at exit), so a flood's count is never lost.

Every line's message is escaped: a character that is not printable (a newline, a terminal escape, a bidi
override) is written as its Python escape, so one log line is one line whatever values it carries. The
handler's callers already log only checked values (ids, addresses, escaped reasons); this is the net
under them. Tracebacks keep their newlines and lose everything else unprintable.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

DEFAULT_PER_SECOND = 20
MAX_TEMPLATES = 256
"""Distinct templates counted per second; more (only a bug or a chatty library makes them) share one."""
_OTHER = ("", "(other templates)")


class RateLimitedHandler(logging.Handler):
    """Passes escaped records to ``target``, at most ``per_second`` per template in each second."""

    def __init__(
        self,
        target: logging.Handler,
        per_second: int = DEFAULT_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.target = target
        self.per_second = per_second
        self._clock = clock
        self._second = -math.inf
        self._passed: dict[tuple[str, str], int] = {}
        self._suppressed: dict[tuple[str, str], tuple[int, logging.LogRecord]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self._roll(self._clock())
        key = (record.name, str(record.msg))
        if key not in self._passed and len(self._passed) >= MAX_TEMPLATES:
            key = _OTHER
        passed = self._passed.get(key, 0)
        if passed < self.per_second:
            self._passed[key] = passed + 1
            self.target.handle(escaped(record, self.target.formatter))
        else:
            count, _ = self._suppressed.get(key, (0, record))
            self._suppressed[key] = (count + 1, record)

    def flush(self) -> None:
        """Write the summaries of seconds that have ended, then flush the target."""
        self.acquire()
        try:
            self._roll(self._clock())
        finally:
            self.release()
        self.target.flush()

    def _roll(self, now: float) -> None:
        second = math.floor(now)
        if second <= self._second:
            return
        self._second = second
        suppressed, self._suppressed, self._passed = self._suppressed, {}, {}
        for (_, template), (count, last) in suppressed.items():
            summary = logging.makeLogRecord(
                {"name": last.name, "levelno": last.levelno, "levelname": last.levelname,
                 "msg": "suppressed %d lines like %r", "args": (count, template)}
            )  # fmt: skip
            self.target.handle(escaped(summary, self.target.formatter))


def escaped(record: logging.LogRecord, formatter: logging.Formatter | None = None) -> logging.LogRecord:
    """``record`` with its message (and traceback) escaped, or ``record`` itself when nothing needs it."""
    message = record.getMessage()
    if message.isprintable() and not record.exc_info:
        return record
    clean = logging.makeLogRecord(record.__dict__)
    clean.msg, clean.args = escape(message), None
    if record.exc_info:  # rare: format the traceback here, to escape it
        traceback = (formatter or logging.Formatter()).formatException(record.exc_info)
        clean.exc_info, clean.exc_text = None, escape(traceback, keep="\n")
    return clean


def escape(text: str, keep: str = "") -> str:
    """``text`` with every unprintable character but those in ``keep`` written as its Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)
