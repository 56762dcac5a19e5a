"""Configuration from the environment (NATLAB_*), checked up front so a bad value is one clear line.

=========================  =================================  ==============================================
variable                   default                            meaning
=========================  =================================  ==============================================
NATLAB_ID                  (required for the agent)           this host's peer id
NATLAB_SERVER              (required for the agent)           signal server, ``ip:port`` (or ``name:port``)
NATLAB_PORT                0 (ephemeral)                      local UDP port
NATLAB_SOCKET              /run/natlab/client.sock            the agent's control socket
NATLAB_EVENTS              /var/log/natlab/events.jsonl       JSON-lines event log
NATLAB_READY_FILE          /run/natlab/registered             exists while registered (the healthcheck)
NATLAB_PUNCH_TIMEOUT       5 (s)                              give up punching after this long
NATLAB_PUNCH_INTERVAL      20 (ms)                            time between probes
NATLAB_RELAY_HEAD_START    10 (ms)                            direct probes' lead over relay probes (0: none)
NATLAB_KEEPALIVE           10 (s)                             keepalive period; 3 silent periods lose a path
NATLAB_REGISTER_RETRY      250 (ms)                           register / connect retry period
NATLAB_TURN                (unset: no relay)                  TURN server ``ip:port`` for the relay fallback
NATLAB_STUN                (unset: NATLAB_TURN)               STUN server for ``client nat-type`` (RFC 5780)
NATLAB_TURN_USER           natlab                             TURN user name
NATLAB_TURN_PASSWORD_FILE  /run/natlab-secrets/turn-password  TURN password, read at each allocation
NATLAB_DIRECT_RETRY        1 (s)                              direct probe period while relayed
NATLAB_DELIVERY_DEADLINE   30 (s)                             give up on an unacknowledged message
NATLAB_KEY_FILE            (unset: an ephemeral identity)     this host's key file (trust.keys), waited for
NATLAB_MAX_PEERS           256                                peers known at once (oldest idle out first)
NATLAB_PEER_IDLE           120 (s)                            forget a peer idle this long
NATLAB_MAX_HELD            4096                               out-of-order frames held, across all peers
NATLAB_PROBE_BUDGET        512 (bytes)                        probes per path per connect until answered
NATLAB_INTRO_RATE          2 (per s)                          punches we did not ask for, sustained ...
NATLAB_INTRO_BURST         20                                 ... and at once (a token bucket)
NATLAB_TUNNEL              0 (off)                            1: bring the WireGuard tunnel up at start
NATLAB_TUNNEL_PORT         51820                              WireGuard's listen port (the agent's use only)
NATLAB_TUNNEL_CONNECT      1                                  0: the tunnel asks for no path (carries peers
                                                              that have one; the grid)
NATLAB_TUNNEL_KERNEL       1                                  0: the agent carries every tunnel datagram (1:
                                                              the kernel carries direct peers' datagrams)
NATLAB_REGISTRY            /run/natlab-secrets/registry.json  the lab's registry: peers' overlay addresses
NATLAB_LOG                 info                               log level: debug, info, warning
=========================  =================================  ==============================================

A missing or empty password file is not an error: the allocation is retried (1 s doubling to 8 s) and
the reason shows in ``client status``; in the lab the TURN container writes the file, maybe after we start.
The key file is another matter: the agent's identity must not change once it has registered, so the agent
waits for it at start (up to :data:`KEY_WAIT` s: the lab's server writes it as the hosts start) and stops with
an error naming the file if it does not appear or cannot be read.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from client.engine.bounds import Bounds
from client.engine.core import CoreConfig, RequestError, check_id
from client.engine.delivery import DeliveryConfig
from client.engine.path import PathTiming
from client.turn.relay import RelayConfig, password_file
from protocol import Endpoint
from trust import Identity, KeyFileError, KeyFileMissing

DEFAULT_SOCKET = "/run/natlab/client.sock"
DEFAULT_EVENTS = "/var/log/natlab/events.jsonl"
DEFAULT_READY_FILE = "/run/natlab/registered"
DEFAULT_TURN_USER = "natlab"
DEFAULT_TURN_PASSWORD_FILE = "/run/natlab-secrets/turn-password"
DEFAULT_REGISTRY = "/run/natlab-secrets/registry.json"
DEFAULT_TUNNEL_PORT = 51820
LOG_LEVELS = ("debug", "info", "warning")
KEY_WAIT = 30.0
"""Seconds the agent waits for NATLAB_KEY_FILE to appear (the lab's server makes the keys as hosts start)."""
KEY_POLL = 0.1

logger = logging.getLogger("client")


class ConfigError(ValueError):
    """A missing or malformed NATLAB_* variable; the message names it (the user's fault: exit 2)."""


class AgentStartError(RuntimeError):
    """The agent cannot start here (port taken, socket in use, log not writable): exit 1."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs; times in seconds."""

    id: str
    server: Endpoint
    port: int = 0
    socket: str = DEFAULT_SOCKET
    events: str = DEFAULT_EVENTS
    ready_file: str = DEFAULT_READY_FILE
    punch_timeout: float = 5.0
    punch_interval: float = 0.020
    relay_head_start: float = 0.010
    keepalive: float = 10.0
    register_retry: float = 0.250
    log_level: str = "info"
    turn: Endpoint | None = None
    turn_user: str = DEFAULT_TURN_USER
    turn_password_file: str = DEFAULT_TURN_PASSWORD_FILE
    direct_retry: float = 1.0
    delivery_deadline: float = 30.0
    key_file: str | None = None
    identity: Identity = field(default_factory=Identity.generate, compare=False)
    """Ephemeral unless :func:`with_identity` loaded ``key_file`` (the agent does at start)."""
    bounds: Bounds = field(default_factory=Bounds)
    tunnel: bool = False
    """Bring the tunnel up at start (NATLAB_TUNNEL=1); ``client tunnel up`` does it later otherwise."""
    tunnel_port: int = DEFAULT_TUNNEL_PORT
    tunnel_connect: bool = True
    """The tunnel asks for a path to every registry peer that has none (NATLAB_TUNNEL_CONNECT=0: it does not)."""
    tunnel_kernel: bool = True
    """The kernel carries the tunnel's datagrams to peers on a direct path (NATLAB_TUNNEL_KERNEL=0: the agent)."""
    registry: str = DEFAULT_REGISTRY

    def core(self, wall_offset: float = 0.0) -> CoreConfig:
        """The core's configuration; ``wall_offset``: wall-clock seconds minus the loop's clock (see CoreConfig)."""
        timing = PathTiming(self.punch_timeout, self.punch_interval)
        relay = None
        if self.turn is not None:
            relay = RelayConfig(self.turn, self.turn_user, password_file(self.turn_password_file))
        return CoreConfig(
            self.id,
            self.server,
            timing,
            self.keepalive,
            self.register_retry,
            relay=relay,
            direct_retry=self.direct_retry,
            relay_head_start=self.relay_head_start,
            delivery=DeliveryConfig(deadline=self.delivery_deadline, ack_every=16),
            identity=self.identity,
            bounds=self.bounds,
            wall_offset=wall_offset,
        )


def socket_path(env: Mapping[str, str]) -> str:
    return env.get("NATLAB_SOCKET") or DEFAULT_SOCKET


def events_path(env: Mapping[str, str]) -> str:
    return env.get("NATLAB_EVENTS") or DEFAULT_EVENTS


def punch_timeout(env: Mapping[str, str]) -> float:
    """NATLAB_PUNCH_TIMEOUT in seconds (the agent's, and how long the CLI waits for a connect)."""
    return _positive(env, "NATLAB_PUNCH_TIMEOUT", 5.0, scale=1.0)


def delivery_deadline(env: Mapping[str, str]) -> float:
    """NATLAB_DELIVERY_DEADLINE in seconds (the agent's, and how long the CLI waits for an ack)."""
    return _positive(env, "NATLAB_DELIVERY_DEADLINE", 30.0, scale=1.0)


def agent_config(env: Mapping[str, str], resolve: Callable[[str, int], str] | None = None) -> AgentConfig:
    """The agent's configuration, or :class:`ConfigError`. ``resolve`` maps a host name to an IP."""
    peer_id = _required(env, "NATLAB_ID")
    try:
        check_id(peer_id)
    except RequestError as exc:
        raise ConfigError(f"NATLAB_ID: {exc}") from None
    level = env.get("NATLAB_LOG", "info").lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"NATLAB_LOG={level!r}: expected one of {', '.join(LOG_LEVELS)}")
    return AgentConfig(
        id=peer_id,
        server=parse_server(_required(env, "NATLAB_SERVER"), resolve or _resolve),
        port=_port(env.get("NATLAB_PORT", "0")),
        socket=socket_path(env),
        events=events_path(env),
        ready_file=env.get("NATLAB_READY_FILE") or DEFAULT_READY_FILE,
        punch_timeout=punch_timeout(env),
        punch_interval=_positive(env, "NATLAB_PUNCH_INTERVAL", 20.0, scale=0.001),
        relay_head_start=_positive(env, "NATLAB_RELAY_HEAD_START", 10.0, scale=0.001, zero=True),
        keepalive=_positive(env, "NATLAB_KEEPALIVE", 10.0, scale=1.0),
        register_retry=_positive(env, "NATLAB_REGISTER_RETRY", 250.0, scale=0.001),
        log_level=level,
        turn=_turn(env, resolve or _resolve),
        turn_user=env.get("NATLAB_TURN_USER") or DEFAULT_TURN_USER,
        turn_password_file=env.get("NATLAB_TURN_PASSWORD_FILE") or DEFAULT_TURN_PASSWORD_FILE,
        direct_retry=_positive(env, "NATLAB_DIRECT_RETRY", 1.0, scale=1.0),
        delivery_deadline=delivery_deadline(env),
        key_file=env.get("NATLAB_KEY_FILE", "").strip() or None,
        bounds=bounds(env),
        tunnel=_flag(env, "NATLAB_TUNNEL"),
        tunnel_port=_tunnel_port(env.get("NATLAB_TUNNEL_PORT", "")),
        tunnel_connect=_flag_on(env, "NATLAB_TUNNEL_CONNECT"),
        tunnel_kernel=_flag_on(env, "NATLAB_TUNNEL_KERNEL"),
        registry=env.get("NATLAB_REGISTRY", "").strip() or DEFAULT_REGISTRY,
    )


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in ("", "0", "off", "no", "false"):
        return False
    if text in ("1", "on", "yes", "true"):
        return True
    raise ConfigError(f"{name}={text!r}: expected 1 or 0")


