"""Signalling through files: a side writes its description into its exchange folder and waits for the peer's.

The host side (scenarios/interop_stacks.py) carries each file from one host's folder to the other's with
`docker exec` and `put_archive`, so the hosts need no route to each other nor to any signalling server, and the
exchange is the same whatever the NATs do. Standard library and tenacity (Debian's, in every lab image).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

POLL_S = 0.05


def put(folder: Path, name: str, data: dict[str, Any]) -> None:
    """Write ``name`` whole (a temporary file renamed), so a reader never sees half of it."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}"
    temporary.write_text(json.dumps(data))
    os.replace(temporary, folder / name)


async def wait_for(folder: Path, name: str, within: float) -> dict[str, Any]:
    """The peer's file once it is there; TimeoutError after ``within`` seconds."""
    path = folder / name

    @retry(
        stop=stop_after_delay(within),
        wait=wait_fixed(POLL_S),
        retry=retry_if_exception_type(FileNotFoundError),
        reraise=True,
    )
    async def read() -> dict[str, Any]:
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    try:
        return await read()
    except FileNotFoundError:
        raise TimeoutError(f"no {name} in {folder} within {within} s") from None
