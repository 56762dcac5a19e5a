"""The server's log handler: lines per template per second, summaries of the rest, everything escaped."""

import logging

import pytest

from server.logs import MAX_TEMPLATES, RateLimitedHandler, escape


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """Collects the formatted lines it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def lines():
    return Lines()


@pytest.fixture
def log(clock, lines):
    """A logger whose only handler is a RateLimitedHandler (3 lines a second) over ``lines``."""
    logger = logging.getLogger("test.server.logs")
    handler = RateLimitedHandler(lines, per_second=3, clock=clock)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.removeHandler(handler)


def test_passes_n_lines_per_template_per_second_then_summarises(log, clock, lines):
    for i in range(10):
        log.info("registered %s at %s", f"p{i}", "198.18.0.11:1")
    log.warning("peer table full (%d): refused %s", 3, "x")
    assert lines.lines == [
        "INFO test.server.logs: registered p0 at 198.18.0.11:1",
        "INFO test.server.logs: registered p1 at 198.18.0.11:1",
        "INFO test.server.logs: registered p2 at 198.18.0.11:1",
        "WARNING test.server.logs: peer table full (3): refused x",
    ]
    clock.now = 101.0
    log.info("registered %s at %s", "p10", "198.18.0.11:1")
    assert lines.lines[4:] == [
        "INFO test.server.logs: suppressed 7 lines like 'registered %s at %s'",
        "INFO test.server.logs: registered p10 at 198.18.0.11:1",
    ]


def test_flush_writes_the_summary_when_logging_has_stopped(log, clock, lines):
    for _ in range(5):
        log.debug("rate limited %d bytes from %s", 14, "198.18.0.11:1")
    log.handlers[0].flush()
    assert len(lines.lines) == 3, "the second has not ended: nothing to summarise yet"
    clock.now = 100.999
    log.handlers[0].flush()
    assert len(lines.lines) == 3
    clock.now = 102.5
    log.handlers[0].flush()
    assert lines.lines[3:] == ["DEBUG test.server.logs: suppressed 2 lines like 'rate limited %d bytes from %s'"]
    log.handlers[0].flush()
    assert len(lines.lines) == 4, "each summary once"


def test_a_flood_of_one_kind_costs_a_few_lines_a_second(log, clock, lines):
    for step in range(10_000):  # 1,000 lines a second for 10 s
        clock.now = 100.0 + step / 1000
        log.info("dropped %s datagram from %s: %s", "not_utf8", "198.18.0.11:1", "datagram is not UTF-8")
    clock.now = 111.0
    log.handlers[0].flush()
    assert len(lines.lines) == 10 * (3 + 1)
    assert lines.lines[-1] == "INFO test.server.logs: suppressed 997 lines like 'dropped %s datagram from %s: %s'"


def test_more_templates_than_counted_share_one_budget(log, clock, lines):
    for i in range(MAX_TEMPLATES + 10):
        log.info(f"dynamic message {i}")  # the case under test: a caller that formats its own message
    assert len(lines.lines) == MAX_TEMPLATES + 3
    clock.now = 101.0
    log.handlers[0].flush()
    assert lines.lines[-1] == "INFO test.server.logs: suppressed 7 lines like '(other templates)'"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("alice\nINFO forged line", "alice\\nINFO forged line"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\u202eevil", "\\u202eevil"),
        ("tab\there", "tab\\there"),
        ("caf\u00e9 ok", "caf\u00e9 ok"),
    ],
)
def test_every_line_is_escaped(log, lines, value, shown):
    log.info("registered %s", value)
    assert lines.lines == [f"INFO test.server.logs: registered {shown}"]


def test_a_traceback_keeps_its_lines_and_loses_its_escapes(log, lines):
    try:
        raise ValueError("bad \x1b[2J value")
    except ValueError:
        log.exception("error handling %d bytes", 3)
    [line] = lines.lines
    assert line.startswith("ERROR test.server.logs: error handling 3 bytes\nTraceback (most recent call last):\n")
    assert line.endswith("ValueError: bad \\x1b[2J value")


def test_other_handlers_see_the_record_unchanged(log, lines):
    seen = Lines()
    log.addHandler(seen)
    try:
        log.info("registered %s", "a\nb")
    finally:
        log.removeHandler(seen)
    assert seen.lines == ["INFO test.server.logs: registered a\nb"]
    assert lines.lines == ["INFO test.server.logs: registered a\\nb"]


def test_escape_keeps_what_it_is_told_to():
    assert escape("one\ntwo\x07", keep="\n") == "one\ntwo\\x07"
    assert escape("plain") == "plain"
