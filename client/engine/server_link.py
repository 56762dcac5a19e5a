"""The agent's dialogue with its signal server: register (with our relay candidate) until ``ok``, announce a
changed relay again, and the connects that wait for the server's ``punch``. Pure, time passed in."""

from __future__ import annotations

from collections.abc import Callable

from client.engine.events import Registered, ServerError
from client.engine.outputs import Emit, Output, Send
from client.engine.peer import Peer, PendingConnect
from protocol import Candidates, Connect, Endpoint, Err, Register


class ServerLink:
    """Registration and pending connects; ``relayed()`` is our relayed address to announce (or ``None``)."""

    def __init__(
        self, me: str, server: Endpoint, retry: float, timeout: float, relayed: Callable[[], Endpoint | None]
    ) -> None:
        self.me = me
        self.server = server
        self.retry = retry
        """Seconds between registers (and connects) the server has not answered yet."""
        self.timeout = timeout
        """Seconds a connect may wait for its punch."""
        self.registered = False
        self.reannouncing = False
        """Our relay changed since the server last said ok: register again until it does."""
        self._relayed = relayed
        self._last_register: Register | None = None  # the most recent register sent (with our candidates)
        self._next_register = 0.0

    def start(self, now: float) -> Send:
        self._next_register = now + self.retry
        return self._send_register()

    @property
    def due(self) -> bool:
        """Whether a register is still wanted."""
        return not self.registered or self.reannouncing

    def tick(self, now: float) -> list[Output]:
        if not self.due or now < self._next_register:
            return []
        self._next_register = now + self.retry
        return [self._send_register()]

    def wakeup(self) -> float | None:
        return self._next_register if self.due else None

    def reannounce(self, now: float) -> None:
        """Our relay changed: register again (with the new candidates) until the server says ok."""
        self.reannouncing = True
        self._next_register = now

    def on_ok(self) -> list[Output]:
        # The ok may answer an earlier register than the last one sent; the last one is in flight, so only
        # candidates that changed since it was sent still need announcing.
        self.reannouncing = self._last_register != self._register()
        if self.registered:
            return []
        self.registered = True
        return [Emit(Registered(server=str(self.server)))]

    def on_err(self, err: Err, peers: dict[str, Peer]) -> list[Output]:
        # `err` carries no request id: while unregistered it answers our register; otherwise it answers
        # the oldest connect still waiting for its punch (the seed's `err invalid peers`), if any.
        waiting = [(p.pending.started, peer_id) for peer_id, p in peers.items() if p.pending]
        if not self.registered or not waiting:
            return [Emit(ServerError(reason=err.reason))]
        _, peer_id = min(waiting)
        return self.refuse(peers[peer_id], err.reason)

    def start_connect(self, peer: Peer, now: float) -> list[Output]:
        """Ask the server to introduce us to ``peer`` (both paths start over)."""
        peer.path.reset()
        peer.relay.reset()
        peer.pending = PendingConnect(now, now + self.timeout, now + self.retry)
        return [Send(Connect(self.me, peer.id), self.server)]

    def tick_pending(self, peer: Peer, now: float) -> list[Output]:
        pending = peer.pending
        if pending is None:
            return []
        if now >= pending.deadline:
            return self.refuse(peer, f"no answer to connect within {self.timeout:g} s")
        if now < pending.next_send:
            return []
        # Datagrams get lost: repeat the request until the punch comes (duplicate punches are ignored).
        pending.next_send = now + self.retry
        return [Send(Connect(self.me, peer.id), self.server)]

    def refuse(self, peer: Peer, reason: str) -> list[Output]:
        peer.pending = None
        peer.path.reset(f"server: {reason}")
        return [Emit(ServerError(reason=reason, peer=peer.id))]

    def _register(self) -> Register:
        return Register(self.me, Candidates(self._relayed()))

    def _send_register(self) -> Send:
        self._last_register = self._register()
        return Send(self._last_register, self.server)
