"""The AEAD sessions with keyed peers, and the datagrams they seal and open. Pure (time passed in).

A punch that carries the peer's keys makes a :class:`~trust.sessions.PeerSession` with it (``Peer.session``);
from then on every datagram to that peer is ``Frame(0, Sealed(our id, boot, counter, box))`` (PROTOCOL.md,
"Peer to peer: Sealed") whose box is our frame (hello, hello-ack, data, ack, keepalive) encrypted under our
direction's key, the sealed datagram's own header authenticated with it. A datagram from the peer opens only
under its key, once (the session's anti-replay window), and only if the frame inside names the sender.

When a peer is forgotten (idle, or evicted), its session is remembered, a bounded number of them, oldest
out first: its replay window must outlive the peer, or a recorded probe replayed later would open as new and
bring the peer back at the replayer's address; and an authenticated probe from a peer we forgot may bring it
back (``AgentCore._admit_prober``), since its key was introduced by our server.

``boot`` is the wall-clock time in ns when a session is made, strictly growing within a run (and across
runs, as the clock moves on): a nonce (boot, counter) never repeats under a key, whatever restarts.
"""

from __future__ import annotations

from collections import OrderedDict

from client.engine.peer import Peer
from protocol import (
    MIN_BOX,
    Ack,
    Data,
    FieldTag,
    Frame,
    Hello,
    HelloAck,
    Keepalive,
    Keys,
    Message,
    ProtocolError,
    Sealed,
    box_associated_data,
    encode,
    parse,
)
from trust import AuthError, Identity, PeerSession, PublicKeys

INNER = frozenset((Hello, HelloAck, Data, Ack, Keepalive))
"""What a sealed datagram may carry (PROTOCOL.md): everything a peer sends, as its v2 frame."""
_PLACEHOLDER = bytes(MIN_BOX)  # the associated data does not depend on the box: any box will do


class NotAFrame(ValueError):
    """The box opened, but holds no frame a peer sends (the sender's bug or a forger's key: malformed)."""


class BootClock:
    """Boot numbers: wall-clock ns from ``now`` (monotonic s) and the shell's offset, each larger than the last."""

    def __init__(self, wall_offset: float) -> None:
        self.wall_offset = wall_offset
        self._last = 0

    def next(self, now: float) -> int:
        boot = self._last = max(int((now + self.wall_offset) * 1e9), self._last + 1)
        return boot


