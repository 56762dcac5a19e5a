"""trust.keys: identities, key files and the registry, on real files, with the errors a damaged file gets."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import nacl.signing
import pytest

from trust import Identity, KeyFileError, KeyFileMissing, PublicKeys, Registry


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    """A saved identity's key file."""
    path = tmp_path / "alice.json"
    Identity.generate().save(path)
    return path


def _edit(path: Path, **fields: object) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def test_key_file_round_trip_keeps_both_key_pairs(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "alice.json"
    identity.save(path)
    loaded = Identity.load(path)
    assert loaded.public == identity.public
    signature = loaded.sign(b"same keys")
    nacl.signing.VerifyKey(identity.public.sign).verify(b"same keys", signature)
    other = Identity.generate()
    assert loaded.agree(other.public.box) == identity.agree(other.public.box) == other.agree(identity.public.box)


def test_key_file_is_owner_only_and_json_with_base64(key_path: Path) -> None:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    data = json.loads(key_path.read_text())
    assert data["format"] == "natlab-key/1"
    for name in ("sign_secret", "box_secret", "sign", "box"):
        assert len(base64.b64decode(data[name], validate=True)) == 32
    assert [p.name for p in key_path.parent.iterdir()] == ["alice.json"]  # no temporary file left


def test_two_identities_differ_and_repr_shows_no_secret(key_path: Path) -> None:
    a, b = Identity.generate(), Identity.generate()
    assert a.public != b.public
    secret = json.loads(key_path.read_text())["sign_secret"]
    loaded = Identity.load(key_path)
    assert secret not in repr(loaded)
    assert repr(loaded) == f"Identity({loaded.public.fingerprint})"
    assert len(loaded.public.fingerprint) == 16


def test_agree_refuses_low_order_and_wrong_size_keys() -> None:
    identity = Identity.generate()
    with pytest.raises(ValueError, match="low-order point"):
        identity.agree(bytes(32))
    with pytest.raises(ValueError, match="expected 32 bytes, got 31"):
        identity.agree(bytes(31))


def test_public_keys_check_their_sizes() -> None:
    with pytest.raises(ValueError, match="box key: expected 32 bytes, got 33"):
        PublicKeys(bytes(32), bytes(33))


def test_missing_key_file_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileMissing, match=r"nope\.json: no such file"):
        Identity.load(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "not JSON"),
        ('{"format": ', "not JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"format": "natlab-key/9"}', "format 'natlab-key/9', expected 'natlab-key/1'"),
    ],
)
def test_corrupt_key_file_is_a_clear_error(key_path: Path, content: str, message: str) -> None:
    key_path.write_text(content)
    with pytest.raises(KeyFileError, match=message) as caught:
        Identity.load(key_path)
    assert str(key_path) in str(caught.value)
    assert not isinstance(caught.value, KeyFileMissing)


def test_binary_key_file_is_a_clear_error(key_path: Path) -> None:
    key_path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(KeyFileError, match="not JSON"):
        Identity.load(key_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sign_secret", None, "sign_secret: missing"),
        ("box_secret", "not base64!", "box_secret: not base64"),
        ("sign_secret", base64.b64encode(bytes(31)).decode(), "sign_secret: expected 32 bytes, got 31"),
        ("box_secret", base64.b64encode(bytes(64)).decode(), "box_secret: expected 32 bytes, got 64"),
        ("box", base64.b64encode(bytes(16)).decode(), "box: expected 32 bytes, got 16"),
    ],
)
def test_wrong_fields_name_the_field(key_path: Path, field: str, value: object, message: str) -> None:
    _edit(key_path, **{field: value})
    with pytest.raises(KeyFileError, match=message):
        Identity.load(key_path)


def test_public_halves_must_match_the_secrets(key_path: Path) -> None:
    _edit(key_path, sign=base64.b64encode(Identity.generate().public.sign).decode())
    with pytest.raises(KeyFileError, match="do not match the secret keys"):
        Identity.load(key_path)


def test_unreadable_key_file(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(KeyFileError, match="cannot read"):
        Identity.load(tmp_path / "dir.json")


def test_registry_round_trip_and_lookup(tmp_path: Path) -> None:
    alice, bob = Identity.generate().public, Identity.generate().public
    path = tmp_path / "registry.json"
    Registry({"bob": bob, "alice": alice}).save(path)
    loaded = Registry.load(path)
    assert loaded == {"alice": alice, "bob": bob}
    assert list(loaded) == ["alice", "bob"]
    assert loaded.get("alice") == alice
    assert loaded.get("carol") is None
    assert "bob" in loaded
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text())["ids"]["alice"] == alice.to_json()


def test_registry_refuses_bad_ids() -> None:
    with pytest.raises(ValueError, match="invalid id 'b@d'"):
        Registry({"b@d": Identity.generate().public})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": "natlab-registry/1"}', "ids: expected a JSON object, got NoneType"),
        ('{"format": "natlab-registry/1", "ids": {"b@d": {}}}', "invalid id 'b@d'"),
        ('{"format": "natlab-registry/1", "ids": {"alice": []}}', "alice: expected a JSON object, got list"),
        (
            '{"format": "natlab-registry/1", "ids": {"alice": {"sign": "AAAA"}}}',
            "alice: sign: expected 32 bytes, got 3",
        ),
        ('{"format": "natlab-key/1", "ids": {}}', "expected 'natlab-registry/1'"),
        ("not json", "not JSON"),
    ],
)
def test_corrupt_registry_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "registry.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=message) as caught:
        Registry.load(path)
    assert str(path) in str(caught.value)


def test_missing_registry(tmp_path: Path) -> None:
    with pytest.raises(KeyFileMissing, match=r"registry\.json: no such file"):
        Registry.load(tmp_path / "registry.json")
