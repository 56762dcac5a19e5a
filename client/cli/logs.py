"""The ``[client]`` prefix of every line the agent logs and the chat prints, from one logging Formatter.

Code logs plain text; a record may name who it speaks for with ``extra={"speaker": "peer bob"}`` (an
incoming message), else it is the client's own line. The chat prints through a logger too, to whatever
``sys.stdout`` is when the line is written: prompt_toolkit's ``patch_stdout`` swaps it so lines appear
above the prompt.
"""

from __future__ import annotations

import logging
import sys

SPEAKER = "client"
CHAT_LOGGER = "client.chat"


class PrefixFormatter(logging.Formatter):
    """``[<speaker>] <message>``; the speaker is the record's ``speaker``, else ``client``; an empty message
    leaves ``[<speaker>]`` alone."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        speaker = getattr(record, "speaker", SPEAKER)
        return f"[{speaker}] {text}" if text else f"[{speaker}]"  # a line that is all speaker: [bob is back]


class _CurrentStdout:
    """A stream that is always the current ``sys.stdout`` (a handler keeps the stream it was given)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def log_to_stderr(level: int | str) -> None:
    """The agent's logging: the ``client`` logger at ``level`` (not asyncio's debug chatter), prefixed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrefixFormatter("%(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("client").setLevel(level)


def chat_logger() -> logging.Logger:
    """The chat's printer: every line to stdout, prefixed, flushed at once."""
    logger = logging.getLogger(CHAT_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(_CurrentStdout())
        handler.setFormatter(PrefixFormatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # not also to the agent's stderr handler, in a test that runs both
    return logger
