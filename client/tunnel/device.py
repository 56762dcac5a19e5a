"""The tunnel's WireGuard device: a wireguard-go process the agent owns, configured through its UAPI socket.

Why the UAPI socket rather than ``wg set``: the agent changes peers as paths come and go and reads every
peer's handshake and byte counters for each ``client tunnel status``; one request on a Unix socket does
either, with no process started per change and keys never on a command line. The text protocol is
WireGuard's documented cross-platform interface (:mod:`trust.wireguard` formats and parses it); ``wg show
natlab0`` reads the same socket for people.

Bringing the device up: ``wireguard-go -f natlab0`` (foreground: it ends when the agent stops it, and with the
agent's container), then the private key and listen port, the overlay address (/24: the route to every other
host's address) and link up with ``ip``. WireGuard binds its port on every address: the tunnel's nftables
table (:mod:`client.tunnel.steering`) keeps everyone but the agent away from it. Errors from the tools reach
the user verbatim (:class:`TunnelError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from pathlib import Path

import tenacity

from trust.overlay import OVERLAY_PREFIX
from trust.wireguard import GET, PeerState, check_errno, parse_get, set_device

logger = logging.getLogger("client")

INTERFACE = "natlab0"
UAPI_DIR = Path("/var/run/wireguard")
START_WAIT = 5.0
"""Seconds wireguard-go has to create its UAPI socket."""
START_POLL = 0.02
"""Seconds between looks at the UAPI socket while wireguard-go starts."""

_BANNER = "┌│└"
"""First characters of the lines of wireguard-go's start-up banner box, left out of the agent's log."""


class TunnelError(RuntimeError):
    """The tunnel cannot come up (or a tool failed); the message carries the tool's own words."""


async def run_tool(*argv: str, stdin: str | None = None) -> str:
    """Run a tool (ip, nft); its stdout, or :class:`TunnelError` with its stderr verbatim."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise TunnelError(f"cannot run {argv[0]}: {exc.strerror}") from None
    out, err = await process.communicate(None if stdin is None else stdin.encode())
    if process.returncode != 0:
        raise TunnelError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


class Device:
    """wireguard-go on :data:`INTERFACE`, owned by the agent: :meth:`start`, :meth:`uapi`, :meth:`stop`."""

    def __init__(self, interface: str = INTERFACE, uapi_dir: Path = UAPI_DIR) -> None:
        self.interface = interface
        self.socket = uapi_dir / f"{interface}.sock"
        self._process: asyncio.subprocess.Process | None = None
        self._output: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, private: bytes, port: int, address: ipaddress.IPv4Address) -> None:
        """Start wireguard-go, set the key and port, address the interface, bring it up."""
        try:
            self._process = await asyncio.create_subprocess_exec(
                "wireguard-go",
                "-f",
                self.interface,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "LOG_LEVEL": os.environ.get("NATLAB_TUNNEL_LOG", "error")},
            )
        except OSError as exc:
            raise TunnelError(f"cannot run wireguard-go: {exc.strerror}") from None
        lines: list[str] = []
        self._output = asyncio.create_task(self._relay_output(lines))
        try:
            await self._wait_for_socket(lines)
            await self.uapi(set_device(private, port))
            await run_tool("ip", "address", "replace", f"{address}/{OVERLAY_PREFIX}", "dev", self.interface)
            await run_tool("ip", "link", "set", self.interface, "up")
        except BaseException:
            await self.stop()
            raise

    async def _wait_for_socket(self, lines: list[str]) -> None:
        """Until wireguard-go answers on its UAPI socket: the file appears at bind, before it listens (a
        connect in between is refused). Its exit ends the wait at once, with its last lines."""
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_result(lambda answered: not answered),
            stop=tenacity.stop_after_delay(START_WAIT),
            wait=tenacity.wait_fixed(START_POLL),
            reraise=True,
        )
        try:
            await retrying(self._answers_or_exited, lines)
        except tenacity.RetryError:
            raise TunnelError(f"wireguard-go did not answer on {self.socket} within {START_WAIT:g} s") from None

    async def _answers_or_exited(self, lines: list[str]) -> bool:
        """Whether wireguard-go answers; :class:`TunnelError` with its last lines once it has exited."""
        if await self._answers():
            return True
        process = self._process
        if process is not None and process.returncode is not None:
            await asyncio.sleep(0)  # let its output reader take the last lines
            said = "; ".join(lines[-5:]) or "no output"
            raise TunnelError(f"wireguard-go {self.interface} exited ({process.returncode}): {said}")
        return False

    async def _answers(self) -> bool:
        try:
            _, writer = await asyncio.open_unix_connection(str(self.socket))
        except OSError:
            return False
        writer.close()
        return True

    async def _relay_output(self, lines: list[str]) -> None:
        """wireguard-go's own lines, into the agent's log (and kept for an error message)."""
        assert self._process is not None
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            if not text or text[0] in _BANNER:
                continue  # its banner: "running wireguard-go is not required" (this kernel has no module)
            lines.append(text)
            del lines[:-20]
            logger.info("wireguard-go: %s", text)

    async def uapi(self, request: str) -> str:
        """One UAPI request, its answer; :class:`TunnelError` if wireguard-go refuses it or is not there."""
        async with self._lock:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket))
            except OSError as exc:
                raise TunnelError(f"cannot reach wireguard-go at {self.socket}: {exc.strerror}") from None
            try:
                writer.write(request.encode())
                await writer.drain()
                answer = (await reader.readuntil(b"\n\n")).decode(errors="replace")
            except (OSError, asyncio.IncompleteReadError) as exc:
                raise TunnelError(f"wireguard-go at {self.socket} hung up: {exc}") from None
            finally:
                writer.close()
        try:
            check_errno(answer)
        except RuntimeError as exc:
            raise TunnelError(str(exc)) from None
        return answer

    async def peers(self) -> dict[bytes, PeerState]:
        """Every peer's state (handshake, bytes), by public key."""
        try:
            return parse_get(await self.uapi(GET))
        except RuntimeError as exc:
            raise TunnelError(str(exc)) from None

    async def stop(self) -> None:
        """Stop wireguard-go (its interface goes with it); quiet if already down."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(3):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._output is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._output
            self._output = None
