"""Rendering impairments into nft, tc and iptables-restore input: golden text, what goes where, valid syntax."""

import os
import subprocess

import pytest

from nat.impair.model import Impairments, LinkImpairment
from nat.impair.render import (
    QUEUE_DOWN,
    QUEUE_UP,
    render_nft,
    render_queue,
    render_rate,
    root_qdisc_kind,
)
from nat.impair.spec import parse_link
from tests.support.host import missing, require

EVERYTHING = Impairments(
    parse_link("loss=10% duplicate=5% rate=10mbit", "up"),
    parse_link("loss=2% duplicate=0.5% rate=1mbit limit=30", "down"),
)
GOLDEN_NFT = """\
# natlab impairments (loss, duplication), rendered by nat.impair.render; replaces only this table.
table netdev natlab_impair {}
delete table netdev natlab_impair
table netdev natlab_impair {
\tchain up_loss {
\t\ttype filter hook ingress device "eth1" priority filter; policy accept;
\t\tmeta protocol ip numgen random mod 1000000 < 100000 drop
\t}

\tchain up_duplicate {
\t\ttype filter hook egress device "eth0" priority filter; policy accept;
\t\tmeta protocol ip meta mark & 0x40000000 == 0 numgen random mod 1000000 < 50000 meta mark set meta mark | \
0x40000000 dup to "eth0"
\t}

\tchain down_loss {
\t\ttype filter hook ingress device "eth0" priority filter; policy accept;
\t\tmeta protocol ip numgen random mod 1000000 < 20000 drop
\t}

\tchain down_duplicate {
\t\ttype filter hook egress device "eth1" priority filter; policy accept;
\t\tmeta protocol ip meta mark & 0x40000000 == 0 numgen random mod 1000000 < 5000 meta mark set meta mark | \
0x40000000 dup to "eth1"
\t}
}
"""
DELETE_ONLY = """\
# natlab impairments (loss, duplication), rendered by nat.impair.render; replaces only this table.
table netdev natlab_impair {}
delete table netdev natlab_impair
"""
EMPTY_RAW = "-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n"
FED_RAW = EMPTY_RAW + (
    "-N NATLAB_IMPAIR\n-A PREROUTING -j NATLAB_IMPAIR\n"
    "-A NATLAB_IMPAIR -i eth1 -j NFQUEUE --queue-num 1 --queue-bypass\n"
)


def test_loss_drops_where_the_direction_enters_and_duplicates_where_it_leaves():
    assert render_nft(EVERYTHING, "eth0", "eth1") == GOLDEN_NFT


def test_nothing_to_do_in_nft_deletes_the_table():
    assert render_nft(Impairments(), "eth0", "eth1") == DELETE_ONLY
    delay_only = Impairments(LinkImpairment(delay_ms=40, jitter_ms=5, reorder=0.1), LinkImpairment(rate_bps=8000))
    assert render_nft(delay_only, "eth0", "eth1") == DELETE_ONLY


def test_bursty_loss_is_the_delay_lines_not_nfts():
    bursty = Impairments(LinkImpairment(loss=0.02, loss_burst=3), LinkImpairment(loss=0.02, loss_burst=1))
    script = render_nft(bursty, "eth0", "eth1")
    assert "chain up_loss" not in script
    assert "chain down_loss {" in script  # a mean burst of 1 is independent loss
    assert render_queue(bursty, "eth0", "eth1", EMPTY_RAW) == (
        "*raw\n:NATLAB_IMPAIR - [0:0]\n-I PREROUTING 1 -j NATLAB_IMPAIR\n"
        "-A NATLAB_IMPAIR -i eth1 -j NFQUEUE --queue-num 1 --queue-bypass\nCOMMIT\n"
    )


def test_nft_never_names_natlabs_nat_table():
    assert "inet natlab" not in render_nft(EVERYTHING, "eth0", "eth1")


@pytest.mark.parametrize(
    ("link", "ifname", "expected"),
    [
        # 10 ms of 10 Mbit/s is 12,500 bytes; the queue 50 ms, 62,500 bytes.
        (LinkImpairment(rate_bps=10_000_000), "eth0", "rate 10000000bit burst 12500 limit 62500"),
        # 1 Mbit/s: 10 ms is 1,250 bytes, less than two full frames (3,028); limit 30 packets of 1,514 bytes.
        (LinkImpairment(rate_bps=1_000_000, limit=30), "eth1", "rate 1000000bit burst 3028 limit 45420"),
        (LinkImpairment(rate_bps=8_000), "eth1", "rate 8000bit burst 3028 limit 3028"),
        (LinkImpairment(rate_bps=10_000_000_000), "eth0", "rate 10000000000bit burst 12500000 limit 62500000"),
    ],
)
def test_rate_is_a_tbf_on_the_way_out(link, ifname, expected):
    assert render_rate(link, ifname) == ["tc", "qdisc", "replace", "dev", ifname, "root", "tbf", *expected.split()]


