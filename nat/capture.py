"""Packet captures of the router's WAN and LAN sides: one tcpdump per interface, started, flushed and stopped.

tcpdump writes pcap files under :data:`CAPTURE_DIR`, named by the interface's role: ``wan.pcap`` and
``lan.pcap`` for a full capture, ``wan.pcap0`` .. ``wan.pcap3`` for a ring (tcpdump's own ``-C``/``-W``
rotation: a new file every :attr:`CaptureSettings.ring_megabytes` MB, the oldest overwritten once there are
:attr:`CaptureSettings.ring_files`), so a ring never holds more than files x size per interface however long
the lab runs. The processes run in their own sessions, outlive the command that started them, and are
recorded in the state directory (:data:`STATE_FILE`) so that ``stop``, ``flush`` and ``status`` find them.

Why a size ring and not a time ring: tcpdump's ``-G`` (rotate every N seconds) with ``-W`` stops capturing
after W files instead of wrapping, so a time ring would need a second process deleting old files; and a
scenario that fails after waiting 30 s for a condition needs the packets from the start of that wait, which
the last 20 s would not hold. A few MB hold minutes of a scenario lab's ordinary traffic.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.files import write_atomic
from nat.state import PROFILE_FILE

log = logging.getLogger("nat")

CAPTURE_DIR = Path("/var/log/natlab/pcap")
PREVIOUS = "previous"
"""Sub-folder of the capture folder where ``start`` moves the files of the capture before it."""
STATE_FILE = "capture.json"
"""In the state directory: the running capture's mode, settings and tcpdump processes."""
ROLES = ("wan", "lan")
STARTUP_TIMEOUT = 10.0
"""Seconds tcpdump has to say it is listening before ``start`` gives up."""
STOP_TIMEOUT = 3.0
"""Seconds tcpdump has to write its last packets and exit after SIGTERM before it is killed."""
LISTENING = "listening on"
"""What tcpdump prints to stderr once its capture is open."""
ENV_VARIABLE = "NAT_CAPTURE"
OFF = frozenset({"", "off", "none", "0", "false", "no"})


class CaptureError(RuntimeError):
    """tcpdump could not start or stop, or the router has no state to capture from; says what tcpdump said."""


class CaptureUsageError(ValueError):
    """The operator asked for something that cannot be (an unknown mode, a second capture): exit 2."""


class Mode(enum.StrEnum):
    RING = "ring"
    """The last few MB per interface: cheap enough to leave on in every scenario lab."""
    FULL = "full"
    """Everything from start to stop, one file per interface."""


def parse_mode(text: str) -> Mode | None:
    """``ring`` or ``full``; blank, ``off`` (and ``0``, ``none``, ...) mean no capture."""
    word = text.strip().lower()
    if word in OFF:
        return None
    if word in ("1", "on", "yes", "true"):
        return Mode.FULL
    try:
        return Mode(word)
    except ValueError:
        raise CaptureUsageError(f"{text!r} is not a capture mode: expected ring, full or off") from None


@dataclass(frozen=True)
class CaptureSettings:
    snaplen: int = 256
    """Bytes kept of each packet: every header and the start of the payload, not the payload's bulk."""
    ring_files: int = 4
    ring_megabytes: int = 1
    """tcpdump's ``-C`` unit: millions of bytes, whole numbers only."""

    def __post_init__(self) -> None:
        if not 64 <= self.snaplen <= 262144:
            raise CaptureUsageError(f"snaplen {self.snaplen}: expected 64..262144 bytes")
        if not 2 <= self.ring_files <= 100:
            raise CaptureUsageError(f"ring of {self.ring_files} files: expected 2..100")
        if not 1 <= self.ring_megabytes <= 1000:
            raise CaptureUsageError(f"ring files of {self.ring_megabytes} MB: expected 1..1000")


def pcap_path(folder: Path, role: str) -> Path:
    """The file tcpdump is told to write (a ring appends the file's number to it)."""
    return folder / f"{role}.pcap"


def tcpdump_command(ifname: str, path: Path, mode: Mode, settings: CaptureSettings) -> list[str]:
    """The tcpdump command capturing ``ifname`` into ``path``.

    ``-Z root``: Debian's tcpdump otherwise drops to the user ``tcpdump``, who cannot write the files it
    rotates to. ``-p``: no promiscuous mode, so the file holds what the router itself sends and receives,
    not its neighbours' traffic on the same bridge. ``--immediate-mode``: the kernel hands tcpdump each
    packet as it comes rather than a block a second later, so a :func:`flush` right after a failure has its
    last packets (a loaded burst still arrives in batches; measured no dearer per packet). The file itself
    stays buffered: a write per packet costs tens of microseconds on the containers' overlay filesystem.
    """
    command = ["tcpdump", "-Z", "root", "-p", "--immediate-mode", "-i", ifname, "-s", str(settings.snaplen)]
    command += ["-w", str(path)]
    if mode is Mode.RING:
        command += ["-C", str(settings.ring_megabytes), "-W", str(settings.ring_files)]
    return command


