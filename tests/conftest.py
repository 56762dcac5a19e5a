"""Unit-suite hooks: ``@pytest.mark.needs(*tools, root=False)`` checked before a test's fixtures are set up."""

from __future__ import annotations

import pytest

from tests.support.host import missing, require


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        require(missing(mark.args, root=bool(mark.kwargs.get("root", False))))
