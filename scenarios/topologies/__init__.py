"""Compose files for topologies beyond compose.yaml's two sites (hairpin, CGNAT, the traversal grid)."""
