"""What a libFuzzer run says about itself, read from its output: executions, rate, coverage, corpus."""

from __future__ import annotations

import re
from dataclasses import dataclass

_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second")


@dataclass(frozen=True)
class Run:
    """One target's run. ``cov`` counts the instrumented branches (edges) reached, ``features`` libFuzzer's
    finer signals; ``seed_cov`` and ``seed_corpus`` are where the run started (its INITED line: the corpus
    as loaded, before any mutation)."""

    executions: int
    exec_per_s: int
    cov: int
    features: int
    corpus: int
    seed_cov: int
    seed_corpus: int
    seconds: int | None
    """How long it ran, when it ran to the end (None: it stopped at a crash)."""

    def line(self, name: str) -> str:
        took = "until a crash" if self.seconds is None else f"in {self.seconds} s"
        return (
            f"{name:<9} {self.executions:>9,} executions {took} ({self.exec_per_s:,} exec/s)  "
            f"cov {self.seed_cov} -> {self.cov}  ft {self.features}  corpus {self.seed_corpus} -> {self.corpus}"
        )


def read(output: str) -> Run | None:
    """The run's figures, or None when libFuzzer never got to report (it died before its first status)."""
    lines = output.splitlines()
    statuses = [m for m in map(_STATUS.match, lines) if m]
    stats = {m[1]: int(m[2]) for m in map(_STAT.match, lines) if m}
    if not statuses:
        return None
    last = statuses[-1]
    done = next((m for m in map(_DONE.match, lines) if m), None)
    inited = next((m for m in statuses if m[2] == "INITED"), statuses[0])
    return Run(
        executions=stats.get("number_of_executed_units", int(last[1])),
        exec_per_s=stats.get("average_exec_per_sec", 0),
        cov=int(last[3]),
        features=int(last[4]),
        corpus=int(last[5]),
        seed_cov=int(inited[3]),
        seed_corpus=int(inited[5]),
        seconds=None if done is None else int(done[2]),
    )
