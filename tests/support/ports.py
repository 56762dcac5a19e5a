"""Free UDP ports for servers the tests start."""

from __future__ import annotations

import random
import socket


def free_udp_ports(count: int, ips: tuple[str, ...] = ("127.0.0.1",)) -> range:
    """``count`` consecutive UDP ports that are free now on every one of ``ips`` (tried at random in 20000-60000)."""
    for _ in range(50):
        base = random.randrange(20000, 60000 - count)
        sockets: list[socket.socket] = []
        try:
            for ip in ips:
                for port in range(base, base + count):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sockets.append(sock)
                    sock.bind((ip, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return range(base, base + count)
    raise RuntimeError(f"no {count} consecutive free UDP ports on {', '.join(ips)}")
