"""``python -m fuzz [--seconds N] [target ...]``: each target under atheris for its share of N seconds, then
one line each: executions, rate, coverage. Exit 1 when a target crashed (its input and log are kept).

New inputs that reach new coverage go to .fuzz/<target>/ (not committed), read again by the next run beside
the committed seeds in fuzz/corpus/<target>/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from fuzz.report import read
from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "fuzz" / "corpus"
WORK = ROOT / ".fuzz"


def run(name: str, seconds: int) -> bool:
    """Fuzz one target; True when it ran out its time without a crash."""
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    log = WORK / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "fuzz.engine",
        name,
        f"-max_total_time={seconds}",
        "-print_final_stats=1",
        "-timeout=10",  # an input that takes 10 s is a hang: a finding, like a crash
        "-max_len=1500",  # just past MAX_DATAGRAM (1400), so oversize datagrams are tried too
        f"-artifact_prefix={work}/",
        str(work),
        str(SEEDS / name),
    ]
    with log.open("w") as out:
        status = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    output = log.read_text(errors="replace")
    figures = read(output)
    print(figures.line(name) if figures else f"{name:<9} no figures (see {log})", flush=True)
    if status != 0:
        print(f"{name}: CRASH (exit {status}); input saved in {work}/, log {log}:", file=sys.stderr)
        print("\n".join(output.splitlines()[-40:]), file=sys.stderr)
    return status == 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="total time, shared by the targets (default 60)")
    parser.add_argument("targets", nargs="*", metavar="target", help=f"{', '.join(TARGETS)} (default: all)")
    args = parser.parse_args()
    names = args.targets or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}: one of {', '.join(TARGETS)}")
    share = max(1, args.seconds // len(names))
    results = [run(name, share) for name in names]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
