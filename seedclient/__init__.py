"""A seed-era client: the seed's text client, datagram for datagram (client.py), for testing that natlab
still talks to one. ``seedclient <id>`` in any lab container."""
