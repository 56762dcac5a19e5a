"""nfnetlink_queue's wire format, byte for byte: what the delay line sends, and what the kernel sent back when
these were recorded (Linux 6.18, x86-64: netlink headers little-endian, nfqueue structures big-endian)."""

import pytest

from nat.impair import nfqueue
from nat.impair.nfqueue import Ack, NfqueueError, Packet


def golden(*words: str) -> bytes:
    return bytes.fromhex("".join(words))


#              nlmsghdr: len     type|flags seq       portid    nfgenmsg  attr hdr  payload
BIND_Q1 = golden("1c000000", "02030500", "07000000", "00000000", "00000001", "08000100", "01000000")
"""Config (subsys 3, message 2), flags REQUEST|ACK, queue 1 (network order); NFQA_CFG_CMD: BIND, pad, pf 0."""
UNBIND_Q2 = golden("1c000000", "02030500", "08000000", "00000000", "00000002", "08000100", "02000000")
PARAMS_Q2 = golden(
    "28000000", "02030500", "09000000", "00000000", "00000002",
    "09000200", "00000000", "01000000",  # NFQA_CFG_PARAMS: copy range 0, copy mode META (1), 3 bytes padding
    "08000300", "00002710",  # NFQA_CFG_QUEUE_MAXLEN: 10000
)  # fmt: skip
ACCEPT_Q1_ID3 = golden("20000000", "01030100", "0a000000", "00000000", "00000001", "0c000200", "00000001", "00000003")
"""Verdict (message 1), flags REQUEST only (no ACK: the kernel answers errors alone); NF_ACCEPT for id 3."""
DROP_Q2 = golden("20000000", "01030100", "0b000000", "00000000", "00000002", "0c000200", "00000000", "01020304")

# From the kernel, recorded through this module's socket in a network namespace.
KERNEL_ACK = golden("24000000", "02000001", "07000000", "d45d0000", "00000000", "1c000000020305000700000000000000")
"""NLMSG_ERROR with error 0 (the bind above succeeded), flag CAPPED: the request's header follows."""
KERNEL_PACKET = golden(
    "40000000", "00030000", "00000000", "00000000", "02000001",  # packet notice, AF_INET, queue 1
    "0b000100", "00000001", "0800", "00", "00",  # NFQA_PACKET_HDR: id 1, IPv4, hook 0 (PREROUTING), pad
    "08000500", "0000002e",  # NFQA_IFINDEX_INDEV 46
    "10000900", "00060000c66c2b006cd00000",  # NFQA_HWADDR
    "08000e00", "00000001",  # NFQA_SKB_INFO
)  # fmt: skip
KERNEL_STAMPED_PACKET = golden(
    "54000000", "00030000", "00000000", "00000000", "02000001",
    "0b000100", "00000001", "0800", "00", "00",
    "08000500", "0000002e",
    "10000900", "00060000c66c2b006cd00000",
    "14000400", "000000006b0d442b", "000000000009b1e8",  # NFQA_TIMESTAMP: 1796031531 s 635368 us (wall clock)
    "08000e00", "00000001",
)  # fmt: skip
"""The same once the socket asked for timestamps (SO_TIMESTAMP)."""
KERNEL_ENOENT = golden(
    "34000000",
    "02000000",
    "09000000",
    "d45d0000",
    "feffffff",  # NLMSG_ERROR -2: a verdict for no such id
    "20000000010301000900000000000000000000010c00020000000001000003e7",
)
KERNEL_EBUSY = golden(
    "30000000",
    "02000000",
    "0a000000",
    "d45d0000",
    "f0ffffff",  # NLMSG_ERROR -16: queue 1 already bound
    "1c000000020305000a00000000000000000000010800010001000000",
)
PROC_QUEUES = "    1  10298     3 1     0     5     2        3  1\n    2  10298     0 1     0     0     0        0  1\n"


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (nfqueue.encode_bind(1, seq=7), BIND_Q1),
        (nfqueue.encode_unbind(2, seq=8), UNBIND_Q2),
        (nfqueue.encode_params(2, 10_000, seq=9), PARAMS_Q2),
        (nfqueue.encode_verdict(1, 3, nfqueue.NF_ACCEPT, seq=10), ACCEPT_Q1_ID3),
        (nfqueue.encode_verdict(2, 0x01020304, nfqueue.NF_DROP, seq=11), DROP_Q2),
    ],
    ids=["bind", "unbind", "params", "accept", "drop"],
)
def test_requests_encode_byte_for_byte(encoded, expected):
    assert encoded.hex() == expected.hex()


def test_the_kernels_packet_notice_decodes_to_its_queue_id_and_hook():
    assert list(nfqueue.decode(KERNEL_PACKET)) == [Packet(queue=1, packet_id=1, hook=0)]


def test_a_stamped_packet_notice_carries_its_arrival_time():
    [packet] = nfqueue.decode(KERNEL_STAMPED_PACKET)
    assert packet == Packet(queue=1, packet_id=1, hook=0, timestamp=1796031531.635368)


@pytest.mark.parametrize(
    ("datagram", "ack"),
    [(KERNEL_ACK, Ack(7, 0)), (KERNEL_ENOENT, Ack(9, 2)), (KERNEL_EBUSY, Ack(10, 16))],
    ids=["done", "enoent", "ebusy"],
)
def test_the_kernels_answers_decode_to_their_request_and_errno(datagram, ack):
    assert list(nfqueue.decode(datagram)) == [ack]


def test_several_messages_in_one_datagram_decode_in_order():
    assert list(nfqueue.decode(KERNEL_ACK + KERNEL_PACKET + KERNEL_ENOENT)) == [
        Ack(7, 0),
        Packet(1, 1, 0),
        Ack(9, 2),
    ]


def test_messages_of_other_kinds_are_skipped():
    done = golden("14000000", "03000000", "01000000", "00000000", "00000000")  # NLMSG_DONE
    assert list(nfqueue.decode(done + KERNEL_PACKET)) == [Packet(1, 1, 0)]


@pytest.mark.parametrize(
    ("datagram", "message"),
    [
        (KERNEL_PACKET[:-4], "netlink message of length 64 in a datagram of 60"),
        (golden("10000000", "00030000", "00000000", "00000000"), "without its nfgenmsg header"),
        (golden("18000000", "00030000", "00000000", "00000000", "02000001", "04000500"), "without NFQA_PACKET_HDR"),
        (golden("18000000", "00030000", "00000000", "00000000", "02000001", "0c000100"), "length 12 overruns"),
        (golden("18000000", "00030000", "00000000", "00000000", "02000001", "02000100"), "length 2 overruns"),
    ],
    ids=["truncated", "no-nfgenmsg", "no-header", "attribute-overrun", "attribute-too-short"],
)
def test_malformed_datagrams_raise_the_named_error(datagram, message):
    with pytest.raises(NfqueueError, match=message):
        list(nfqueue.decode(datagram))


def test_proc_queues_sum_the_kernels_two_drop_counts_per_queue():
    assert nfqueue.parse_proc_queues(PROC_QUEUES) == {1: 7, 2: 0}
    assert nfqueue.parse_proc_queues("") == {}