def _flag_on(env: Mapping[str, str], name: str) -> bool:
    """A flag that is on unless set to 0 (or off, no, false)."""
    return _flag(env, name) if env.get(name, "").strip() else True


def _tunnel_port(text: str) -> int:
    if not text.strip():
        return DEFAULT_TUNNEL_PORT
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"NATLAB_TUNNEL_PORT={text!r}: expected a UDP port, 1-65535")
    return int(text)


def bounds(env: Mapping[str, str]) -> Bounds:
    """The agent's bounds (see :class:`client.engine.bounds.Bounds`) from NATLAB_MAX_PEERS and the rest."""
    default = Bounds()
    return Bounds(
        max_peers=_count(env, "NATLAB_MAX_PEERS", default.max_peers),
        peer_idle=_positive(env, "NATLAB_PEER_IDLE", default.peer_idle, scale=1.0),
        max_held=_count(env, "NATLAB_MAX_HELD", default.max_held),
        probe_budget=_count(env, "NATLAB_PROBE_BUDGET", default.probe_budget),
        intro_rate=_positive(env, "NATLAB_INTRO_RATE", default.intro_rate, scale=1.0),
        intro_burst=_count(env, "NATLAB_INTRO_BURST", default.intro_burst),
    )


def with_identity(config: AgentConfig, wait: float = KEY_WAIT) -> AgentConfig:
    """``config`` with the identity of its key file, waiting up to ``wait`` s for the file to appear; without
    a key file, as it is (an ephemeral identity: a first-come id on the server). Logs which.
    :class:`AgentStartError` naming the file when it does not appear in time or cannot be used."""
    if config.key_file is None:
        logger.info("no NATLAB_KEY_FILE: ephemeral identity, key %s", config.identity.public.fingerprint)
        return config
    import tenacity  # 20 ms to import: only the agent's start needs it, not every `client` command

    path = Path(config.key_file)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(KeyFileMissing),
        stop=tenacity.stop_after_delay(wait),
        wait=tenacity.wait_fixed(KEY_POLL),
        reraise=True,
    )
    try:
        identity = retrying(Identity.load, path)
    except KeyFileMissing:
        raise AgentStartError(f"key file {path} did not appear within {wait:g} s (NATLAB_KEY_FILE)") from None
    except KeyFileError as exc:
        raise AgentStartError(f"cannot use key file (NATLAB_KEY_FILE): {exc}") from None
    logger.info("identity from %s, key %s", path, identity.public.fingerprint)
    return replace(config, identity=identity)


