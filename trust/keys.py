"""Every key a natlab host holds: its identity, the key file it lives in, and the lab's registry of public keys.

An :class:`Identity` is two key pairs: Ed25519 to sign (proofs to the server) and X25519 to agree keys with
peers (the AEAD sessions of :mod:`trust.sessions`, and a later WireGuard tunnel, which takes X25519 keys as
they are). Two pairs rather than one converted key: each algorithm gets a key made for it, and a tunnel can
use the X25519 key without touching the signing key.

Files are JSON with base64 fields (``base64.b64encode``, standard alphabet, padded):

- key file (``keys/<id>.json``, mode 0600): ``{"format": "natlab-key/1", "sign_secret": <32-byte Ed25519
  seed>, "box_secret": <32-byte X25519 secret>, "sign": <public>, "box": <public>}``. The public halves are
  there for people (and ``jq``) and are checked against the secrets on load, so a damaged file is refused.
- registry (``registry.json``, mode 0644: nothing secret): ``{"format": "natlab-registry/1", "ids": {<id>:
  {"sign": <public>, "box": <public>, "overlay": "198.19.255.1"}, ...}}``. ``overlay`` (the host's tunnel
  address, :mod:`trust.overlay`) came later: a reader that does not know it ignores it, and a registry
  without it loads with no overlay addresses.

Loading either raises :class:`KeyFileError` naming the file and what is wrong; :class:`KeyFileMissing`
(its subclass) when the file does not exist, the one error an agent waits on. Writes are atomic
(:func:`common.files.write_atomic`): a reader sees the old file or the new one.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.signing

from common.files import write_atomic
from common.ids import ID_RE, ID_SYNTAX

KEY_SIZE = 32
"""Every key here, public or secret, Ed25519 or X25519, is 32 bytes."""
KEY_FILE_FORMAT = "natlab-key/1"
REGISTRY_FORMAT = "natlab-registry/1"
KEY_FILE_MODE = 0o600
"""Only the owner reads a key file. In the lab every container runs as root, so a host (root) reads its key
from the shared volume although the server's root wrote it."""
REGISTRY_MODE = 0o644


class KeyFileError(ValueError):
    """A key file or registry that cannot be used; the message names the file and what is wrong."""


class KeyFileMissing(KeyFileError):
    """The file does not exist (yet): in the lab the server writes the keys while the hosts start."""


@dataclass(frozen=True)
class PublicKeys:
    """A host's public keys: ``sign`` (Ed25519, verifies its proofs), ``box`` (X25519, key agreement)."""

    sign: bytes
    box: bytes

    def __post_init__(self) -> None:
        for name, value in (("sign", self.sign), ("box", self.box)):
            if len(value) != KEY_SIZE:
                raise ValueError(f"{name} key: expected {KEY_SIZE} bytes, got {len(value)}")

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming both keys, for logs (a hash: no key material is shown)."""
        return nacl.hash.blake2b(self.sign + self.box, digest_size=8).decode()

    def to_json(self) -> dict[str, str]:
        return {"sign": _b64(self.sign), "box": _b64(self.box)}

    @classmethod
    def from_json(cls, value: object, where: str) -> PublicKeys:
        fields = _object(value, where)
        return cls(_key(fields, "sign", where), _key(fields, "box", where))


class Identity:
    """A host's two secret keys; ``public`` is what others may know. Pure apart from :meth:`load`/:meth:`save`."""

    __slots__ = ("_box", "_signing", "public")

    def __init__(self, signing: nacl.signing.SigningKey, box: nacl.public.PrivateKey) -> None:
        self._signing = signing
        self._box = box
        self.public = PublicKeys(bytes(signing.verify_key), bytes(box.public_key))

    @classmethod
    def generate(cls) -> Identity:
        """Fresh keys from the operating system's randomness (libsodium's ``randombytes``)."""
        return cls(nacl.signing.SigningKey.generate(), nacl.public.PrivateKey.generate())

    def __repr__(self) -> str:  # never the secret keys, even in a traceback
        return f"Identity({self.public.fingerprint})"

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._signing.sign(data).signature

    def agree(self, peer_box: bytes) -> bytes:
        """The raw X25519 shared secret with ``peer_box`` (hash it before use, as :mod:`trust.sessions` does).

        ``ValueError`` for a key of the wrong size or one that yields the all-zero secret (a low-order point:
        the secret would then be known to anyone, whatever our key)."""
        if len(peer_box) != KEY_SIZE:
            raise ValueError(f"peer's X25519 key: expected {KEY_SIZE} bytes, got {len(peer_box)}")
        try:
            return nacl.bindings.crypto_scalarmult(bytes(self._box), peer_box)
        except nacl.exceptions.RuntimeError:  # libsodium refuses an all-zero result
            raise ValueError("peer's X25519 key is a low-order point") from None

    def tunnel_secret(self) -> bytes:
        """The X25519 secret key as bytes: WireGuard's private key (:mod:`trust.wireguard`), the one use of
        the secret outside this class."""
        return bytes(self._box)

    @classmethod
    def load(cls, path: Path) -> Identity:
        fields = _object(_read_json(path), str(path))
        _check_format(fields, KEY_FILE_FORMAT, str(path))
        identity = cls(
            nacl.signing.SigningKey(_key(fields, "sign_secret", str(path))),
            nacl.public.PrivateKey(_key(fields, "box_secret", str(path))),
        )
        if PublicKeys.from_json(fields, str(path)) != identity.public:
            raise KeyFileError(f"{path}: the public keys do not match the secret keys (a damaged or edited file)")
        return identity

    def save(self, path: Path) -> None:
        """Write the key file atomically, mode 0600."""
        fields = {
            "format": KEY_FILE_FORMAT,
            "sign_secret": _b64(bytes(self._signing)),
            "box_secret": _b64(bytes(self._box)),
            **self.public.to_json(),
        }
        write_atomic(path, json.dumps(fields, indent=2) + "\n", mode=KEY_FILE_MODE)


