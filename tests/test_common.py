"""Tests of the shared library: its pure functions, and find_in over the real database."""
from datetime import datetime, timezone

import pytest
from marshmallow import ValidationError
from nameko.exceptions import deserialize, serialize

from crm_common import errors
from crm_common.cursors import decode_cursor, encode_cursor
from crm_common.mongo import IN_CHUNK, find_in, in_chunks
from crm_common.phones import normalize_phone, phone_search_keys
from crm_common.text import tokens
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
    with pytest.raises(errors.ValidationFailed):
        decode_cursor(cursor, "updated_at", -1)
    with pytest.raises(errors.ValidationFailed):
        decode_cursor("!!!", "created_at", -1)


def test_tokens_fold_accents():
    assert tokens("Élodie  D'Arco-Rossi") == {"elodie", "d", "arco", "rossi"}


def test_iso_times_are_utc_with_z():
    assert to_iso(parse_iso("2026-01-02T03:04:05+02:00")) == "2026-01-02T01:04:05Z"
    assert to_iso(parse_iso("2026-01-02T03:04:05")) == "2026-01-02T03:04:05Z"


def test_find_in_cuts_long_lists_and_returns_each_document_once(stack, unique):
    """find_in sends `$in` lists of IN_CHUNK values (SecantusDB's cost of one `$in` grows
    with values x matches); a multikey document matched from two lists comes back once."""
    collection = stack.mongo[f"scratch_{unique}"]["docs"]
    collection.create_index("keys")
    collection.insert_many([{"_id": f"d{i}", "keys": [f"k{i}", f"k{i + 500}"]} for i in range(200)])
    wanted = [f"k{i}" for i in range(0, 200, 2)] + [f"k{i + 500}" for i in range(0, 200, 2)]
    wanted += [f"missing{i}" for i in range(150)] + wanted[:10]  # misses and repeats
    found = list(find_in(collection, "keys", wanted, {"_id": 1}))
    assert sorted(d["_id"] for d in found) == sorted(f"d{i}" for i in range(0, 200, 2))
    assert list(in_chunks(["a", "b", "a", "c"], size=2)) == [["a", "b"], ["c"]]
    assert sum(len(c) for c in in_chunks(wanted)) == len(set(wanted))
    assert max(len(c) for c in in_chunks(wanted)) == IN_CHUNK
    stack.mongo.drop_database(f"scratch_{unique}")


# reading changes in windows of updated_at (crm_common/changes.py)
class FakeContactsRecords:
    """contacts.search_records over changes at given instants; counts what each query
    matches (what the embedded database reads before it applies the limit)."""

    def __init__(self, stamps):
        from crm_common.timeutil import to_iso
        self.docs = sorted(({"id": f"c{i:06d}", "window_at": to_iso(at), "at": at}
                            for i, at in enumerate(stamps)), key=lambda d: (d["at"], d["id"]))
        self.matched = 0

    def fetch(self, since, until, limit, cursor=None):
        return self.search_records("contact", since, until, limit, cursor)

    def search_records(self, kind, since, until, limit, cursor=None):
        from crm_common.timeutil import parse_iso
        lo, hi = parse_iso(since), parse_iso(until)
        match = [d for d in self.docs if lo <= d["at"] < hi]
        self.matched += len(match)
        if cursor:
            match = [d for d in match if (d["at"], d["id"]) > cursor]
        page = match[:limit]
        more = len(match) > limit
        return {"items": [dict(d) for d in page],
                "next_cursor": (page[-1]["at"], page[-1]["id"]) if more else None}


