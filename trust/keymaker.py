"""The lab's key maker: a key file per host and the registry, made once and kept (``make-keys``).

Layout under the secrets directory (the lab's ``secrets`` volume, ``/run/natlab-secrets``)::

    keys/<id>.json      each host's identity (mode 0600; the folder 0700)
    registry.json       every id that has a key file -> its public keys and overlay address (mode 0644)

Idempotent: a host that already has a key file keeps it (a restarted lab keeps its identities, as it keeps
its TURN password), and the registry is rewritten from all the key files in ``keys/`` (so it always says
exactly which ids hold keys, including hosts added by an earlier run). A damaged key file is an error, never
silently replaced: that would change a host's identity behind its back.

Each id in the registry also gets its tunnel (overlay) address (:mod:`trust.overlay`): the address the
registry already gave it, so that it is stable for the lab's life, else the lowest free one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from common.ids import ID_RE, ID_SYNTAX
from trust.keys import Identity, KeyFileError, Registry
from trust.overlay import assign

KEYS_DIR = "keys"
REGISTRY_FILE = "registry.json"
KEYS_DIR_MODE = 0o700


@dataclass(frozen=True)
class MadeKeys:
    """What :func:`make_keys` did: the ids it made keys for now, those it kept, and the registry it wrote."""

    created: tuple[str, ...]
    kept: tuple[str, ...]
    registry: Registry


def key_file(directory: Path, peer_id: str) -> Path:
    """Where ``peer_id``'s key file lives under the secrets ``directory``."""
    return directory / KEYS_DIR / f"{peer_id}.json"


def parse_ids(text: str) -> list[str]:
    """``alice,bob`` -> ``["alice", "bob"]`` (spaces around ids allowed, duplicates dropped); ``ValueError``
    naming the first bad id."""
    ids = [part.strip() for part in text.split(",")]
    for peer_id in ids:
        if not ID_RE.match(peer_id):
            raise ValueError(f"invalid id {peer_id[:40]!r} in {text[:80]!r}: ids match {ID_SYNTAX}")
    return list(dict.fromkeys(ids))


def make_keys(ids: Iterable[str], directory: Path) -> MadeKeys:
    """Make the missing key files for ``ids`` and rewrite the registry. ``KeyFileError`` for a damaged key
    file, ``OSError`` when the directory cannot be written."""
    keys_dir = directory / KEYS_DIR
    keys_dir.mkdir(mode=KEYS_DIR_MODE, parents=True, exist_ok=True)
    created, kept = [], []
    for peer_id in ids:
        path = key_file(directory, peer_id)
        if path.exists():
            Identity.load(path)  # refuse a damaged file now, not when its host starts
            kept.append(peer_id)
        else:
            Identity.generate().save(path)
            created.append(peer_id)
    keys = registry_of(keys_dir)
    registry = Registry(keys, assign(keys, _kept_overlay(directory / REGISTRY_FILE)))
    registry.save(directory / REGISTRY_FILE)
    return MadeKeys(tuple(created), tuple(kept), registry)


def registry_of(keys_dir: Path) -> Registry:
    """The registry of every key file in ``keys_dir`` (``<id>.json``; hidden files, such as an atomic write's
    temporary file, are not key files)."""
    public = {}
    for path in sorted(keys_dir.glob("*.json")):
        if path.name.startswith("."):
            continue
        if not ID_RE.match(path.stem):
            raise KeyFileError(f"{path}: not a key file name (<id>.json, ids match {ID_SYNTAX})")
        public[path.stem] = Identity.load(path).public
    return Registry(public)


def _kept_overlay(path: Path) -> dict[str, ipaddress.IPv4Address]:
    """The overlay addresses the registry at ``path`` gave so far: none when it does not exist yet, or cannot
    be read (the registry is rewritten from the key files then, as ever; addresses are assigned afresh)."""
    try:
        return dict(Registry.load(path).overlay)
    except KeyFileError:
        return {}
