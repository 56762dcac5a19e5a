"""Properties of both wire formats, checked by Hypothesis on generated input (bounded: a few seconds).

v2 is canonical: a datagram that parses encodes back to the very same bytes. Text is not (a trailing line
terminator, ``keepalive``'s ignored arguments, ``080`` for a port, unknown options are all accepted and
written the one way), so for text what holds is: encode turns a parsed message into its canonical datagram,
which parses to the same message (``parse(encode(parse(b))) == parse(b)``), so canonicalising twice changes
nothing; and every message the text grammar can carry survives ``parse(encode(m))``.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import MAX_DATAGRAM, ErrorKind, Frame, ProtocolError, encode, parse, signing_bytes
from tests.support.protocol_strategies import any_datagram, frames, text_messages

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse(datagram):
    """The parsed message or frame, or the ProtocolError (any other exception propagates: a failure)."""
    try:
        return parse(datagram)
    except ProtocolError as exc:
        return exc


@FAST
@given(any_datagram)
def test_any_bytes_parse_and_encode_back_or_raise_the_one_named_error(datagram):
    parsed = _parse(datagram)
    if isinstance(parsed, ProtocolError):
        assert parsed.reason
        assert parsed.kind in ErrorKind
    elif isinstance(parsed, Frame):
        assert encode(parsed) == datagram  # v2: byte for byte
        if parsed.proof is not None:
            assert parsed.signed == signing_bytes(parsed, parsed.proof.timestamp_ms, parsed.proof.nonce)
    else:
        canonical = encode(parsed)  # text: the canonical datagram, which parses to the same message
        assert parse(canonical) == parsed
        assert encode(parse(canonical)) == canonical


@FAST
@given(frames)
def test_every_valid_frame_round_trips(frame):
    datagram = encode(frame)  # the strategies keep every frame well within MAX_DATAGRAM
    assert len(datagram) <= MAX_DATAGRAM
    assert parse(datagram) == frame
    assert encode(parse(datagram)) == datagram


@FAST
@given(text_messages)
def test_every_text_message_round_trips(message):
    datagram = encode(message)
    assert parse(datagram) == message
    assert datagram[:1] != b"\xf5"


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=1401, max_size=1500))
def test_anything_over_the_limit_is_refused_whatever_its_first_byte(datagram):
    with pytest.raises(ProtocolError) as caught:
        parse(datagram)
    assert caught.value.kind is ErrorKind.OVERSIZE
