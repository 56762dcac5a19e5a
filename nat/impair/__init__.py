"""Link impairments of a router: delay, jitter, reordering, loss, duplication and rate, per direction.

An impairment is data beside the NAT profile (``nat.impair.model``), parsed from the text users type
(``delay=40ms jitter=5ms loss=2%``), rendered into what the kernel does (nft, tc, an ``iptables -j NFQUEUE``
rule), and the part the kernel cannot do here (delay, jitter, reordering, bursty loss) is done by the delay
line, a userspace queue that holds each packet's verdict until its time.
"""
