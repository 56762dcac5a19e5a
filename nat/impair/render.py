"""Placeholder for slice A's renderer: only the queue numbers the delay line and the iptables feed share.

(Branch impair-b: slice A's ``nat/impair/render.py`` replaces this file at merge; it defines the same names.)
"""

QUEUE_UP = 1
"""nfqueue of the up direction (LAN -> WAN): fed from the LAN interface's raw PREROUTING."""
QUEUE_DOWN = 2
"""nfqueue of the down direction (WAN -> LAN): fed from the WAN interface's raw PREROUTING."""
