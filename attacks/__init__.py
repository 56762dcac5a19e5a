"""The lab's attacker and victim: forged datagrams, takeovers, injections, replays, floods, and the byte
counter that measures reflection at the victim. Lab addresses only (see packets.LAB_NETWORKS).

Run inside the lab's ``mallory`` and ``victim`` containers (``python3 -m attacks <command>``, cli.py); the
scenarios in ``scenarios/test_attacks.py`` drive them and assert what a secure natlab must do.
"""
