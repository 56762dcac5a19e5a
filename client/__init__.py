"""natlab client: agent and CLI."""