class Registry(Mapping[str, PublicKeys]):
    """Id -> public keys, read-only: the ids the lab made keys for (the server admits them only with a proof).

    ``overlay``: id -> its tunnel address (:mod:`trust.overlay`), for ids of the registry only."""

    def __init__(
        self,
        keys: Mapping[str, PublicKeys] | None = None,
        overlay: Mapping[str, ipaddress.IPv4Address] | None = None,
    ) -> None:
        self._keys = dict(sorted((keys or {}).items()))
        for peer_id in self._keys:
            if not ID_RE.match(peer_id):
                raise ValueError(f"invalid id {peer_id!r}: ids match {ID_SYNTAX}")
        self.overlay = {peer_id: address for peer_id, address in (overlay or {}).items() if peer_id in self._keys}

    def __getitem__(self, peer_id: str) -> PublicKeys:
        return self._keys[peer_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Registry({', '.join(self._keys)})"

    @classmethod
    def load(cls, path: Path) -> Registry:
        fields = _object(_read_json(path), str(path))
        _check_format(fields, REGISTRY_FORMAT, str(path))
        ids = _object(fields.get("ids"), f"{path}: ids")
        for peer_id in ids:
            if not ID_RE.match(peer_id):
                raise KeyFileError(f"{path}: invalid id {peer_id[:32]!r}: ids match {ID_SYNTAX}")
        keys = {peer_id: PublicKeys.from_json(value, f"{path}: {peer_id}") for peer_id, value in ids.items()}
        overlay = {peer_id: _address(value, f"{path}: {peer_id}") for peer_id, value in ids.items()}
        return cls(keys, {peer_id: address for peer_id, address in overlay.items() if address is not None})

    def save(self, path: Path) -> None:
        """Write the registry atomically, mode 0644 (public keys and overlay addresses only)."""
        ids = {}
        for peer_id, keys in self.items():
            ids[peer_id] = keys.to_json()
            if peer_id in self.overlay:
                ids[peer_id]["overlay"] = str(self.overlay[peer_id])
        fields = {"format": REGISTRY_FORMAT, "ids": ids}
        write_atomic(path, json.dumps(fields, indent=2) + "\n", mode=REGISTRY_MODE)


def _address(value: object, where: str) -> ipaddress.IPv4Address | None:
    """An id's optional ``overlay`` field: ``None`` when absent (a registry from before the tunnel)."""
    text = _object(value, where).get("overlay")
    if text is None:
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise KeyFileError(f"{where}: overlay: {str(text)[:40]!r} is not an IPv4 address") from None


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _read_json(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileMissing(f"{path}: no such file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not JSON (not UTF-8 text)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{path}: not JSON: {exc}") from None


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KeyFileError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _check_format(fields: dict[str, Any], expected: str, where: str) -> None:
    if fields.get("format") != expected:
        raise KeyFileError(f"{where}: format {str(fields.get('format'))[:40]!r}, expected {expected!r}")


def _key(fields: dict[str, Any], name: str, where: str) -> bytes:
    """The 32-byte key in base64 field ``name``, or :class:`KeyFileError` saying what is wrong with it."""
    text = fields.get(name)
    if not isinstance(text, str):
        raise KeyFileError(f"{where}: {name}: missing (expected {KEY_SIZE} bytes in base64)")
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{where}: {name}: not base64") from None
    if len(value) != KEY_SIZE:
        raise KeyFileError(f"{where}: {name}: expected {KEY_SIZE} bytes, got {len(value)}")
    return value
