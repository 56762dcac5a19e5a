"""Files that readers poll while a writer replaces them (state files, ready markers, rulesets)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` in one step: readers see the old file or the new one, never half of one.

    Written to a temporary file in the same folder (a rename is atomic only within one filesystem), then
    ``os.replace``\\ d over ``path``; on any failure the temporary file is removed and the error raised.
    ``mode`` defaults to 0644 because mkstemp's 0600 would hide the file from a host user reading a bind
    mount (``make lab-status``, scenario artifacts).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:  # closes the descriptor whatever happens next
            os.fchmod(file.fileno(), mode)
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
