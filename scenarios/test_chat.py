"""The chat CLI itself, in a pseudo-terminal, exactly as a user types it: `docker compose exec alice client bob`."""

from __future__ import annotations

import pexpect

from scenarios.harness import Lab
from scenarios.pairs import Pair
from scenarios.steps import events, punch_timeout_s, reset_paths


def open_chat(lab: Lab) -> pexpect.spawn:
    env = lab.compose_env()
    command, *args = lab.compose_argv("exec", "-e", "PROMPT_TOOLKIT_NO_CPR=1", "alice", "client", "bob")
    timeout = punch_timeout_s(lab, "alice") + 10
    return pexpect.spawn(command, args, env=env, encoding="utf-8", timeout=timeout, dimensions=(24, 100))


def test_chat_line_typed_at_alice_arrives_at_bob(lab: Lab, pair: Pair) -> None:
    reset_paths(lab)
    chat = open_chat(lab)
    try:
        chat.expect(r"direct path to bob" if pair.expected_path == "direct" else r"relayed path to bob")
        chat.sendline("typed in a real terminal")
        lab.wait_for(
            lambda: (
                True
                if any(e["text"] == "typed in a real terminal" for e in events(lab, "bob", "message_received"))
                else None
            ),
            5,
            "bob to receive the typed line",
        )
        lab.exec_ok("bob", "client", "send", "alice", "answer from bob")
        chat.expect(r"\[peer bob\] answer from bob")
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0, chat.before
