"""The fuzz targets without atheris: they accept their whole seed corpus, they do fail on a real bug, and the
libFuzzer report is read right. (``make fuzz`` runs them under atheris; it is not part of the unit suite.)"""

from dataclasses import replace
from pathlib import Path

import pytest

import fuzz.targets
from client.engine.events import MessageReceived
from client.engine.outputs import Emit
from fuzz.report import read
from fuzz.targets import (
    ALICE,
    SERVER_WALL_MS,
    TARGETS,
    FuzzFinding,
    agent_target,
    fuzz_server,
    protocol_target,
    server_seeds,
    server_target,
)
from protocol import Frame, Sealed, encode

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "fuzz" / "corpus"
GOLDEN = REPO / "tests" / "fixtures" / "protocol"


def test_every_target_has_a_seed_corpus_holding_every_golden_vector():
    golden = {path.read_bytes() for path in GOLDEN.glob("*.bin")}
    assert len(golden) > 30
    for name in TARGETS:
        seeds = {path.read_bytes() for path in (CORPUS / name).iterdir()}
        missing = golden - seeds
        assert not missing, f"copy tests/fixtures/protocol/*.bin into fuzz/corpus/{name}/ ({len(missing)} missing)"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_target_accepts_its_whole_seed_corpus(name):
    for path in sorted((CORPUS / name).iterdir()):
        TARGETS[name](path.read_bytes())


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\xf5",
        b"\xf5\x02\x01" + bytes(8),
        b"\xff" * 1401,
        b"register \x00",
        b"msg bob hi\n\n",
        b"\xf5\x07\x01" + bytes(9),
        encode(Frame(1, Sealed("bob", 1, 1, bytes(16)))),  # a v2 frame that opens for no one
    ],
)
def test_the_targets_take_bad_input_without_complaint(datagram):
    for target in TARGETS.values():
        target(datagram)


def test_the_protocol_target_finds_an_encoder_that_does_not_round_trip(monkeypatch):
    datagram = (GOLDEN / "v2-ack-held.bin").read_bytes()
    protocol_target(datagram)
    monkeypatch.setattr(fuzz.targets, "encode", lambda item: encode(replace(item, txid=item.txid ^ 1)))
    with pytest.raises(FuzzFinding, match="did not encode back"):
        protocol_target(datagram)


def test_the_server_target_finds_a_reply_its_own_parser_refuses(monkeypatch):
    stats = server_seeds()["stats"]  # answered to alice's validated address, whatever its size
    server_target(stats)
    monkeypatch.setattr("server.handler.encode", lambda message: b"ok " * 500)
    with pytest.raises(FuzzFinding, match="a reply of 1500 bytes"):
        server_target(stats)


def test_the_server_target_finds_a_reply_over_the_amplification_budget(monkeypatch):
    server_target(b"register \x01")  # the long err does not fit 3x of 10 bytes: the terse one is sent
    monkeypatch.setattr("server.budget.AmplificationBudget.allow", lambda self, addr, nbytes: True)
    with pytest.raises(FuzzFinding, match="over 3x"):
        server_target(b"register \x01")


@pytest.mark.parametrize("name", sorted(server_seeds()))
def test_the_servers_authenticated_seeds_are_in_the_corpus_and_get_past_cookie_and_proof(name):
    datagram = server_seeds()[name]
    assert (CORPUS / "server" / f"auth-{name}.bin").read_bytes() == datagram, "regenerate: see server_seeds()"
    handler = fuzz_server()
    replies = handler.handle(datagram, ALICE, 1.0, SERVER_WALL_MS + 1)
    assert [kind for kind, n in handler.counters.items() if n] == []
    assert len(replies) == {"connect": 2, "keepalive": 0}.get(name, 1)


def test_the_agent_target_finds_an_event_that_is_not_json(monkeypatch):
    agent_target(b"msg carol hi")  # a seed-era peer's text
    monkeypatch.setattr(MessageReceived, "json_line", lambda self, ts=None: "{not json")
    with pytest.raises(ValueError, match="Expecting property name"):
        agent_target(b"msg carol hi")  # a seed-era peer's text


def test_the_report_reads_executions_rate_and_coverage():
    run = read((REPO / "tests" / "fixtures" / "fuzz" / "libfuzzer-agent.log").read_text())
    assert run is not None
    assert (run.executions, run.exec_per_s, run.seconds) == (4666, 1166, 4)
    assert (run.seed_cov, run.cov, run.features, run.seed_corpus, run.corpus) == (498, 608, 965, 37, 86)
    assert run.line("agent") == (
        "agent         4,666 executions in 4 s (1,166 exec/s)  cov 498 -> 608  ft 965  corpus 37 -> 86"
    )


def test_the_report_of_a_crashed_run_says_so():
    output = "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 40Mb\n=== Uncaught Python exception: ===\n"
    run = read(output)
    assert run is not None
    assert run.seconds is None
    assert "until a crash" in run.line("protocol")
    assert read("ImportError: no module named atheris") is None


def test_the_agent_corpus_holds_sealed_datagrams_that_open(monkeypatch):
    """The sealed seeds are current (fixed keys: the same bytes every time) and take the agent past the seal: a
    sealed data from bob is shown as his message; one naming another id inside is counted ``wrong_id``."""
    seeds = fuzz.targets.agent_seeds()
    for name, datagram in seeds.items():
        assert (CORPUS / "agent" / name).read_bytes() == datagram, f"regenerate fuzz/corpus/agent/{name}"
    shown: list[MessageReceived] = []
    original = fuzz.targets._check_outputs

    def noting(outputs):
        shown.extend(o.event for o in outputs if isinstance(o, Emit) and isinstance(o.event, MessageReceived))
        original(outputs)

    monkeypatch.setattr(fuzz.targets, "_check_outputs", noting)
    agent_target(seeds["sealed-data.bin"])
    assert [(e.peer, e.text, e.seed) for e in shown] == [("bob", "hi alice", False)]