def test_no_rate_no_shaper():
    assert render_rate(LinkImpairment(delay_ms=40), "eth0") is None


def test_interface_names_that_need_quoting_are_refused():
    with pytest.raises(ValueError, match="unusable interface name 'eth0; drop'"):
        render_nft(EVERYTHING, "eth0; drop", "eth1")
    with pytest.raises(ValueError, match="unusable interface name"):
        render_rate(LinkImpairment(rate_bps=8000), "a very long interface name")


@pytest.mark.parametrize(
    ("listing", "kind"),
    [
        ("qdisc noqueue 0: root refcnt 2 \n", "noqueue"),
        ("qdisc tbf 8001: root refcnt 3 rate 10Mbit burst 12500b lat 40ms \n", "tbf"),
        ("", None),
    ],
)
def test_root_qdisc_kind(listing, kind):
    assert root_qdisc_kind(listing) == kind


def test_the_queue_feed_is_rebuilt_and_jumped_to_once():
    both = Impairments(LinkImpairment(delay_ms=40), LinkImpairment(reorder=0.1))
    fresh = render_queue(both, "eth0", "eth1", EMPTY_RAW)
    assert fresh == (
        "*raw\n:NATLAB_IMPAIR - [0:0]\n-I PREROUTING 1 -j NATLAB_IMPAIR\n"
        f"-A NATLAB_IMPAIR -i eth1 -j NFQUEUE --queue-num {QUEUE_UP} --queue-bypass\n"
        f"-A NATLAB_IMPAIR -i eth0 -j NFQUEUE --queue-num {QUEUE_DOWN} --queue-bypass\nCOMMIT\n"
    )
    again = render_queue(both, "eth0", "eth1", FED_RAW)
    assert again is not None
    assert "-I PREROUTING" not in again
    assert again.count("NFQUEUE") == 2


def test_the_queue_feed_is_removed_when_nothing_needs_the_delay_line_and_left_alone_when_absent():
    no_delay = Impairments(LinkImpairment(loss=0.1), LinkImpairment(rate_bps=8000))
    assert render_queue(no_delay, "eth0", "eth1", FED_RAW) == (
        "*raw\n-D PREROUTING -j NATLAB_IMPAIR\n-F NATLAB_IMPAIR\n-X NATLAB_IMPAIR\nCOMMIT\n"
    )
    assert render_queue(no_delay, "eth0", "eth1", EMPTY_RAW) is None


def in_scratch_netns(shell_command, stdin):
    """Run ``shell_command`` in a throwaway network namespace holding a veth pair eth0/eth1 (user namespace too
    unless we are root: nft -c needs CAP_NET_ADMIN and the devices ``dup to`` names)."""
    require(missing(["unshare", "ip"]))
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    command = ["unshare", *userns, "--net", "sh", "-c", f"ip link add eth0 type veth peer name eth1 && {shell_command}"]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        require([f"root or unprivileged namespaces ({done.stderr.strip()})"])
    return done


ALL_OF_THEM = Impairments(parse_link("loss=100%", "up"), parse_link("duplicate=100%", "down"))
"""A total outage one way, every packet doubled the other: no random number decides."""


def test_a_share_of_100_percent_takes_every_packet():
    script = render_nft(ALL_OF_THEM, "eth0", "eth1")
    assert "\t\tmeta protocol ip drop\n" in script
    assert "\t\tmeta protocol ip meta mark & 0x" in script
    assert "numgen" not in script


@pytest.mark.parametrize(
    "impairments", [EVERYTHING, Impairments(), ALL_OF_THEM], ids=["everything", "clear", "all-of-them"]
)
def test_nft_accepts_the_script(impairments):
    require(missing(["nft"]))
    done = in_scratch_netns("nft -c -f -", render_nft(impairments, "eth0", "eth1"))
    assert done.returncode == 0, done.stderr


@pytest.mark.needs("iptables-restore", root=True)
def test_iptables_restore_accepts_the_feed():
    both = Impairments(LinkImpairment(delay_ms=40), LinkImpairment(delay_ms=40))
    done = in_scratch_netns("iptables-restore --test --noflush", render_queue(both, "eth0", "eth1", EMPTY_RAW))
    assert done.returncode == 0, done.stderr
