"""Run one fuzz target under atheris (libFuzzer): ``python -m fuzz.engine <target> [libFuzzer flags] [corpus dirs]``.

natlab's packages are imported under atheris's instrumentation, so libFuzzer sees their branch coverage
(``cov:``) and steers towards new branches. A target that raises is a crash: libFuzzer writes the input
to ``-artifact_prefix`` and exits non-zero.
"""

from __future__ import annotations

import logging
import sys

import atheris

INSTRUMENTED = ["common", "protocol", "server", "client"]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m fuzz.engine <target> [libFuzzer flags] [corpus dirs]")
    # The server and the agent log what they drop: at fuzzing rates that is noise, and most of the time spent.
    logging.disable(logging.CRITICAL)
    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz.targets import TARGETS
    target = TARGETS.get(argv[1])
    if target is None:
        sys.exit(f"unknown target {argv[1]!r}: one of {', '.join(TARGETS)}")
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
