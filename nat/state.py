"""Where ``nat run`` leaves its state for ``nat health``, ``nat show`` and scenario artifacts.

Kept apart from ``nat.router`` so the healthcheck, which Docker runs several times a second, imports
neither pyroute2 nor tenacity.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = Path("/run/natlab")
PROFILE_FILE = "profile.json"
"""The profile's fields plus the WAN and LAN links (ifname, address, subnet)."""
RULESET_FILE = "ruleset.nft"
"""The exact script given to ``nft -f``."""
READY_FILE = "ready"
"""Written last, once the ruleset is applied; removed on start and on stop."""
IMPAIR_FILE = "impair.json"
"""The impairments in force, both directions (``nat.impair.model.Impairments.as_dict``); written by
``nat run`` at start and by ``nat impair``, read by the delay line on SIGHUP and by ``nat show``."""
PID_FILE = "nat.pid"
"""The pid of ``nat run``: ``nat impair`` sends it SIGHUP so the delay line picks up new settings."""
IMPAIR_STATS_FILE = "impair-stats.json"
"""The delay line's counters per direction (seen, dropped, held, ...), rewritten about once a second."""
