"""The list endpoints of the big collections (contacts, companies, deals, tasks, calls)
answered from the index: the owner's own list parameters (its contract's list query),
filters, sorts and keyset cursors, `include_total`, the caller's visibility inside the
query, and the records as the owner's list gives them.

A cursor is the owner's MongoDB keyset cursor (crm_common.cursors.encode_cursor: signed,
bound to the owner's collection, sort field and direction, holding the last record's sort
value and id), so a client paging while the gateway moves between the index and the
owner's list (search down, rebuilt, back) goes on where it was, on either."""
from dataclasses import dataclass

import re
from datetime import date, datetime, timedelta

import tantivy

from contracts.contacts import CompanyListQuery, CompanyOut, ContactListQuery, ContactOut
from contracts.deals import DealListQuery, DealOut
from contracts.tasks import TaskListQuery, TaskOut
from contracts.telephony import CallListQuery, CallOut
from pymongo import ASCENDING, DESCENDING

from crm_common.cursors import decode_cursor, encode_cursor, invalid_cursor
from crm_common.errors import BadRequest
from crm_common.phones import normalize_phone
from crm_common.timeutil import utcnow
from crm_common.validation import load
from services.search.documents import (NO_DUE, TEXT_SORT_NUMBERS, custom_term,
                                       custom_url_value, filter_term, from_micros, micros,
                                       period_cover, range_number, sort_numbers)
from services.search.query import filters as base_filters
from services.search.query import parse, readable_query

Occur = tantivy.Occur
# `cf.<key>` (equals) and `cf.<key>.ne` are index terms, `.gte` / `.lte` ranges over
# Entry.numbers; `sort=cf.<key>` orders by Entry.numbers too (a number, a date's
# microseconds, or a text's first bytes: NUMBER_SORTS / TEXT_SORTS, the type the gateway
# names) and lists only the records with a value, as the owners' lists do
CUSTOM_FILTER = re.compile(r"^cf\.([a-z][a-z0-9_]{0,39})(?:\.(gte|lte|ne))?$")
Q = tantivy.Query
NUMBER_SORTS = ("number", "money", "date", "datetime")
TEXT_SORTS = ("text", "select", "user", "url", "email", "phone")


@dataclass(frozen=True)
class ListSpec:
    schema: object
    scope: str           # the owner's collection (its cursors are bound to it)
    sorts: dict          # API sort name -> index field
    owner_sorts: dict    # API sort name -> the owner's MongoDB sort field (in its cursors)
    default_sort: str
    equal: tuple = ()    # parameters that are `field=value` filter terms (param, term name)
    text: bool = False   # `q` is a text search
    deleted: bool = False  # `include_deleted` is accepted


SAME_TIMES = {"created_at": "created_at", "updated_at": "updated_at"}
LISTS = {
    "contact": ListSpec(ContactListQuery(), "contacts",
                        {"created_at": "created", "updated_at": "updated", "name": "name_key"},
                        {"created_at": "created_at", "updated_at": "updated_at",
                         "name": "sort_name"}, "-created_at",
                        (("tag", "tag"), ("owner_id", "owner_id"), ("company_id", "company_id"),
                         ("source", "source"), ("status", "status")), text=True, deleted=True),
    "company": ListSpec(CompanyListQuery(), "companies",
                        {"created_at": "created", "updated_at": "updated"}, SAME_TIMES,
                        "-created_at", (("tag", "tag"), ("owner_id", "owner_id")), text=True,
                        deleted=True),
    "deal": ListSpec(DealListQuery(), "deals", {"created_at": "created", "updated_at": "updated"},
                     SAME_TIMES, "-created_at", tuple((k, k) for k in (
                         "pipeline_id", "stage_id", "owner_id", "status", "contact_id",
                         "company_id", "source", "currency"))),
    "task": ListSpec(TaskListQuery(), "tasks", {"due_at": "when", "created_at": "created"},
                     {"due_at": "sort_due", "created_at": "created_at"}, "due_at",
                     tuple((k, k) for k in ("assignee_id", "status", "kind", "contact_id",
                                            "deal_id"))),
    "call": ListSpec(CallListQuery(), "calls", {"started_at": "when"},
                     {"started_at": "started_at"}, "-started_at",
                     tuple((k, k) for k in ("contact_id", "agent_id", "direction", "outcome",
                                            "missed", "called_back"))),
}
# fields an owner's search_records adds to its list's record
NOT_LISTED = {kind: {"deleted", "import_id", "version", "purchases"} - set(out().fields)
              for kind, out in (("contact", ContactOut), ("company", CompanyOut),
                                ("deal", DealOut), ("task", TaskOut), ("call", CallOut))}


def _range(schema, field, low=None, high=None):
    """low <= field < high (either None: open)."""
    return Q.range_query(schema, field, tantivy.FieldType.Integer, low, high,
                         include_lower=True, include_upper=high is None)


def _term(schema, name, value):
    return Q.term_query(schema, "filters", filter_term(name, value))


