"""The CLI's dispatch and formatting, and configuration from the environment: in-process, no agent."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import pytest

import client.cli.main
from client.cli.main import RESERVED, main
from client.cli.render import peer_line
from client.daemon.config import ConfigError, agent_config, parse_server
from client.engine.bounds import Bounds
from client.engine.events import LINES, Line, describe, event
from protocol import Endpoint

BASE = {"NATLAB_ID": "alice", "NATLAB_SERVER": "198.18.0.10:9000"}


@pytest.fixture
def chats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the peer of each chat the CLI would open, instead of opening it."""
    opened: list[str] = []

    def fake_chat(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        opened.append(args.peer)
        return 0

    monkeypatch.setattr(client.cli.main, "cmd_chat", fake_chat)
    return opened


def test_a_bare_peer_id_opens_a_chat(chats: list[str]) -> None:
    assert main(["bob"], {}) == 0
    assert main(["chat", "status"], {}) == 0  # a peer named like a command
    assert chats == ["bob", "status"]


@pytest.mark.parametrize("name", sorted(RESERVED - {"agent", "chat", "help"}))
def test_reserved_names_are_commands_not_peers(name: str, chats: list[str]) -> None:
    with pytest.raises(SystemExit):
        main([name, "--bogus-option"], {})
    assert chats == []


def test_invalid_peer_id_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "bad!id"], {}) == 2
    assert capsys.readouterr().err.startswith("client: invalid peer id 'bad!id'")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["help"], {}) == 0
    assert "client send <peer> TEXT..." in capsys.readouterr().out


def test_peer_line() -> None:
    direct = {"id": "bob", "addr": "198.18.0.12:40000", "path": "direct", "reason": None, "time_to_direct_ms": 23.4}
    assert peer_line(direct).split() == ["bob", "198.18.0.12:40000", "direct", "23", "ms"]
    failed = {**direct, "path": "none", "reason": "punch failed: x", "time_to_direct_ms": None}
    assert peer_line(failed).endswith("none      punch failed: x")
    assert peer_line({"id": "carol", "addr": None, "path": "none"}).split() == ["carol", "-", "none"]


def test_agent_config_defaults_and_units() -> None:
    config = agent_config({**BASE, "NATLAB_PUNCH_INTERVAL": "50", "NATLAB_REGISTER_RETRY": "100"})
    assert config.server == Endpoint("198.18.0.10", 9000)
    assert (config.port, config.punch_timeout, config.keepalive) == (0, 5.0, 10.0)
    assert config.punch_interval == pytest.approx(0.050)
    assert config.register_retry == pytest.approx(0.100)
    assert config.relay_head_start == pytest.approx(0.010)
    assert agent_config({**BASE, "NATLAB_RELAY_HEAD_START": "0"}).core().relay_head_start == 0
    assert config.socket == "/run/natlab/client.sock"
    assert config.events == "/var/log/natlab/events.jsonl"
    core = config.core()
    assert core.timing.timeout == 5.0
    assert core.timing.interval == pytest.approx(0.050)


def test_agent_bounds_default_and_from_the_environment() -> None:
    assert agent_config(BASE).core().bounds == Bounds(
        max_peers=256, peer_idle=120.0, max_held=4096, probe_budget=512, intro_rate=2.0, intro_burst=20
    )
    env = {
        "NATLAB_MAX_PEERS": "16",
        "NATLAB_PEER_IDLE": "30",
        "NATLAB_MAX_HELD": "64",
        "NATLAB_PROBE_BUDGET": "200",
        "NATLAB_INTRO_RATE": "0.5",
        "NATLAB_INTRO_BURST": "4",
    }
    assert agent_config({**BASE, **env}).core().bounds == Bounds(16, 30.0, 64, 200, 0.5, 4)


@pytest.mark.parametrize("value", ["0", "-3", "lots", "1.5", "²"])
def test_a_bad_bound_is_a_clear_error(value: str) -> None:
    with pytest.raises(ConfigError, match=f"^NATLAB_MAX_PEERS={value!r}: expected a whole number, at least 1$"):
        agent_config({**BASE, "NATLAB_MAX_PEERS": value})


def test_tunnel_config_defaults_and_switches() -> None:
    default = agent_config(BASE)
    assert (default.tunnel, default.tunnel_port, default.registry) == (
        False,
        51820,
        "/run/natlab-secrets/registry.json",
    )
    env = {"NATLAB_TUNNEL": "1", "NATLAB_TUNNEL_PORT": "51999", "NATLAB_REGISTRY": "/tmp/r.json"}
    on = agent_config({**BASE, **env})
    assert (on.tunnel, on.tunnel_port, on.registry) == (True, 51999, "/tmp/r.json")
    assert agent_config({**BASE, "NATLAB_TUNNEL": "0"}).tunnel is False
    assert default.tunnel_connect is True
    assert agent_config({**BASE, "NATLAB_TUNNEL_CONNECT": "0"}).tunnel_connect is False
    assert default.tunnel_kernel is True
    assert agent_config({**BASE, "NATLAB_TUNNEL_KERNEL": "0"}).tunnel_kernel is False


