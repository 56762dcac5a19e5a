"""natlab signal server."""
