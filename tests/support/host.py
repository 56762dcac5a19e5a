"""What a test needs from the host (root, tools on the PATH): skipped for a developer who lacks it, failed
under CI (the CI variable set), so a suite can never pass in CI by not running (as the scenarios do)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

import pytest


def missing(tools: Iterable[str], *, root: bool = False) -> list[str]:
    """What of ``tools`` (and root, if asked) this host lacks, in words."""
    problems = [] if not root or os.geteuid() == 0 else ["root (to create network namespaces)"]
    problems += [f"{tool} on the PATH" for tool in tools if shutil.which(tool) is None]
    return problems


def require(problems: list[str]) -> None:
    """Skip the test (a developer's host) or fail it (CI) when ``problems`` is not empty."""
    if not problems:
        return
    needs = "needs " + ", ".join(problems)
    if os.environ.get("CI"):
        pytest.fail(f"{needs}: CI must run this test, not skip it (see .ci/run)", pytrace=False)
    pytest.skip(needs)