def _bought(schema, params):
    """Contacts that bought the product (in bought_from..bought_to, days inclusive): its
    terms (documents.bought_terms) of the fewest years, months and days of the period."""
    product = params["bought_product"]
    if not (params.get("bought_from") or params.get("bought_to")):
        return _term(schema, "bought", product)
    low = params.get("bought_from") or date(1970, 1, 1)
    # purchases are dated when recorded (never ahead)
    high = params.get("bought_to") or utcnow().date() + timedelta(days=1)
    return Q.boolean_query([(Occur.Should, _term(schema, "bought", f"{product}@{prefix}"))
                            for prefix in period_cover(low, high)] or
                           [(Occur.Must, _term(schema, "bought", f"{product}@none"))])


@dataclass(frozen=True)
class CustomSort:
    """A sort by a custom field: its `cf` paths in the index, and the owner's sort field
    (in its cursors)."""
    key: str
    type: str

    @property
    def paths(self):
        if self.type in TEXT_SORTS:
            return tuple(f"cf.{self.key}~{i}" for i in range(TEXT_SORT_NUMBERS))
        return (f"cf.{self.key}",)

    @property
    def owner_field(self):
        return f"custom.{self.key}" + (".amount" if self.type == "money" else "")

    def value(self, record):
        """The record's value as its owner stores it (its cursors' value)."""
        value = (record.get("custom") or {}).get(self.key)
        return value.get("amount") if isinstance(value, dict) else value

    def numbers(self, value):
        """The index's numbers of an owner's value (a cursor's), or None."""
        if self.type in TEXT_SORTS:
            found = sort_numbers(self.key, value)
            return tuple(found[f"{self.key}~{i}"] for i in range(TEXT_SORT_NUMBERS)) \
                if found else None
        number = range_number(value)
        return None if number is None else (number,)


def custom_sort(sort, sort_type):
    """The CustomSort of `sort=cf.<key>` (the gateway names the type), else None."""
    api_sort = sort.lstrip("-")
    if not api_sort.startswith("cf."):
        return None
    match = CUSTOM_FILTER.match(api_sort)
    if not match or match.group(2) or sort_type not in NUMBER_SORTS + TEXT_SORTS:
        raise BadRequest(f"Cannot sort by {api_sort!r} here", {"fields": ["sort"]})
    return CustomSort(match.group(1), sort_type)


def build_query(schema, kind, params, people, region, now, custom_range=None, access=None,
                sort_type=None):
    """(query, sort field, API sort, descending) of a list's validated parameters
    (`custom_range(key, op, number)`: the index's query of a custom field range; `access`:
    a custom role's hidden fields, query.readable_query; `sort_type`: the type of the
    custom field a `sort=cf.<key>` names). The sort field of a custom sort is its
    CustomSort."""
    spec = LISTS[kind]
    # the call log has one order (newest first) and ignores `sort`, as its owner does
    sort = spec.default_sort if kind == "call" else params.get("sort") or spec.default_sort
    api_sort = sort.lstrip("-")
    field = custom_sort(sort, sort_type)
    if field is None and api_sort not in spec.sorts:
        raise BadRequest(f"Cannot sort by {api_sort!r}", {"allowed": sorted(spec.sorts)})
    field = field or spec.sorts[api_sort]
    must = base_filters(schema, (kind,), people,
                        live=not (spec.deleted and params.get("include_deleted")))
    must_not = []
    if spec.text and params.get("q"):
        relevance = readable_query(schema, parse(params["q"], region), kind, access)
        if relevance is None:   # nothing searchable typed (only punctuation): no match
            return None, field, sort, sort.startswith("-")
        must.append((Occur.Must, relevance))
    for name, raw in (params.get("custom_filters") or {}).items():
        match = CUSTOM_FILTER.match(name)
        if not match:
            raise BadRequest(f"Not a custom field filter: {name}", {"parameter": name})
        if match.group(2) in ("gte", "lte"):
            number = range_number(custom_url_value(raw))
            if number is None or custom_range is None:
                raise BadRequest(f"{name}: a number or a date", {"parameter": name})
            must.append((Occur.Must, custom_range(match.group(1), match.group(2), number)))
            continue
        term = Q.term_query(schema, "filters", custom_term(match.group(1), custom_url_value(raw)))
        must.append((Occur.MustNot if match.group(2) == "ne" else Occur.Must, term))
    for param, name in spec.equal:
        value = params.get(param)
        if value not in (None, ""):
            must.append((Occur.Must, _term(schema, name, value)))
    if kind == "contact":
        if params.get("created_after") or params.get("created_before"):
            must.append((Occur.Must, _range(schema, "created", micros(params.get("created_after")) or None,
                                            micros(params.get("created_before")) or None)))
        if params.get("bought_product"):
            must.append((Occur.Must, _bought(schema, params)))
        if params.get("not_contacted_since"):
            # never contacted (0) or before then
            must.append((Occur.Must, _range(schema, "when", None,
                                            micros(params["not_contacted_since"]))))
    elif kind == "task":
        low, high = params.get("due_after"), params.get("due_before")
        if low or high:
            must.append((Occur.Must, _range(schema, "when", micros(low) if low else None,
                                            micros(high) if high else NO_DUE["task"])))
        overdue = Q.boolean_query([(Occur.Must, _term(schema, "status", "open")),
                                   (Occur.Must, _range(schema, "when", None, micros(now)))])
        if params.get("overdue") is True:
            must.append((Occur.Must, overdue))
        elif params.get("overdue") is False:
            must_not.append((Occur.MustNot, overdue))
    elif kind == "deal":
        # closed_at, and the expected close date (`when`; 0 when unset, so a lower bound
        # leaves the undated out as the owner's range does)
        for ranged, low, high in (("closed", "closed_after", "closed_before"),
                                  ("when", "expected_close_from", "expected_close_to")):
            if params.get(low) or params.get(high):
                must.append((Occur.Must, _range(schema, ranged, micros(params.get(low)) or 1,
                                                micros(params.get(high)) or None)))
    elif kind == "call":
        if params.get("from_") or params.get("to"):
            must.append((Occur.Must, _range(schema, "when", micros(params.get("from_")) or None,
                                            micros(params.get("to")) or None)))
        if params.get("phone"):
            number = normalize_phone(params["phone"], region) or {}
            must.append((Occur.Must, _term(schema, "number", number.get("e164") or params["phone"])))
    return Q.boolean_query(must + must_not), field, sort, sort.startswith("-")


