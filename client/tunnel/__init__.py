"""The tunnel: WireGuard (wireguard-go on ``natlab0``) between the hosts, its datagrams carried by the agent.

One layer above the engine and below the daemon: :mod:`client.tunnel.hosts` (``<id>.natlab`` in
/etc/hosts), :mod:`client.tunnel.device` (the wireguard-go process, its UAPI socket, the interface's address
and the loopback-only filter) and :mod:`client.tunnel.links` (one loopback socket per peer, the datagrams
between WireGuard and the peer's current path). README "Tunnel" says how it fits together.
"""
