"""Unit tests of the shared library's pure functions."""
from datetime import datetime, timezone

import pytest
from nameko.exceptions import deserialize, serialize

from crm_common import errors
from crm_common.cursors import decode_cursor, encode_cursor
from crm_common.phones import normalize_phone, phone_search_keys
from crm_common.text import prefix_query, prefixes, tokens
from crm_common.timeutil import parse_iso, to_iso


@pytest.mark.parametrize("raw", ["+39 333 123 4567", "0039 333 123 4567", "333 123 4567",
                                 "+39-333-1234567", "(333) 1234567"])
def test_phone_forms_normalize_to_one_e164(raw):
    assert normalize_phone(raw, "IT")["e164"] == "+393331234567"
    assert normalize_phone(raw, "IT")["raw"] == raw


def test_unparseable_phone_keeps_raw():
    parsed = normalize_phone("call me", "IT")
    assert parsed["e164"] is None and parsed["raw"] == "call me" and not parsed["valid"]


def test_phone_search_keys_cover_national_and_international():
    keys = phone_search_keys("3331234567", "US")
    assert "3331234567" in keys and "+3331234567" in keys


def test_errors_cross_rpc_as_their_own_type():
    original = errors.NotFound("Contact not found", {"id": "x"})
    again = deserialize(serialize(original))
    assert isinstance(again, errors.NotFound)
    assert again.message == "Contact not found" and again.details == {"id": "x"}
    assert again.status == 404


def test_cursor_round_trip_and_sort_binding():
    when = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc)
    cursor = encode_cursor("created_at", -1, {"_id": "abc", "created_at": when})
    assert decode_cursor(cursor, "created_at", -1) == (when, "abc")
    with pytest.raises(errors.BadRequest):
        decode_cursor(cursor, "updated_at", -1)
    with pytest.raises(errors.BadRequest):
        decode_cursor("!!!", "created_at", -1)


def test_tokens_fold_accents_and_prefix_query():
    assert tokens("Élodie  D'Arco-Rossi") == {"elodie", "d", "arco", "rossi"}
    assert prefixes({"ab"}) == ["a", "ab"]
    assert prefix_query("p", "Rossi Mario") == {"p": {"$all": ["mario", "rossi"]}}
    assert prefix_query("p", "!!") == {"_id": {"$in": []}}


def test_iso_times_are_utc_with_z():
    assert to_iso(parse_iso("2026-01-02T03:04:05+02:00")) == "2026-01-02T01:04:05Z"
    assert to_iso(parse_iso("2026-01-02T03:04:05")) == "2026-01-02T03:04:05Z"
