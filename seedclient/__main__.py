"""``seedclient <id> [--server IP:PORT] [--json]``: see seedclient/cli.py."""

import sys

from seedclient.cli import main

sys.exit(main())