def test_changes_are_read_in_windows_of_about_a_page():
    from datetime import datetime, timedelta, timezone
    from crm_common.changes import EPOCH, changed_pages
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    # a year of sparse changes, a dense import (one per ms) and a bulk write in one instant
    stamps = ([base + timedelta(hours=7 * i) for i in range(1200)]
              + [base + timedelta(days=400, milliseconds=i) for i in range(6000)]
              + [base + timedelta(days=401)] * 1300)
    contacts = FakeContactsRecords(stamps)
    seen = [d["id"] for page in changed_pages(
        contacts.fetch, EPOCH, base + timedelta(days=402)) for d in page]
    assert set(seen) == {d["id"] for d in contacts.docs}
    assert len(seen) < 1.2 * len(contacts.docs)  # few read twice
    # not quadratic: open-ended pages would match ~(n^2 / 2 / page) = 70,000 here
    assert contacts.matched < 4 * len(contacts.docs), contacts.matched


def test_a_window_that_timed_out_is_narrowed():
    """A first pass from 1970 meets all the contacts at once: contacts times out on such a
    window (it reads every match), and the sync narrows down on them."""
    from datetime import datetime, timedelta, timezone
    from crm_common.errors import Timeout
    from crm_common.changes import EPOCH, changed_pages
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    contacts = FakeContactsRecords([base + timedelta(milliseconds=i) for i in range(20000)])
    answer = contacts.search_records

    def slow_on_big_windows(kind, since, until, limit, cursor=None):
        before = contacts.matched
        page = answer(kind, since, until, limit, cursor)
        if contacts.matched - before > 3000:
            raise Timeout("contacts did not answer")
        return page
    contacts.search_records = slow_on_big_windows
    seen = {d["id"] for page in changed_pages(
        contacts.fetch, EPOCH, base + timedelta(days=1)) for d in page}
    assert seen == {d["id"] for d in contacts.docs}
    assert contacts.matched < 6 * len(contacts.docs), contacts.matched


def test_a_window_page_resumes_with_index_ranges(stack, unique):
    """crm_common.mongo.window_page: every document of a window once, in (time, _id) order,
    through an instant holding more than a page (a bulk write) and what follows it."""
    from datetime import timedelta
    from crm_common.mongo import window_page
    collection = stack.mongo[f"scratch_{unique}"]["docs"]
    collection.create_index([("updated_at", -1), ("_id", -1)])
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stamps = [at] * 25 + [at + timedelta(milliseconds=i) for i in range(1, 12)] + [at + timedelta(days=9)]
    collection.insert_many([{"_id": f"d{i:03d}", "updated_at": t} for i, t in enumerate(stamps)])
    window = {"$gte": at, "$lt": at + timedelta(days=1)}
    seen, cursor = [], None
    while True:
        docs, cursor = window_page(collection, "updated_at", window, 7, cursor)
        seen += [d["_id"] for d in docs]
        if not cursor:
            break
    assert seen == [f"d{i:03d}" for i in range(36)]
    stack.mongo.drop_database(f"scratch_{unique}")


def test_patterns_end_the_string_where_the_document_says():
    """Every pattern validator of the contracts is crm_common.fields.Pattern: `$` ends the
    string as in the OpenAPI document (ECMA-262), not before a final line break."""
    import importlib
    import pkgutil

    import contracts
    from marshmallow import Schema, validate
    from crm_common.fields import Pattern

    check = Pattern(r"^[a-z]{1,5}$")
    assert check("abc") == "abc"
    for bad in ("abc\n", "abcdef", "ab c"):
        with pytest.raises(ValidationError):
            check(bad)
    assert Pattern(r"^https?://")("https://x\n")   # a prefix stays a prefix

    def validators(field):
        yield from getattr(field, "validators", ())
        for inner in ("inner", "key_field", "value_field"):
            if getattr(field, inner, None) is not None:
                yield from validators(getattr(field, inner))

    seen = 0
    for info in pkgutil.iter_modules(contracts.__path__):
        module = importlib.import_module(f"contracts.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Schema) and value is not Schema:
                for field in value._declared_fields.values():
                    for v in validators(field):
                        if isinstance(v, validate.Regexp):
                            seen += 1
                            assert isinstance(v, Pattern), (value.__name__, v.regex.pattern)
    assert seen > 20