def test_server_by_name_is_resolved_once() -> None:
    assert parse_server("server:9000", lambda host, port: "198.18.0.10") == Endpoint("198.18.0.10", 9000)

    def unresolvable(host: str, port: int) -> str:
        raise OSError("Name or service not known")

    with pytest.raises(ConfigError, match="cannot resolve 'nowhere'"):
        parse_server("nowhere:9000", unresolvable)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NATLAB_KEEPALIVE": "0"}, "NATLAB_KEEPALIVE='0': expected a positive number of s"),
        ({"NATLAB_KEEPALIVE": "nan"}, "NATLAB_KEEPALIVE='nan': expected a positive number of s"),
        ({"NATLAB_REGISTER_RETRY": "x"}, "NATLAB_REGISTER_RETRY='x': expected a number of ms"),
        ({"NATLAB_PORT": "-1"}, "NATLAB_PORT='-1': expected a UDP port"),
        ({"NATLAB_SERVER": "198.18.0.10:0"}, "NATLAB_SERVER='198.18.0.10:0': expected ip:port"),
        ({"NATLAB_LOG": "loud"}, "NATLAB_LOG='loud': expected one of debug, info, warning"),
        ({"NATLAB_TUNNEL": "maybe"}, "NATLAB_TUNNEL='maybe': expected 1 or 0"),
        ({"NATLAB_TUNNEL_PORT": "0"}, "NATLAB_TUNNEL_PORT='0': expected a UDP port, 1-65535"),
        ({"NATLAB_TUNNEL_CONNECT": "sometimes"}, "NATLAB_TUNNEL_CONNECT='sometimes': expected 1 or 0"),
        ({"NATLAB_TUNNEL_KERNEL": "fast"}, "NATLAB_TUNNEL_KERNEL='fast': expected 1 or 0"),
    ],
)
def test_bad_config_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        agent_config({**BASE, **env})
    assert str(exc.value).startswith(message)


def test_every_event_has_a_line() -> None:
    examples = {
        "registered": event("registered", server="198.18.0.10:9000"),
        "punch_started": event("punch_started", peer="bob", addr="1.2.3.4:5"),
        "direct_confirmed": event("direct_confirmed", peer="bob", addr="1.2.3.4:5", time_to_direct_ms=23.4),
        "punch_failed": event("punch_failed", peer="bob", addr="1.2.3.4:5", reason="punch failed: x"),
        "message_sent": event("message_sent", peer="bob", text="hi"),
        "message_received": event("message_received", peer="bob", text="gday", addr="1.2.3.4:5"),
        "server_error": event("server_error", reason="invalid peers"),
        "disconnected": event("disconnected", peer="bob"),
        "peer_forgotten": event("peer_forgotten", peer="bob", reason="idle for 120 s"),
        "relay_confirmed": event("relay_confirmed", peer="bob", relay="198.18.0.20:49161", time_to_relay_ms=4.2),
        "path_changed": event(
            "path_changed", peer="bob", old="relay", new="direct", reason="x", addr="198.18.0.12:40000"
        ),
        "message_delivered": event("message_delivered", peer="bob", text="hi", epoch=7, seq=0),
        "message_undelivered": event(
            "message_undelivered", peer="bob", text="hi", reason="not acknowledged", epoch=7, seq=1
        ),
        "turn_allocated": event("turn_allocated", relay="198.18.0.20:49161"),
        "turn_failed": event("turn_failed", reason="turn: no response"),
        "peer_offline": event("peer_offline", peer="bob", last_seen_s=42.0),
        "peer_back": event("peer_back", peer="bob"),
    }
    assert set(examples) == set(LINES)
    assert all(not describe(ev).text.startswith("{") for ev in examples.values())
    assert describe(examples["relay_confirmed"]) == Line("client", "relayed path to bob via 198.18.0.20:49161 in 4 ms")
    assert describe(examples["path_changed"]) == (
        Line("client", "direct path to bob (198.18.0.12:40000) (upgraded from relay)")
    )
    lost = event("path_changed", peer="bob", old="relay", new="none", reason="relay lost: turn: gone", addr=None)
    assert describe(lost) == Line("client", "path to bob: relay -> none (relay lost: turn: gone)")
    forgotten = describe(examples["peer_forgotten"])
    assert forgotten == Line("client", "forgot idle peer bob: idle for 120 s")
    relayed = event("punch_failed", peer="bob", addr="1.2.3.4:5", reason="punch failed: x", relayed=True)
    assert describe(relayed) == Line("client", "direct punch to bob failed: punch failed: x")
    assert describe(examples["punch_started"]) == Line("client", "punching peer bob (1.2.3.4:5)")
    assert describe(examples["direct_confirmed"]) == Line("client", "direct path to bob (1.2.3.4:5) in 23 ms")
    assert describe(examples["message_received"]) == Line("peer bob", "gday")
    seed = event("message_received", peer="carol", text="hi", addr="1.2.3.4:5", seed=True)
    assert describe(seed) == Line("peer carol, seed-era, unauthenticated", "hi")  # anyone could have sent it
    assert describe(examples["peer_offline"]) == Line("bob is offline", "")  # printed as [bob is offline]
    assert describe(examples["peer_back"]) == Line("bob is back", "")
    refused = event("server_error", reason="invalid peers", peer="carol")
    assert describe(refused) == Line("client", "no path to carol: server: invalid peers")
    assert describe({"event": "punch_started"}).text.startswith("{")  # missing fields: raw, no crash
    with pytest.raises(ValueError, match="unknown event"):
        event("exploded")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("NATLAB_PUNCH_TIMEOUT", "soon", "a number"), ("NATLAB_DELIVERY_DEADLINE", "-1", "a positive number")],
)
def test_a_bad_wait_setting_is_a_clear_error_not_a_fallback(
    name: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", "bob", "hi"], {**BASE, name: value, "NATLAB_SOCKET": "/nonexistent/s"}) == 2
    assert capsys.readouterr().err == f"client: {name}={value!r}: expected {expected} of s\n"
