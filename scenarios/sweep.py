"""`make sweep`: how cone-cone traversal degrades with the round trip and loss, as data and as a picture.

One two-site lab (cone-cone). For each point of the round trip x loss plane both routers are impaired alike
(``nat impair both delay=RTT/4 loss=L``: the pair's round trip is four router delays, and each packet crosses
two lossy routers each way), then alice makes ``--attempts`` connects to bob from clean NATs
(:func:`scenarios.traversal.cold_attempt`) and streams ``--messages`` messages to him (``client flood``),
checking that bob got each delivered one exactly once, in order. Writes ``sweep.json``, ``sweep.md`` and the
plot (``traversal.svg``, ``traversal.png``: :mod:`scenarios.plots`) under ``results/sweep/`` and updates
``results/index.html``. Exits 1 when a stream lost or doubled a message (a delivery bug, whatever the link);
a connect that does not go direct on a bad link is a measurement, not a failure.

    python -m scenarios.sweep [--rtt 0,50,100,200] [--loss 0,2,5,10] [--attempts 3] [--messages 100]
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenarios import results_index
from scenarios.harness import REPO, Lab, LabError, start_lab
from scenarios.plots import SweepPoint, save, traversal_figure
from scenarios.steps import events, flood, peer_status, received_since
from scenarios.traversal import Link, cold_attempt, impair

RESULTS = REPO / "results" / "sweep"
SIZE = 100
"""Characters per streamed message."""
PUNCH_TIMEOUT_S = 5
SETTLE_S = 3.0
"""A connect's time to settle on a perfect link; a long round trip adds a few of its own."""


def settle_timeout_s(link: Link) -> float:
    return SETTLE_S + 4 * link.rtt_ms / 1000


def measure(lab: Lab, link: Link, attempts: int, messages: int) -> SweepPoint:
    """One point: impair both routers, ``attempts`` cold connects, then one stream of ``messages``."""
    impair(lab, link.spec)
    direct_ms = []
    for _ in range(attempts):
        attempt = cold_attempt(lab, settle_timeout_s(link))
        if attempt.path == "direct" and attempt.time_to_direct_ms is not None:
            direct_ms.append(float(attempt.time_to_direct_ms))
    if not messages:
        return SweepPoint(link.rtt_ms, link.loss, attempts, direct_ms)
    lab.exec("alice", "client", "connect", "bob", "--settle", "--timeout", "10")  # whichever path it settles on
    before_received = len(events(lab, "bob", "message_received"))
    before_retransmitted = _retransmitted(lab)
    result = flood(lab, "alice", messages, SIZE)
    got = received_since(lab, "bob", before_received)
    return SweepPoint(
        link.rtt_ms,
        link.loss,
        attempts,
        direct_ms,
        sent=int(result["sent"]),
        delivered=int(result["delivered"]),
        seconds=float(result["seconds"]),
        retransmitted=_retransmitted(lab) - before_retransmitted,
        # Each message once, in order (their texts start with their 6-digit number), none beyond those acked.
        exactly_once=len(got) == len(set(got)) and got == sorted(got) and len(got) >= int(result["delivered"]),
    )


def _retransmitted(lab: Lab) -> int:
    status = peer_status(lab, "alice")
    return int(status["retransmitted"]) if status else 0


def render_markdown(points: Sequence[SweepPoint], meta: dict[str, str]) -> str:
    """The sweep as a Markdown table, one row per point (pure)."""
    lines = ["# natlab: traversal under impairment (cone-cone)", ""]
    lines += [f"- **{key}**: {value}" for key, value in meta.items()]
    lines += [
        "",
        "| RTT | loss each way per router | direct | connect → direct, median | stream | messages/s | "
        "retransmissions per message | exactly once, in order |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in points:
        median = "—" if p.median_direct_ms is None else f"{p.median_direct_ms:.0f} ms"
        lines.append(
            f"| {p.rtt_ms:g} ms | {100 * p.loss:g}% | {len(p.direct_ms)}/{p.attempts} | {median} | "
            f"{p.delivered}/{p.sent} | {p.msgs_per_s:.0f} | {p.retransmits_per_message:.2f} | "
            f"{'yes' if p.exactly_once else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def write_results(folder: Path, points: Sequence[SweepPoint], meta: dict[str, str]) -> list[Path]:
    """sweep.json, sweep.md and the plot; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"meta": meta, "points": [p.as_dict() for p in points]}
    (folder / "sweep.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (folder / "sweep.md").write_text(render_markdown(points, meta), encoding="utf-8")
    plots = save(traversal_figure(points), folder, "traversal")
    return [folder / "sweep.json", folder / "sweep.md", *plots]


def _numbers(text: str, what: str, parser: argparse.ArgumentParser) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--{what} {text!r}: expected comma-separated numbers")
    if not values or any(v < 0 for v in values):
        parser.error(f"--{what} {text!r}: expected comma-separated numbers >= 0")
    return values


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt", default="0,50,100,200", help="round trips in ms (default 0,50,100,200)")
    parser.add_argument("--loss", default="0,2,5,10", help="loss in %% each way at each router (default 0,2,5,10)")
    parser.add_argument("--attempts", type=int, default=3, help="cold connects per point (default 3)")
    parser.add_argument("--messages", type=int, default=100, help="messages streamed per point (default 100)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default results/sweep)")
    args = parser.parse_args(argv)
    rtts, losses = _numbers(args.rtt, "rtt", parser), _numbers(args.loss, "loss", parser)
    if any(rtt > 4000 for rtt in rtts) or any(loss >= 100 for loss in losses):
        parser.error("--rtt at most 4000 ms (each router delays 1 s each way), --loss below 100%")
    if args.attempts < 1 or args.messages < 0:
        parser.error("need --attempts >= 1 and --messages >= 0")
    links = [Link(rtt, loss / 100) for rtt in rtts for loss in losses]
    signal.signal(signal.SIGTERM, _interrupt)  # a killed run still removes its lab
    started = time.perf_counter()
    env = {"NAT_A": "cone", "NAT_B": "cone", "NATLAB_PUNCH_TIMEOUT": str(PUNCH_TIMEOUT_S)}
    points, errors = [], []
    with start_lab(name="sweep", env=env) as lab:
        for n, link in enumerate(links, 1):
            print(f"sweep: point {n} of {len(links)}: {link.spec}", file=sys.stderr, flush=True)
            try:
                points.append(measure(lab, link, args.attempts, args.messages))
            except LabError as exc:  # the lab misbehaved at this point: say so, measure the others
                errors.append(f"sweep: {link.spec}: {exc}")
                print(errors[-1], file=sys.stderr)
                points.append(SweepPoint(link.rtt_ms, link.loss, args.attempts))
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time": f"{time.perf_counter() - started:.0f} s",
        "per point": f"{args.attempts} cold connects (alice to bob), then {args.messages} messages of {SIZE} chars",
        "command": f"python -m scenarios.sweep --rtt {args.rtt} --loss {args.loss} --attempts {args.attempts} "
        f"--messages {args.messages}",
    }
    written = write_results(args.out, points, meta)
    print(render_markdown(points, meta))
    print(f"sweep written to {', '.join(str(p) for p in written)}; index: {results_index.write(args.out.parent)}")
    broken = [p for p in points if p.sent and (p.delivered < p.sent or not p.exactly_once)]
    for p in broken:
        print(f"sweep: RTT {p.rtt_ms:g} ms, loss {100 * p.loss:g}%: stream {p.delivered}/{p.sent}", file=sys.stderr)
    return 1 if broken or errors else 0


if __name__ == "__main__":
    sys.exit(main())
