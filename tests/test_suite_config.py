"""The suite's own guards: a time limit on every test, and host requirements that skip or fail by context."""

import pytest

from scenarios.conftest import SCENARIO_TIMEOUT
from tests.support.host import missing, require


def test_every_test_runs_under_a_time_limit(request):
    unit_limit = float(request.config.getini("timeout"))
    assert 0 < unit_limit <= 120, "a spinning unit test must fail within minutes"
    assert 10 * unit_limit < SCENARIO_TIMEOUT, "scenarios build images and labs in their fixtures"


def test_a_missing_tool_is_named():
    assert missing(["natlab-no-such-tool", "sh"]) == ["natlab-no-such-tool on the PATH"]


def test_a_missing_tool_skips_a_developers_test(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs natlab-no-such-tool on the PATH"):
        require(missing(["natlab-no-such-tool"]))


def test_a_missing_tool_fails_the_test_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs natlab-no-such-tool on the PATH: CI must run this test"):
        require(missing(["natlab-no-such-tool"]))
    require(missing(["sh"]))  # nothing missing: nothing raised
