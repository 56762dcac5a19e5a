"""Real agents relaying through a real coturn on loopback: direct probes are sent to a sink (the fake signal
server lies about addresses), so the only way through is TURN. Skipped without ``turnserver``."""

from __future__ import annotations

import json
import pathlib
import secrets
from collections.abc import Callable, Iterator

import pytest

from protocol import Candidates, Endpoint
from tests.test_client_agent import AgentProcess, FakeSignalServer, sink, wait_for, workdir
from tests.test_client_turn_coturn import Coturn, _free_udp_ports, running_coturn

__all__ = ["sink", "workdir"]  # fixtures shared with test_client_agent

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.needs("turnserver"),  # apt-get install coturn
]


class ExtendedSignalServer(FakeSignalServer):
    """The fake signal server (it keeps candidates and sends extended punches between extended peers)."""

    @property
    def candidates(self) -> dict[str, Candidates | None]:
        return self.signal.candidates


def _registered_relay(agent: AgentProcess, server: ExtendedSignalServer) -> Callable[[], bool]:
    def done() -> bool:
        relay = agent.status()["relay"]
        return relay is not None and server.candidates.get(agent.id) == Candidates(Endpoint.parse(relay))

    return done


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """A real coturn on free loopback ports for this module."""
    ports = _free_udp_ports(17)
    with running_coturn(tmp_path_factory.mktemp("coturn"), ports, secrets.token_urlsafe(12)) as server:
        yield server


@pytest.fixture
def extended_server() -> Iterator[ExtendedSignalServer]:
    """The extended fake signal server, stopped afterwards."""
    fake = ExtendedSignalServer()
    yield fake
    fake.close()


@pytest.fixture
def relay_agents(
    coturn: Coturn,
    extended_server: ExtendedSignalServer,
    workdir: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], AgentProcess]]:
    """Start agents that use the coturn (password file written only after they start); stopped afterwards."""
    password = workdir / "turn-password"
    monkeypatch.setenv("NATLAB_TURN", str(coturn.server))
    monkeypatch.setenv("NATLAB_TURN_USER", "natlab")
    monkeypatch.setenv("NATLAB_TURN_PASSWORD_FILE", str(password))
    monkeypatch.setenv("NATLAB_DELIVERY_DEADLINE", "10")
    agents: list[AgentProcess] = []

    def start(peer_id: str) -> AgentProcess:
        agents.append(AgentProcess(peer_id, extended_server.addr, workdir))
        return agents[-1]

    yield start
    for agent in agents:
        assert agent.stop() == 0, agent.stderr()
        assert "Traceback" not in agent.stderr()


def test_blocked_direct_path_falls_back_to_the_relay_and_delivers_both_ways(
    relay_agents: Callable[[str], AgentProcess],
    extended_server: ExtendedSignalServer,
    sink: Endpoint,
    workdir: pathlib.Path,
    coturn: Coturn,
) -> None:
    alice, bob = relay_agents("alice"), relay_agents("bob")
    status = alice.status()
    assert status["turn"]["state"] == "failed"
    assert "password file" in status["turn"]["reason"]  # the TURN container has not written it yet

    (workdir / "turn-password").write_text(coturn.secret + "\n")
    for agent in (alice, bob):
        wait_for(_registered_relay(agent, extended_server), f"{agent.id} to allocate and register a relay")
    extended_server.lies = {"alice": sink, "bob": sink}

    result = alice.cli("connect", "bob", "--json")
    assert result.returncode == 0, result.stderr + alice.stderr()
    peer = json.loads(result.stdout)
    assert (peer["path"], peer["relay"]) == ("relay", bob.status()["relay"])
    assert alice.named("relay_confirmed")

    result = alice.cli("send", "bob", "hello", "via", "relay")
    assert result.returncode == 0, result.stderr
    result = bob.cli("send", "alice", "and back")
    assert result.returncode == 0, result.stderr
    assert [e["text"] for e in bob.named("message_received")] == ["hello via relay"]
    assert [e["text"] for e in alice.named("message_received")] == ["and back"]

    result = alice.cli("flood", "bob", "50", "--size", "300")
    assert result.returncode == 0, result.stderr
    flood = json.loads(result.stdout)
    assert (flood["sent"], flood["delivered"], flood["undelivered"]) == (50, 50, 0)
    received = wait_for(lambda: len(bob.named("message_received")) == 51 and bob.named("message_received"), "flood")
    assert [e["text"][:6] for e in received[1:]] == [f"{i:06d}" for i in range(1, 51)]

    reason = f"punch failed: no response from {sink} within 1 s; relayed, still probing direct"
    wait_for(lambda: (p := alice.peer("bob")) and p["reason"] == reason, "the direct punch to time out")
    peer = alice.peer("bob")
    assert peer is not None
    assert (peer["path"], peer["sent"], peer["delivered"]) == ("relay", 51, 51)
    assert isinstance(peer["time_to_first_message_ms"], float)


def test_a_direct_flood_logs_each_messages_events_once_in_order(
    relay_agents: Callable[[str], AgentProcess],
    extended_server: ExtendedSignalServer,
    workdir: pathlib.Path,
    coturn: Coturn,
) -> None:
    """More than a window's worth, so that acks settle runs of messages while the flood goes on: the agent
    writes events in batches, and every message must still have its three lines, in order, fields as
    documented."""
    (workdir / "turn-password").write_text(coturn.secret + "\n")
    alice, bob = relay_agents("alice"), relay_agents("bob")
    for agent in (alice, bob):
        wait_for(_registered_relay(agent, extended_server), f"{agent.id} to allocate and register a relay")
    result = alice.cli("connect", "bob", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "direct"

    count = 700
    result = alice.cli("flood", "bob", str(count), "--size", "120")
    assert result.returncode == 0, result.stderr
    flood = json.loads(result.stdout)
    assert (flood["sent"], flood["delivered"], flood["undelivered"]) == (count, count, 0)

    sent, delivered = alice.named("message_sent"), alice.named("message_delivered")
    received = wait_for(lambda: len(got := bob.named("message_received")) == count and got, "bob's events")
    texts = [f"{i:06d} ".ljust(120, "x") for i in range(1, count + 1)]
    epoch = sent[0]["epoch"]
    assert [(e["text"], e["epoch"], e["seq"]) for e in sent] == [(t, epoch, i) for i, t in enumerate(texts)]
    assert [(e["text"], e["epoch"], e["seq"]) for e in delivered] == [(t, epoch, i) for i, t in enumerate(texts)]
    assert [e["text"] for e in received] == texts
    assert {tuple(e) for e in sent + delivered} == {("ts", "event", "peer", "text", "epoch", "seq")}
    assert {tuple(e) for e in received} == {("ts", "event", "peer", "text", "addr")}
    assert {e["addr"] for e in received} == {alice.status()["local"]}