def _turn(env: Mapping[str, str], resolve: Callable[[str, int], str]) -> Endpoint | None:
    text = env.get("NATLAB_TURN", "").strip()
    return None if not text else parse_server(text, resolve, name="NATLAB_TURN")


def stun_server(env: Mapping[str, str], resolve: Callable[[str, int], str] | None = None) -> Endpoint:
    """The STUN server ``client nat-type`` asks by default: NATLAB_STUN, else the agent's TURN server."""
    for name in ("NATLAB_STUN", "NATLAB_TURN"):
        text = env.get(name, "").strip()
        if text:
            return parse_server(text, resolve or _resolve, name=name)
    raise ConfigError("no STUN server: pass --server IP:PORT, or set NATLAB_STUN (or NATLAB_TURN)")


def parse_server(text: str, resolve: Callable[[str, int], str], name: str = "NATLAB_SERVER") -> Endpoint:
    """``ip:port``, or ``name:port`` resolved once now (compose service names)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{name}={text!r}: expected ip:port, e.g. 198.18.0.10:9000")
    try:
        return Endpoint.parse(text)
    except ValueError:
        pass
    try:
        return Endpoint(resolve(host, int(port_text)), int(port_text))
    except OSError as exc:
        raise ConfigError(f"{name}={text!r}: cannot resolve {host!r}: {exc}") from None


def _resolve(host: str, port: int) -> str:
    infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    return str(infos[0][4][0])


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set (required for the agent)")
    return value


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) < 65536:
        raise ConfigError(f"NATLAB_PORT={text!r}: expected a UDP port, 0-65535 (0 = ephemeral)")
    return int(text)


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number, at least 1."""
    text = env.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={text!r}: expected a whole number, at least 1")
    return value


def _positive(env: Mapping[str, str], name: str, default: float, scale: float, zero: bool = False) -> float:
    """A positive number (or zero, where ``zero`` allows it) of seconds or, with ``scale`` 0.001, ms."""
    text = env.get(name)
    if text is None or not text.strip():
        return default * scale
    unit = "s" if scale == 1.0 else "ms"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a number of {unit}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        kind = "a positive number or 0" if zero else "a positive number"
        raise ConfigError(f"{name}={text!r}: expected {kind} of {unit}")
    return value * scale
