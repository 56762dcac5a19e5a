"""``python3 -m attacks``: see attacks/cli.py."""

import sys

from attacks.cli import main

sys.exit(main())