@dataclass(frozen=True)
class Tcpdump:
    """One running capture: which interface, its process, its command and where its messages go."""

    role: str
    ifname: str
    pid: int
    command: tuple[str, ...]
    log: str

    def alive(self) -> bool:
        """Running, and still this tcpdump: a pid of an exited one may be reused (a container restarted)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        # The state letter follows the command name in parentheses; Z: exited, not yet reaped by its parent
        # (`nat run` started it at boot and never waits for it).
        zombie = stat.rpartition(")")[2].split()[0] == "Z"
        arguments = [part.encode() for part in self.command[1:]]  # after the program, however it was started
        return not zombie and cmdline.split(b"\0")[:-1][-len(arguments) :] == arguments

    def messages(self) -> str:
        try:
            return Path(self.log).read_text(errors="replace").strip()
        except OSError:
            return ""


@dataclass(frozen=True)
class Capture:
    """What ``start`` records in :data:`STATE_FILE`."""

    mode: Mode
    started: float
    folder: str
    settings: CaptureSettings
    processes: tuple[Tcpdump, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mode": str(self.mode)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Capture:
        processes = tuple(Tcpdump(**{**p, "command": tuple(p["command"])}) for p in data["processes"])
        settings = CaptureSettings(**data["settings"])
        return cls(Mode(data["mode"]), float(data["started"]), str(data["folder"]), settings, processes)


def running(state_dir: Path) -> Capture | None:
    """The capture ``start`` recorded, if any (its processes may have died since: see :meth:`Tcpdump.alive`)."""
    try:
        return Capture.from_dict(json.loads((state_dir / STATE_FILE).read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CaptureError(f"unreadable capture state {state_dir / STATE_FILE}: {exc}") from None


def interfaces(state_dir: Path) -> dict[str, str]:
    """Role -> interface name, from the state ``nat run`` wrote once its ruleset was applied."""
    profile_file = state_dir / PROFILE_FILE
    try:
        profile = json.loads(profile_file.read_text())
        return {role: str(profile[role]["ifname"]) for role in ROLES}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CaptureError(f"no router state in {profile_file} (is `nat run` up?): {exc}") from None


def start(mode: Mode, state_dir: Path, folder: Path = CAPTURE_DIR, settings: CaptureSettings | None = None) -> Capture:
    """Start one tcpdump per interface and wait until each is listening; the last capture's files go to
    ``previous/``. A tcpdump that fails takes the others down with it and its message is in the error."""
    settings = settings or CaptureSettings()
    current = running(state_dir)
    if current is not None and any(p.alive() for p in current.processes):
        raise CaptureUsageError(f"a {current.mode} capture is already running: `nat capture stop` first")
    links = interfaces(state_dir)
    _keep_previous(folder)
    processes: list[Tcpdump] = []
    try:
        for role in ROLES:
            command = tcpdump_command(links[role], pcap_path(folder, role), mode, settings)
            processes.append(_spawn(role, links[role], command, state_dir / f"capture-{role}.log"))
        for process in processes:
            _wait_listening(process)
    except BaseException:
        _kill_children(processes)
        raise
    capture = Capture(mode, time.time(), str(folder), settings, tuple(processes))
    write_atomic(state_dir / STATE_FILE, json.dumps(capture.as_dict(), indent=2))
    return capture


def _keep_previous(folder: Path) -> None:
    """Move the files of the capture before into ``previous/`` (replacing what was there): a router that
    restarts keeps its last ring from before the restart."""
    folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("*.pcap*"))
    if not old:
        return
    previous = folder / PREVIOUS
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir()
    for path in old:
        path.rename(previous / path.name)


def _spawn(role: str, ifname: str, command: list[str], log: Path) -> Tcpdump:
    """Start tcpdump in its own session (it outlives `nat capture start` and ignores signals sent to its
    caller's process group), its messages into ``log``. posix_spawn, not subprocess: nobody waits for this
    child, and a dropped ``Popen`` would warn that it still runs."""
    log.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    try:
        pid = os.posix_spawnp(command[0], command, os.environ, file_actions=actions, setsid=True)
    except FileNotFoundError:
        raise CaptureError("tcpdump is not installed (package tcpdump)") from None
    return Tcpdump(role, ifname, pid, tuple(command), str(log))


def _wait_listening(process: Tcpdump) -> None:
    """Wait until the tcpdump just started says it listens; CaptureError with what it said if it exits."""
    exited = False

    def settled() -> bool:
        nonlocal exited
        exited = _exited(process.pid)
        return exited or LISTENING in process.messages()

    if not _wait_until(settled, STARTUP_TIMEOUT) or LISTENING not in process.messages():
        said = process.messages() or ("it exited without a word" if exited else f"silent for {STARTUP_TIMEOUT:g}s")
        raise CaptureError(f"{' '.join(process.command)} failed: {said}")


def _exited(child: int) -> bool:
    """Whether a child of this process has exited (and reap it). Not :meth:`Tcpdump.alive`: just after
    posix_spawn returns, the child's /proc/PID/cmdline can still read empty (the kernel sets it up after
    it lets the parent go on)."""
    try:
        pid, _ = os.waitpid(child, os.WNOHANG)
    except ChildProcessError:
        return True
    return pid == child


def _kill_children(processes: Sequence[Tcpdump]) -> None:
    """A start that failed: its tcpdumps go at once (they have written nothing worth keeping)."""
    for process in processes:
        _signal(process, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(process.pid, 0)


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether ``condition`` came true within ``timeout`` seconds (polled every 50 ms)."""
    # Imported here: `nat health` and the other quick commands load nat.capture with the CLI, not tenacity.
    from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

    retrying = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.05), retry=retry_if_result(lambda r: not r))
    try:
        return bool(retrying(condition))
    except RetryError:
        return False


