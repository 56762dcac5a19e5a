"""The bottom layer: vocabulary and helpers that protocol, server, client and nat share (no I/O policy)."""
