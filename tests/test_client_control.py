"""The control socket's request handling against a stand-in agent (the Protocol it depends on): in-process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from client.daemon.control import Subscription, _answer


class StandIn:
    """An agent whose path to bob never settles, and that records the sends it is asked for."""

    def __init__(self) -> None:
        self.sends: list[tuple[str, str, bool]] = []
        self.floods: list[tuple[str, int, int, float | None]] = []
        self.forever: asyncio.Event | None = None

    def status(self) -> dict[str, Any]:
        return {"id": "alice", "peers": []}

    async def tunnel_status(self) -> dict[str, Any]:
        return {"up": False, "peers": []}

    async def tunnel_up(self) -> dict[str, Any]:
        return {"up": True, "peers": []}

    async def tunnel_down(self) -> dict[str, Any]:
        return await self.tunnel_status()

    async def connect(self, peer: str) -> dict[str, Any] | None:
        return self.peer(peer)

    async def settle(self, peer: str) -> dict[str, Any] | None:
        self.forever = asyncio.Event()
        await self.forever.wait()  # never set: the request's timeout must end the wait
        return None

    def peer(self, peer: str) -> dict[str, Any] | None:
        return {"id": peer, "path": "punching"}

    def disconnect(self, peer: str) -> dict[str, Any] | None:
        return None

    async def send(self, peer: str, text: str, wait: bool = False) -> dict[str, Any] | None:
        self.sends.append((peer, text, wait))
        return self.peer(peer)

    async def flood(self, peer: str, count: int, size: int, rate: float | None = None) -> dict[str, Any]:
        self.floods.append((peer, count, size, rate))
        return {}

    def subscribe(self, subscription: Subscription) -> None:
        pass

    def unsubscribe(self, subscription: Subscription) -> None:
        pass


def test_settle_answers_unsettled_after_its_timeout() -> None:
    answer = asyncio.run(_answer(StandIn(), {"op": "settle", "peer": "bob", "timeout": 0.05}))
    assert answer == {"ok": True, "peer": {"id": "bob", "path": "punching"}, "settled": False}


@pytest.mark.parametrize("timeout", [None, 0, -1, "5", True, 1e9])
def test_settle_needs_a_sane_timeout(timeout: Any) -> None:
    answer = asyncio.run(_answer(StandIn(), {"op": "settle", "peer": "bob", "timeout": timeout}))
    assert answer == {"ok": False, "error": "settle: 'timeout' must be a number of seconds, 0-3600"}


def test_one_send_op_with_an_optional_wait() -> None:
    agent = StandIn()
    asyncio.run(_answer(agent, {"op": "send", "peer": "bob", "text": "a"}))
    asyncio.run(_answer(agent, {"op": "send", "peer": "bob", "text": "b", "wait": True}))
    assert agent.sends == [("bob", "a", False), ("bob", "b", True)]


def test_a_flood_is_paced_only_when_asked() -> None:
    agent = StandIn()
    asyncio.run(_answer(agent, {"op": "flood", "peer": "bob", "count": 3}))
    asyncio.run(_answer(agent, {"op": "flood", "peer": "bob", "count": 3, "size": 20, "rate": 2.5}))
    assert agent.floods == [("bob", 3, 100, None), ("bob", 3, 20, 2.5)]


@pytest.mark.parametrize("rate", [0, -1, "5", True, 1e9, float("nan")])
def test_a_paced_flood_needs_a_sane_rate(rate: Any) -> None:
    agent = StandIn()
    answer = asyncio.run(_answer(agent, {"op": "flood", "peer": "bob", "count": 3, "rate": rate}))
    error = "flood: 'rate' must be a number of messages a second, above 0 and at most 100000"
    assert (answer, agent.floods) == ({"ok": False, "error": error}, [])


def test_status_carries_the_tunnel_and_tunnel_takes_up_down_status() -> None:
    agent = StandIn()
    status = asyncio.run(_answer(agent, {"op": "status"}))
    assert status == {"ok": True, "status": {"id": "alice", "peers": [], "tunnel": {"up": False, "peers": []}}}
    assert asyncio.run(_answer(agent, {"op": "tunnel", "action": "up"})) == {
        "ok": True,
        "tunnel": {"up": True, "peers": []},
    }
    assert asyncio.run(_answer(agent, {"op": "tunnel", "action": "down"}))["tunnel"]["up"] is False
    bad = asyncio.run(_answer(agent, {"op": "tunnel", "action": "sideways"}))
    assert bad == {"ok": False, "error": "tunnel: 'action' must be up, down or status"}
