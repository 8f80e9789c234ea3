"""Keyset pagination: a page is an index range scan after the last (sort value, _id) seen.

The cursor is opaque to clients (urlsafe base64 of JSON) and bound to the sort it was made
for, so a cursor from another sort is rejected instead of silently skipping records.
"""
import base64
import json
from datetime import datetime

from pymongo import ASCENDING, DESCENDING

from crm_common.errors import BadRequest
from crm_common.timeutil import parse_iso, to_iso


def parse_sort(sort, allowed, default):
    sort = sort or default
    field = sort.lstrip("-")
    if field not in allowed:
        raise BadRequest(f"Cannot sort by {field!r}", {"allowed": sorted(allowed)})
    return field, DESCENDING if sort.startswith("-") else ASCENDING


def encode_cursor(sort_field, direction, doc):
    value = doc.get(sort_field)
    payload = {"f": sort_field, "d": direction, "i": doc["_id"],
               "v": to_iso(value) if isinstance(value, datetime) else value,
               "t": isinstance(value, datetime)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor, sort_field, direction):
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        value = parse_iso(payload["v"]) if payload["t"] else payload["v"]
        if payload["f"] != sort_field or payload["d"] != direction:
            raise ValueError("cursor made for another sort")
        return value, payload["i"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest("Invalid cursor", {"cursor": str(exc)})


def after_cursor(query, cursor, sort_field, direction):
    """Add the keyset condition "strictly after the cursor" to a query."""
    if not cursor:
        return query
    value, last_id = decode_cursor(cursor, sort_field, direction)
    op = "$gt" if direction == ASCENDING else "$lt"
    keyset = {"$or": [{sort_field: {op: value}}, {sort_field: value, "_id": {op: last_id}}]}
    return {"$and": [query, keyset]} if query else keyset


def page(collection, query, sort_field, direction, limit, cursor=None, projection=None,
         hint=None):
    """One page plus the cursor of the next, reading limit+1 documents to know if there is one.

    `hint` names the index to scan; stores pass it because SecantusDB falls back to a
    collection scan whenever one predicate is outside the index (mongod would not)."""
    full_query = after_cursor(query, cursor, sort_field, direction)
    found = collection.find(full_query, projection).sort([(sort_field, direction), ("_id", direction)])
    if hint:
        found = found.hint(hint)
    docs = list(found.limit(limit + 1))
    next_cursor = None
    if len(docs) > limit:
        docs = docs[:limit]
        next_cursor = encode_cursor(sort_field, direction, docs[-1])
    return docs, next_cursor
