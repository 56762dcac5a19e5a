"""Peer ids: the one syntax that the wire protocol, the keys and the agent all check against.

It lives here, below both ``protocol`` and ``trust``, because a key file is named by its host's id and
``trust`` may not import the protocol; ``protocol`` re-exports both names unchanged.
"""

from __future__ import annotations

import re

ID_SYNTAX = "[A-Za-z0-9][A-Za-z0-9._-]{0,31}"
"""Peer ids: 1-32 characters, letters, digits, '.', '_' and '-', starting with a letter or digit (so an id
is also a safe file name: no '/', never '.' or '..')."""

ID_RE = re.compile(ID_SYNTAX + r"\Z")
"""A whole peer id (``ID_RE.match(text)``); the one compiled form of :data:`ID_SYNTAX`."""
