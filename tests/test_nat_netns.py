"""The router on a real kernel: ``nat run`` in a network namespace, real UDP through it.

Topology (throwaway namespaces, addresses only in 198.19.200.0/24 and 198.19.201.0/24; no traffic leaves
them):

    wan ns  198.19.200.2, 198.19.200.3  ──  198.19.200.1 eth0  router ns  eth1 198.19.201.1  ──  198.19.201.2  host ns

Needs root, ``ip netns``, nft and conntrack on the host; skipped otherwise (the pure tests cover the rest).
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MISSING = [tool for tool in ("ip", "nft", "conntrack") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} on the host"),
]

ROUTER_WAN, ROUTER_LAN, HOST = "198.19.200.1", "198.19.201.1", "198.19.201.2"
PEER, OTHER_PEER = "198.19.200.2", "198.19.200.3"
NAT_ENV = {"NAT_WAN_SUBNET": "198.19.200.0/24", "NAT_LAN_SUBNET": "198.19.201.0/24"}

# Echo every datagram with the address it came from; on "probe-back", also send what a remote peer might
# send unsolicited: from another port, and to the next port on the router.
RESPONDER = """
import json, selectors, socket, sys
sel = selectors.DefaultSelector()
for hp in sys.argv[1:]:
    host, port = hp.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((host, int(port)))
    sel.register(s, selectors.EVENT_READ)
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); other.bind((sys.argv[1].rsplit(":", 1)[0], 6000))
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        data, (ip, port) = key.fileobj.recvfrom(2048)
        key.fileobj.sendto(f"seen {ip}:{port}".encode(), (ip, port))
        if data == b"probe-back":
            other.sendto(b"unsolicited other port", (ip, port))
            key.fileobj.sendto(b"unsolicited next port", (ip, port + 1))
"""

# Send from one local port to each target, wait for each echo, then collect anything else for a while.
CLIENT = """
import json, socket, sys, time
bind, message, linger, targets = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); host, port = bind.rsplit(":", 1); s.bind((host, int(port)))
s.settimeout(3)
seen, extra = [], []
for target in targets:
    host, port = target.rsplit(":", 1)
    s.sendto(message.encode(), (host, int(port)))
    data, source = s.recvfrom(2048)
    seen.append(data.decode().removeprefix("seen "))
end = time.monotonic() + linger
while (left := end - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, source = s.recvfrom(2048)
    except TimeoutError:
        break
    extra.append([data.decode(), "%s:%d" % source])
print(json.dumps({"seen": seen, "extra": extra}))
"""

ONE_SHOT = """
import socket, sys
host, port = sys.argv[1].rsplit(":", 1); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, int(port)))
dest, dport = sys.argv[2].rsplit(":", 1)
for _ in range(3):
    s.sendto(b"early probe", (dest, int(dport)))
"""


class Netns:
    """Three namespaces joined by veth pairs; ``exec`` runs a command in one of them."""

    def __init__(self, tag):
        self.router, self.wan, self.host = f"{tag}-r", f"{tag}-w", f"{tag}-h"
        self.tag = tag

    def exec(self, ns, *command, check=True, timeout=15):
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *command], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} in {ns} failed ({done.returncode}): {done.stderr}")
        return done

    def python(self, ns, script, *args, timeout=15):
        return self.exec(ns, sys.executable, "-c", script, *args, timeout=timeout).stdout

    def build(self):
        for ns in (self.router, self.wan, self.host):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        for here, there, ns in (("rw", "wr", self.wan), ("rl", "hr", self.host)):
            a, b = f"{self.tag}{here}", f"{self.tag}{there}"
            subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
            router_side = "eth0" if ns == self.wan else "eth1"
            subprocess.run(["ip", "link", "set", a, "netns", self.router, "name", router_side], check=True)
            subprocess.run(["ip", "link", "set", b, "netns", ns, "name", "eth0"], check=True)
        for ns, device, address in (
            (self.router, "eth0", f"{ROUTER_WAN}/24"),
            (self.router, "eth1", f"{ROUTER_LAN}/24"),
            (self.wan, "eth0", f"{PEER}/24"),
            (self.wan, "eth0", f"{OTHER_PEER}/24"),
            (self.host, "eth0", f"{HOST}/24"),
        ):
            self.exec(ns, "ip", "addr", "add", address, "dev", device)
        for ns, device in ((self.router, "eth0"), (self.router, "eth1"), (self.wan, "eth0"), (self.host, "eth0")):
            self.exec(ns, "ip", "link", "set", device, "up")
        for ns in (self.router, self.wan, self.host):
            self.exec(ns, "ip", "link", "set", "lo", "up")
        self.exec(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.exec(self.host, "ip", "route", "add", "default", "via", ROUTER_LAN)

    def destroy(self):
        for ns in (self.router, self.wan, self.host):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def nat(self, *args, check=True):
        """``nat ARGS`` in the router namespace."""
        return self.exec(self.router, sys.executable, "-m", "nat", *args, check=check)

    def conntrack(self):
        return json.loads(self.nat("conntrack", "--json").stdout)


@pytest.fixture(scope="module")
def netns():
    """The three namespaces, named after this process so parallel runs do not collide; deleted after."""
    topology = Netns(f"nltest{os.getpid() % 100000}")
    try:
        topology.build()
        yield topology
    finally:
        topology.destroy()


@contextlib.contextmanager
def running_router(netns, state_dir, **env):
    """``nat run`` in the router namespace, waited on until ready; stopped with SIGTERM afterwards."""
    netns.exec(netns.router, "conntrack", "-F", check=False)
    netns.exec(netns.router, "ip", "route", "replace", "default", "via", "198.19.200.254")
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns.router, sys.executable, "-m", "nat", "--state-dir", str(state_dir), "run"],
        env={**os.environ, "PYTHONPATH": str(REPO), **NAT_ENV, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not (state_dir / "ready").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"nat run not ready (exit {process.poll()}): {process.communicate()[1]}")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=5)


@contextlib.contextmanager
def responder(netns, *endpoints):
    """The WAN peer's echo service on ``endpoints``, up before the block runs."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns.wan, sys.executable, "-c", RESPONDER, *endpoints],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", process.stderr.read() if process.stderr else ""
        yield process
    finally:
        process.kill()
        process.communicate()