def _owner_sort(kind, sort):
    spec = LISTS[kind]
    return spec.owner_sorts[sort.lstrip("-")], DESCENDING if sort.startswith("-") else ASCENDING


def encode(kind, sort, field, position):
    """The owner's cursor after `position` (value, id): a time as a time, the name sort's
    folded name as text, a custom value as stored (crm_common.cursors' typed values)."""
    value, record_id = position
    if isinstance(field, CustomSort):
        direction = DESCENDING if sort.startswith("-") else ASCENDING
        return encode_cursor(field.owner_field, direction, {
            "custom": {field.key: {"amount": value} if field.type == "money" else value},
            "_id": record_id}, LISTS[kind].scope)
    owner_field, direction = _owner_sort(kind, sort)
    return encode_cursor(owner_field, direction, {
        owner_field: value if field == "name_key" else from_micros(value), "_id": record_id},
        LISTS[kind].scope)


def decode(kind, sort, field, cursor):
    """The position (value, id) an owner's cursor, or one of the index, points after (a
    custom sort: the index's numbers of the value, then the id)."""
    if isinstance(field, CustomSort):
        direction = DESCENDING if sort.startswith("-") else ASCENDING
        value, record_id = decode_cursor(cursor, field.owner_field, direction,
                                         LISTS[kind].scope)
        numbers = field.numbers(value)
        if numbers is None or not isinstance(record_id, str):
            raise invalid_cursor("Not a cursor of this list.")
        return (*numbers, record_id)
    owner_field, direction = _owner_sort(kind, sort)
    value, record_id = decode_cursor(cursor, owner_field, direction, LISTS[kind].scope)
    if field == "name_key":
        value = "" if value is None else value
    elif value is None or isinstance(value, datetime):
        value = micros(value)
    if not (isinstance(value, str if field == "name_key" else int)
            and not isinstance(value, bool) and isinstance(record_id, str)):
        raise invalid_cursor("Not a cursor of this list.")
    return value, record_id


def listed(kind, record, now):
    """A record as the owner's list gives it."""
    out = {k: v for k, v in record.items() if k not in NOT_LISTED[kind]}
    if kind == "task":
        due = out.get("due_at")
        out["overdue"] = bool(out.get("status") == "open" and due and micros(due) < micros(now))
    return out


def page(index, kind, params, people, region, hints=None):
    """{"items", "next_cursor"(, "total")} of a list's raw parameters. `hints`:
    {"access": a custom role's hidden fields, "sort_type": a custom sort's field type}."""
    hints = hints or {}
    data = load(LISTS[kind].schema, params)
    now = utcnow()
    query, field, sort, descending = build_query(index.schema, kind, data, people, region, now,
                                                 index.custom_range, hints.get("access"),
                                                 hints.get("sort_type"))
    after = decode(kind, sort, field, data["cursor"]) if data.get("cursor") else None
    out = {"items": [], "next_cursor": None}
    if query is not None and isinstance(field, CustomSort):
        found = [((field.value(record), record_id), record) for record_id, record in
                 index.custom_sorted_page(query, field.paths, descending, data["limit"], after)]
        query = Q.boolean_query([(Occur.Must, query),
                                 (Occur.Must, Q.exists_query(field.paths[0]))])
    elif query is not None:
        found = index.sorted_page(query, field, descending, data["limit"], after)
    if query is not None:
        if len(found) > data["limit"]:
            found = found[:data["limit"]]
            out["next_cursor"] = encode(kind, sort, field, found[-1][0])
        out["items"] = [listed(kind, record, now) for _, record in found]
    if data.get("include_total"):
        out["total"] = index.count(query) if query is not None else 0
    return out

