"""``python3 -m trust make-keys``: the lab's key files and registry, made once, kept, and refused when damaged."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from trust import Identity, KeyFileError, Registry, key_file, make_keys, parse_ids

REPO = Path(__file__).resolve().parents[1]


def make_keys_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trust", "make-keys", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_make_keys_writes_a_key_per_host_and_the_registry(tmp_path: Path) -> None:
    made = make_keys(["alice", "bob"], tmp_path)
    assert made.created == ("alice", "bob")
    assert made.kept == ()
    registry = Registry.load(tmp_path / "registry.json")
    assert list(registry) == ["alice", "bob"]
    for peer_id in ("alice", "bob"):
        assert registry[peer_id] == Identity.load(key_file(tmp_path, peer_id)).public
        assert stat.S_IMODE(key_file(tmp_path, peer_id).stat().st_mode) == 0o600
    assert registry["alice"] != registry["bob"]
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["alice.json", "bob.json"]


def test_make_keys_is_idempotent_and_adds_hosts(tmp_path: Path) -> None:
    first = make_keys(["alice", "bob"], tmp_path)
    alice_file = key_file(tmp_path, "alice").read_bytes()
    again = make_keys(["alice", "bob"], tmp_path)
    assert again.created == ()
    assert again.kept == ("alice", "bob")
    assert again.registry == first.registry
    assert key_file(tmp_path, "alice").read_bytes() == alice_file
    more = make_keys(["carol"], tmp_path)  # an overlay's extra host: the registry keeps alice and bob
    assert more.created == ("carol",)
    assert list(Registry.load(tmp_path / "registry.json")) == ["alice", "bob", "carol"]
    assert Registry.load(tmp_path / "registry.json")["alice"] == first.registry["alice"]


def test_registry_is_rewritten_from_the_key_files(tmp_path: Path) -> None:
    make_keys(["alice", "bob"], tmp_path)
    (tmp_path / "registry.json").write_text("damaged")
    key_file(tmp_path, "bob").unlink()  # a host removed by hand
    (tmp_path / "keys" / ".alice.json.x.tmp").write_text("an interrupted write")  # not a key file
    made = make_keys(["alice"], tmp_path)
    assert list(made.registry) == ["alice"]
    assert Registry.load(tmp_path / "registry.json") == made.registry


def test_a_damaged_key_file_is_refused_never_replaced(tmp_path: Path) -> None:
    make_keys(["alice", "bob"], tmp_path)
    key_file(tmp_path, "bob").write_text('{"format": "natlab-key/1"}')
    done = make_keys_cli("--ids", "alice,bob", "--dir", str(tmp_path))
    assert done.returncode == 1
    assert (
        done.stderr == f"make-keys: {key_file(tmp_path, 'bob')}: sign_secret: missing (expected 32 bytes in base64)\n"
    )
    assert key_file(tmp_path, "bob").read_text() == '{"format": "natlab-key/1"}'


def test_a_stray_file_in_keys_is_named(tmp_path: Path) -> None:
    make_keys(["alice"], tmp_path)
    (tmp_path / "keys" / "not an id.json").write_text("{}")
    done = make_keys_cli("--ids", "alice", "--dir", str(tmp_path))
    assert done.returncode == 1
    assert "not an id.json: not a key file name" in done.stderr


def test_cli_reports_what_it_made_and_kept(tmp_path: Path) -> None:
    done = make_keys_cli("--ids", "alice, bob,alice", "--dir", str(tmp_path / "secrets"))
    assert done.returncode == 0, done.stderr
    registry = tmp_path / "secrets" / "registry.json"
    holds = "alice (198.19.255.1), bob (198.19.255.2)"
    assert done.stdout == f"make-keys: made alice, bob; kept none; {registry} holds {holds}\n"
    again = make_keys_cli("--ids", "bob", "--dir", str(tmp_path / "secrets"))
    assert again.stdout == f"make-keys: made none; kept bob; {registry} holds {holds}\n"


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("alice,b@d", "invalid id 'b@d' in 'alice,b@d'"),
        ("", "invalid id '' in ''"),
        ("alice,,bob", "invalid id '' in 'alice,,bob'"),
        ("../etc", "invalid id '../etc'"),
        ("x" * 33, "invalid id 'xxxx"),
    ],
)
def test_cli_refuses_bad_ids(tmp_path: Path, ids: str, message: str) -> None:
    done = make_keys_cli("--ids", ids, "--dir", str(tmp_path))
    assert done.returncode == 2
    assert message in done.stderr
    assert "ids match [A-Za-z0-9]" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_names_an_unwritable_directory() -> None:
    """sysfs refuses a new folder to everyone, root included (a chmod would not stop root)."""
    done = make_keys_cli("--ids", "alice", "--dir", "/sys/natlab-secrets")
    assert done.returncode == 1
    assert done.stderr in {
        "make-keys: cannot write /sys/natlab-secrets: Operation not permitted\n",
        "make-keys: cannot write /sys/natlab-secrets: Permission denied\n",
    }


def test_cli_names_a_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").write_text("")
    done = make_keys_cli("--ids", "alice", "--dir", str(tmp_path / "secrets"))
    assert done.returncode == 1
    assert done.stderr.startswith(f"make-keys: cannot write {tmp_path / 'secrets'}")


def test_parse_ids() -> None:
    assert parse_ids("alice,bob") == ["alice", "bob"]
    assert parse_ids(" carol , alice,carol") == ["carol", "alice"]
    with pytest.raises(ValueError, match="invalid id"):
        parse_ids("alice bob")


def test_each_host_gets_an_overlay_address_it_keeps_across_runs(tmp_path: Path) -> None:
    """The tunnel's addresses: stable for the lab's life (a restart keeps them), the lowest free for a new id."""
    first = make_keys(["bob", "alice"], tmp_path).registry.overlay
    assert first == {"alice": IPv4Address("198.19.255.1"), "bob": IPv4Address("198.19.255.2")}
    key_file(tmp_path, "alice").unlink()  # alice leaves: her address is free again, bob keeps his
    assert make_keys(["bob"], tmp_path).registry.overlay == {"bob": IPv4Address("198.19.255.2")}
    again = make_keys(["carol", "bob", "dave"], tmp_path).registry.overlay
    assert again == {
        "bob": IPv4Address("198.19.255.2"),
        "carol": IPv4Address("198.19.255.1"),
        "dave": IPv4Address("198.19.255.3"),
    }
    assert Registry.load(tmp_path / "registry.json").overlay == again


def test_a_registry_from_before_the_tunnel_still_loads_and_gains_addresses(tmp_path: Path) -> None:
    """Readers that do not know ``overlay`` ignore it; a registry without it loads with none."""
    made = make_keys(["alice"], tmp_path)
    path = tmp_path / "registry.json"
    fields = json.loads(path.read_text())
    assert fields["ids"]["alice"]["overlay"] == "198.19.255.1"
    del fields["ids"]["alice"]["overlay"]
    path.write_text(json.dumps(fields))
    old = Registry.load(path)
    assert old == made.registry
    assert old.overlay == {}
    assert make_keys(["alice"], tmp_path).registry.overlay == {"alice": IPv4Address("198.19.255.1")}


def test_a_bad_overlay_address_in_the_registry_is_named(tmp_path: Path) -> None:
    make_keys(["alice"], tmp_path)
    path = tmp_path / "registry.json"
    path.write_text(path.read_text().replace("198.19.255.1", "not-an-address"))
    with pytest.raises(KeyFileError, match="alice: overlay: 'not-an-address' is not an IPv4 address"):
        Registry.load(path)


def test_cli_fails_when_the_overlay_block_is_full(tmp_path: Path) -> None:
    ids = ",".join(f"h{i}" for i in range(255))
    done = make_keys_cli("--ids", ids, "--dir", str(tmp_path))
    assert done.returncode == 1
    assert "no overlay address left for 'h99': 198.19.255.0/24 holds 254 hosts" in done.stderr  # ids in order