def client(netns, port, *targets, message="hello", linger=0.0):
    return json.loads(netns.python(netns.host, CLIENT, f"{HOST}:{port}", message, str(linger), *targets))


def test_run_deletes_default_route_applies_ruleset_and_stops_on_sigterm(netns, tmp_path):
    with running_router(netns, tmp_path, NAT_PROFILE="symmetric") as process:
        routes = netns.exec(netns.router, "ip", "route", "show", "default").stdout
        assert routes == ""
        assert netns.nat("--state-dir", str(tmp_path), "health", check=False).returncode == 0
        applied = (tmp_path / "ruleset.nft").read_text()
        assert "masquerade fully-random" in applied
        profile = json.loads((tmp_path / "profile.json").read_text())
        assert profile["name"] == "symmetric"
        assert (profile["wan"]["ifname"], profile["lan"]["address"]) == ("eth0", ROUTER_LAN)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0, stderr
    assert time.monotonic() - started < 2
    assert f"router ready: profile=symmetric wan=eth0 {ROUTER_WAN} lan=eth1 {ROUTER_LAN}" in stderr
    assert not (tmp_path / "ready").exists()


def test_cone_keeps_the_port_for_every_destination_and_applies_the_timeout(netns, tmp_path):
    with (
        running_router(netns, tmp_path, NAT_PROFILE="cone", NAT_UDP_TIMEOUT="7"),
        responder(netns, f"{PEER}:5000", f"{OTHER_PEER}:5001"),
    ):
        result = client(netns, 40000, f"{PEER}:5000", f"{OTHER_PEER}:5001")
        flows = [f for f in netns.conntrack() if f["orig"]["src"] == HOST and f["orig"]["sport"] == 40000]
    assert result["seen"] == [f"{ROUTER_WAN}:40000", f"{ROUTER_WAN}:40000"]
    assert sorted((f["orig"]["dst"], f["reply"]["dport"]) for f in flows) == [(PEER, 40000), (OTHER_PEER, 40000)]
    # The kernel default for UDP is 30 s: a timeout of at most 7 s is the profile's ct timeout object at work.
    assert all(0 < f["timeout"] <= 7 for f in flows), flows


def test_symmetric_gives_each_destination_its_own_random_port(netns, tmp_path):
    with (
        running_router(netns, tmp_path, NAT_PROFILE="symmetric"),
        responder(netns, f"{PEER}:5000", f"{OTHER_PEER}:5001"),
    ):
        result = client(netns, 40000, f"{PEER}:5000", f"{OTHER_PEER}:5001")
    hosts = {seen.rsplit(":", 1)[0] for seen in result["seen"]}
    ports = {int(seen.rsplit(":", 1)[1]) for seen in result["seen"]}
    assert hosts == {ROUTER_WAN}
    assert len(ports) == 2, result


def test_unsolicited_inbound_is_dropped_and_leaves_no_conntrack_entry(netns, tmp_path):
    with running_router(netns, tmp_path, NAT_PROFILE="cone"), responder(netns, f"{PEER}:5000"):
        result = client(netns, 40010, f"{PEER}:5000", message="probe-back", linger=1.0)
        flows = netns.conntrack()
    assert result == {"seen": [f"{ROUTER_WAN}:40010"], "extra": []}
    assert [f for f in flows if f["orig"]["src"] == PEER] == [], flows


def test_early_inbound_probe_does_not_make_the_router_remap_the_port(netns, tmp_path):
    """The punching race: the peer's probe reaches the router before the host's first packet goes out.
    Were it admitted to conntrack (UNREPLIED), masquerade would give the host's flow another port."""
    with running_router(netns, tmp_path, NAT_PROFILE="cone"):
        netns.python(netns.wan, ONE_SHOT, f"{PEER}:5003", f"{ROUTER_WAN}:40020")
        assert [f for f in netns.conntrack() if f["orig"]["src"] == PEER] == []
        with responder(netns, f"{PEER}:5003"):
            result = client(netns, 40020, f"{PEER}:5003")
    assert result["seen"] == [f"{ROUTER_WAN}:40020"]