def stop(state_dir: Path) -> Capture | None:
    """Stop the running capture (tcpdump writes what it holds and exits); None when there was none."""
    capture = running(state_dir)
    if capture is None:
        return None
    _terminate(capture.processes)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return capture


def _terminate(processes: Sequence[Tcpdump]) -> None:
    alive = [p for p in processes if p.alive()]
    for process in alive:
        _signal(process, signal.SIGTERM)
    if not _wait_until(lambda: not any(p.alive() for p in alive), STOP_TIMEOUT):
        for process in alive:
            _signal(process, signal.SIGKILL)
        _wait_until(lambda: not any(p.alive() for p in alive), STOP_TIMEOUT)


def flush(state_dir: Path) -> int:
    """Make tcpdump write the packets it has buffered (SIGUSR2), so the files can be copied while it runs.
    Returns how many were told (the signal is handled as soon as tcpdump runs: milliseconds)."""
    capture = running(state_dir)
    alive = [p for p in capture.processes if p.alive()] if capture else []
    for process in alive:
        _signal(process, signal.SIGUSR2)
    return len(alive)


def _signal(process: Tcpdump, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited in between
        os.kill(process.pid, signum)


@dataclass(frozen=True)
class PcapFile:
    name: str
    """Relative to the capture folder (``previous/wan.pcap0`` for the capture before)."""
    bytes: int
    modified: float


def files(folder: Path = CAPTURE_DIR) -> list[PcapFile]:
    """The pcap files in the capture folder (and ``previous/``), oldest first."""
    found = []
    for path in [*folder.glob(f"{PREVIOUS}/*.pcap*"), *folder.glob("*.pcap*")]:
        try:
            info = path.stat()
        except OSError:
            continue  # a ring file being replaced
        found.append(PcapFile(str(path.relative_to(folder)), info.st_size, info.st_mtime))
    return sorted(found, key=lambda f: (not f.name.startswith(f"{PREVIOUS}/"), f.modified, f.name))


def start_at_boot(
    env: Mapping[str, str],
    state_dir: Path,
    folder: Path = CAPTURE_DIR,
    at_exit: Callable[..., Any] = atexit.register,
) -> int | None:
    """``nat run``'s captures: whatever ``NAT_CAPTURE`` asks for (ring, full, or nothing). Returns the exit
    status ``nat run`` should stop with when it cannot (2: a bad value, 1: tcpdump failed), else None; says
    why in the log. The capture state of an earlier boot is dropped: its processes died with the container.

    Whatever capture runs when ``nat run`` exits is stopped then (``at_exit``): the container's end kills
    what is left with SIGKILL, and tcpdump would lose the packets it holds, which after a quiet minute can
    be every packet since its start; a router restart keeps them in ``previous/``."""
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    at_exit(_stop_at_exit, state_dir)
    try:
        mode = parse_mode(env.get(ENV_VARIABLE, ""))
        if mode is None:
            return None
        capture = start(mode, state_dir, folder)
    except CaptureUsageError as exc:
        log.error("bad configuration: %s: %s", ENV_VARIABLE, exc)
        return 2
    except (CaptureError, OSError) as exc:
        log.error("packet capture failed: %s", exc)
        return 1
    log.info("capturing packets (%s) into %s", capture.mode, capture.folder)
    return None


def _stop_at_exit(state_dir: Path) -> None:
    try:
        stopped = stop(state_dir)
    except (CaptureError, OSError) as exc:
        log.warning("could not stop the packet capture: %s", exc)
        return
    if stopped is not None:
        log.info("stopped the %s packet capture; files in %s", stopped.mode, stopped.folder)
