"""``python3 -m trust make-keys --ids alice,bob --dir DIR``: the lab's keys (see :mod:`trust.keymaker`).

Exit 0 with one line saying what was made and kept; 2 for a bad id or usage; 1 when a key file is damaged
or the directory cannot be written, with the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trust.keymaker import KEYS_DIR, REGISTRY_FILE, make_keys, parse_ids
from trust.keys import KeyFileError
from trust.overlay import OverlayFull


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m trust", description="natlab's keys and identities.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser(
        "make-keys",
        help="make each host's key file (kept if it exists) and rewrite the registry",
        description=f"Write DIR/{KEYS_DIR}/<id>.json for every id that has none, then DIR/{REGISTRY_FILE} "
        "from every key file there.",
    )
    make.add_argument("--ids", required=True, metavar="ID,ID,...", help="host ids, comma-separated")
    make.add_argument("--dir", required=True, type=Path, metavar="DIR", help="the secrets directory")
    args = parser.parse_args(argv)
    try:
        args.ids = parse_ids(args.ids)
    except ValueError as exc:
        parser.error(f"--ids: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        made = make_keys(args.ids, args.dir)
    except (KeyFileError, OverlayFull) as exc:
        print(f"make-keys: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = exc.filename or args.dir
        print(f"make-keys: cannot write {where}: {exc.strerror}", file=sys.stderr)
        return 1
    made_text = ", ".join(made.created) or "none"
    kept_text = ", ".join(made.kept) or "none"
    registry = args.dir / REGISTRY_FILE
    holds = ", ".join(f"{peer_id} ({made.registry.overlay[peer_id]})" for peer_id in made.registry)
    print(f"make-keys: made {made_text}; kept {kept_text}; {registry} holds {holds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
