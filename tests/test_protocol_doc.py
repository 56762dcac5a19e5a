"""PROTOCOL.md's tables say what the code does: every v2 type byte, field tag, error code and error kind."""

import re
from pathlib import Path

from protocol import TYPE_CODES, ErrorCode, ErrorKind, FieldTag

DOC = (Path(__file__).resolve().parents[1] / "PROTOCOL.md").read_text()


def _rows(pattern):
    return re.findall(pattern, DOC, flags=re.MULTILINE)


def test_the_type_table_lists_every_type_byte():
    assert {name: int(code, 16) for code, name in _rows(r"^\| `0x([0-9a-f]{2})` \| ([a-z-]+) \|")} == TYPE_CODES


def test_the_field_table_lists_every_tag():
    assert {name: int(tag) for tag, name in _rows(r"^\| (\d+) \| ([A-Z_]+) \|")} == {t.name: t.value for t in FieldTag}


def test_the_error_code_table_lists_every_code():
    assert {name: int(code) for code, name in _rows(r"^\| (\d{3}) \| `([A-Z_]+)` \|")} == {
        c.name: c.value for c in ErrorCode
    }


def test_the_malformed_table_lists_every_kind_and_whether_it_is_garbage():
    rows = {kind: garbage == "yes" for kind, garbage in _rows(r"^\| `([a-z_0-9]+)` \| (?:text|v2|both) \| (yes|no) \|")}
    assert rows == {kind.value: kind.garbage for kind in ErrorKind}
