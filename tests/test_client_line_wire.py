"""`client linecheck`'s datagrams: golden bytes per kind (written out by hand from the header layouts), padding,
and the reasons a datagram is not one of this run's."""

from __future__ import annotations

import pytest

from client.diagnostics.line_wire import (
    KINDS,
    MIN_SIZE,
    Data,
    DataReply,
    Done,
    Hello,
    HelloReply,
    Kind,
    Message,
    Summary,
    SummaryReply,
    decode,
    encode,
    header_size,
)

TOKEN = bytes(range(16))
T = TOKEN.hex()

GOLDEN: list[tuple[Message, str]] = [
    (Hello(TOKEN), T + "01"),
    (HelloReply(TOKEN), T + "02"),
    # kind 3, seq 258, sent_ns 0x0102030405060708
    (Data(TOKEN, 258, 0x0102030405060708), T + "03" + "00000102" + "0102030405060708"),
    # kind 4, seq, sent_ns, receipt 7, echo received 9 ns, echo sent 11 ns
    (
        DataReply(TOKEN, 258, 0x0102030405060708, 7, 9, 11),
        T + "04" + "00000102" + "0102030405060708" + "00000007" + "0000000000000009" + "000000000000000b",
    ),
    (Summary(TOKEN, 1000), T + "05" + "000003e8"),
    # count 1000, receipts 950, distinct 940, lost runs 20, ahead 10
    (
        SummaryReply(TOKEN, 1000, 950, 940, 20, 10),
        T + "06" + "000003e8" + "000003b6" + "000003ac" + "00000014" + "0000000a",
    ),
    (Done(TOKEN), T + "07"),
]


@pytest.mark.parametrize(
    ("message", "golden"), GOLDEN, ids=lambda v: type(v).__name__ if not isinstance(v, str) else ""
)
def test_each_kind_encodes_to_its_golden_bytes_and_back(message: Message, golden: str) -> None:
    assert encode(message).hex() == golden
    assert decode(bytes.fromhex(golden), TOKEN) == message


def test_every_kind_is_in_the_table() -> None:
    assert set(KINDS) == set(Kind)
    assert {type(m) for m, _ in GOLDEN} == {cls for cls, _ in KINDS.values()}


def test_padding_fills_with_zeros_to_the_size_and_is_ignored_when_decoding() -> None:
    data = encode(Data(TOKEN, 1, 2), 200)
    assert len(data) == 200
    assert data[header_size(Kind.DATA) :] == bytes(200 - header_size(Kind.DATA))
    assert decode(data, TOKEN) == Data(TOKEN, 1, 2)
    assert len(encode(Data(TOKEN, 1, 2), 3)) == header_size(Kind.DATA)  # never shorter than the header


def test_the_largest_header_fits_the_smallest_datagram() -> None:
    assert max(header.size for _, header in KINDS.values()) <= MIN_SIZE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(range(1, 17)) + b"\x03" + bytes(12), "not this run's token"),
        (TOKEN, "not this run's token"),
        (TOKEN + b"\x63", "unknown kind 99"),
        (TOKEN + b"\x04" + bytes(20), "data_reply of 37 bytes: its header needs 49"),
    ],
)
def test_what_is_not_ours_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{reason}$"):
        decode(data, TOKEN)


def test_fields_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^data: "):
        encode(Data(TOKEN, 1 << 32, 0))
    with pytest.raises(ValueError, match="token must be 16 bytes, got 3"):
        encode(Hello(b"abc"))
