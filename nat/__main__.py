"""``python -m nat``: the router container's entrypoint and tools (see nat.cli)."""

from nat.cli import main

raise SystemExit(main())