class Sealer:
    """Every keyed peer's session: made from the punch's keys, used to seal and open, remembered after the
    peer is forgotten (at most ``remember`` of them)."""

    def __init__(self, identity: Identity, me: str, wall_offset: float, remember: int) -> None:
        self.identity = identity
        self.me = me
        self.boots = BootClock(wall_offset)
        self.remember = remember
        self._gone: OrderedDict[str, PeerSession] = OrderedDict()
        self._layout = _Layout(me)

    def introduce(self, peer: Peer, keys: Keys | None, now: float) -> None:
        """Our server's punch named ``peer`` with ``keys`` (``None``: a seed-era peer, talked to in text).
        ``AuthError("no_key")`` for keys no session can be made with (the peer stays unintroduced)."""
        if keys is None:
            peer.introduced, peer.session = True, None
            return
        public = PublicKeys(keys.sign, keys.box)
        if peer.session is not None and peer.session.peer_public == public:
            peer.introduced = True
            return
        known = self._gone.pop(peer.id, None)
        if known is None or known.peer_public != public:
            known = PeerSession(self.identity, self.me, peer.id, public, self.boots.next(now))
        peer.introduced, peer.session = True, known

    def forget(self, peer: Peer) -> None:
        """``peer`` is forgotten: remember its session (its keys and replay window), within the bound."""
        if peer.session is None:
            return
        self._gone[peer.id] = peer.session
        self._gone.move_to_end(peer.id)
        while len(self._gone) > self.remember:
            self._gone.popitem(last=False)

    def restore(self, peer: Peer) -> None:
        """``peer`` came back with an authenticated probe: it gets the session that opened it again."""
        session = self._gone.pop(peer.id, None)
        if session is not None:
            peer.introduced, peer.session = True, session

    def seal(self, peer: Peer, message: Message) -> Message | Frame:
        """What to send ``peer`` for ``message``: sealed for a keyed peer, the text message for any other."""
        return self.wire(peer, message)[0]

    def wire(self, peer: Peer, message: Message) -> tuple[Message | Frame, bytes | None]:
        """:meth:`seal`'s result and, for a sealed frame, its datagram: built from the AEAD's own associated
        data, so the frame is never encoded again (a flood seals every message)."""
        session = peer.session
        if session is None:
            return message, None
        associated = self._layout.associated
        header = b""

        def header_of(boot: int, counter: int) -> bytes:
            nonlocal header
            header = associated(boot, counter)
            return header

        boot, counter, box = session.seal(encode(Frame(0, message)), header_of)
        return Frame(0, Sealed(self.me, boot, counter, box)), header + self._layout.box_head(len(box)) + box

    def open(self, frame: Frame, sealed: Sealed, peer: Peer | None, datagram: bytes) -> Message:
        """The message inside a sealed ``datagram`` (parsed: ``frame``) from ``sealed.id`` (``peer``, or one
        we forgot). Raises :class:`~trust.sessions.AuthError` (``unknown_peer``, ``no_key``, ``bad_mac``,
        ``replayed``, ``old_boot``, ``wrong_id``) or :class:`NotAFrame`."""
        session = self._gone.get(sealed.id) if peer is None else peer.session
        if session is None:
            raise AuthError("unknown_peer" if peer is None else "no_key", sealed.id)
        # The associated data is the datagram before its BOX field, the last (the encoding is canonical).
        associated = datagram[: len(datagram) - BOX_FIELD_HEAD - len(sealed.box)]
        plaintext = session.open(sealed.boot, sealed.counter, associated, sealed.box)
        try:
            inner = parse(plaintext)
        except ProtocolError as exc:
            raise NotAFrame(exc.reason) from None
        if not isinstance(inner, Frame) or type(inner.message) not in INNER or inner != Frame(0, inner.message):
            raise NotAFrame(f"a sealed {type(inner).__name__} that is no peer's frame")
        message = inner.message
        if getattr(message, "id", sealed.id) != sealed.id:
            raise AuthError("wrong_id", f"{sealed.id} sealed a frame of {getattr(message, 'id', '')}")
        return message

    def size(self, message: Message) -> int:
        """Bytes of ``message`` sealed by us: :func:`sealed_size`."""
        return sealed_size(self.me, message)


def sealed_size(me: str, message: Message) -> int:
    """Bytes of ``message`` sealed by ``me`` (its counters at their largest: boot and counter are fixed-size)."""
    inner = len(encode(Frame(0, message)))
    return len(encode(Frame(0, Sealed(me, 0, 0, bytes(inner + MIN_BOX)))))


BOX_FIELD_HEAD = 3
"""A field's tag (u8) and length (u16) before its value (PROTOCOL.md, "Fields")."""


class _Layout:
    """Where a sealed datagram of ours has its boot and counter, and how its BOX field starts: worked out once
    from the codec (and checked against it), so that sealing a message encodes nothing but the message."""

    def __init__(self, me: str) -> None:
        sample = box_associated_data(Frame(0, Sealed(me, 0, 0, _PLACEHOLDER)))
        # The AD ends with BOOT and COUNTER, each a field of a u64: tag, length, 8 bytes.
        field = BOX_FIELD_HEAD + 8
        self._head, self._boot, self._counter = sample[: -2 * field], sample[-2 * field : -field - 8], sample[-field:-8]
        whole = encode(Frame(0, Sealed(me, 2**64 - 2, 7, _PLACEHOLDER)))
        if self.associated(2**64 - 2, 7) + self.box_head(len(_PLACEHOLDER)) + _PLACEHOLDER != whole:
            raise AssertionError("protocol.binary's sealed layout changed: client/engine/sealing.py must follow")

    def associated(self, boot: int, counter: int) -> bytes:
        """``box_associated_data`` of our sealed frame with ``boot`` and ``counter``."""
        return self._head + self._boot + boot.to_bytes(8, "big") + self._counter + counter.to_bytes(8, "big")

    @staticmethod
    def box_head(length: int) -> bytes:
        return bytes((FieldTag.BOX,)) + length.to_bytes(2, "big")
