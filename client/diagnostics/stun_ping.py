"""`client stun-ping`: one STUN Binding exchange (RFC 8489), retried until answered or a deadline.

Used as coturn's readiness check in the lab (it answers its first Binding 60-90 ms after start, and a
request sent before that is simply lost, so the request is repeated rather than awaited once), and by
users to learn their server-reflexive address. Each call uses a fresh socket.
"""

from __future__ import annotations

import socket
import time

from client.turn.wire import binding_request, parse_binding_response
from protocol import Endpoint

RETRY_INTERVAL = 0.1
"""Seconds between Binding requests while the server stays silent."""


class StunTimeout(TimeoutError):
    """The server never answered within the deadline."""


def stun_ping(server: Endpoint, wait: float) -> Endpoint:
    """Our address as ``server`` sees it; :class:`StunTimeout` if it does not answer within ``wait`` s."""
    deadline = time.monotonic() + wait
    with socket.socket(server.family, socket.SOCK_DGRAM) as sock:
        sock.connect(server.sockaddr())  # only the server's answers reach us, and ICMP errors are reported
        request = binding_request()
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(min(RETRY_INTERVAL, left))
            try:
                sock.send(request.data)
                data = sock.recv(2048)
                return parse_binding_response(data, request.tid)
            except TimeoutError:
                continue
            except ValueError:
                continue  # not our answer (or garbage): keep asking until the deadline
            except ConnectionRefusedError:
                # ICMP port unreachable: nothing listens yet; wait out the interval before asking again.
                time.sleep(min(RETRY_INTERVAL, max(0.0, deadline - time.monotonic())))
    raise StunTimeout(f"no STUN Binding response from {server} within {wait:g} s")
