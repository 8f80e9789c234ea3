"""Keyset pagination: a page is an index range scan after the last (sort value, _id) seen.

A cursor is opaque to clients: `<urlsafe base64 of JSON>.<urlsafe base64 HMAC-SHA256>`,
signed with the deployment's cursor secret (`CRM_CURSOR_SECRET`, else `CRM_JWT_SECRET`:
every service and the gateway read the same environment). It is bound to the list
(collection) and the sort it was made for, and carries only typed scalars (text, integer,
float, boolean, null, datetime), each encoded with its type: nothing a client writes can
become a query operator. A cursor that does not verify, or was made for another list or
sort, is a 422 `validation_error` on `cursor`.
"""
import base64
import binascii
import hashlib
import hmac
import json
import logging
from datetime import datetime

from pymongo import ASCENDING, DESCENDING

from crm_common.errors import BadRequest, ValidationFailed
from crm_common.timeutil import parse_iso, to_iso

log = logging.getLogger(__name__)

# used only when neither CRM_CURSOR_SECRET nor CRM_JWT_SECRET is set (a developer machine):
# cursors then still carry typed values only, but anyone can sign one
_DEV_SECRET = "crm-dev-cursor-secret (set CRM_CURSOR_SECRET)"
_secret = None
MAX_CURSOR_CHARS = 2000


def _key():
    global _secret
    if _secret is None:
        from crm_common.config import get_settings
        secret = get_settings().cursor_secret
        if not secret:
            log.warning("CRM_CURSOR_SECRET (and CRM_JWT_SECRET) not set: list cursors are "
                        "signed with a development key; set one in production")
            secret = _DEV_SECRET
        _secret = secret.encode()
    return _secret


def _b64(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(raw):
    return hmac.new(_key(), raw, hashlib.sha256).digest()[:18]


def invalid_cursor(reason):
    return ValidationFailed("Invalid cursor", {"fields": {"cursor": [reason]}})


def sign_token(payload):
    """A JSON object as a signed opaque token (cursors, export positions)."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(raw)}.{_b64(_mac(raw))}"


def verify_token(token):
    """The object a token signed here carries; 422 if it was not signed with this secret."""
    if not isinstance(token, str) or len(token) > MAX_CURSOR_CHARS or token.count(".") != 1:
        raise invalid_cursor("Not a cursor of this list.")
    body, mac = token.split(".")
    try:
        raw, signature = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise invalid_cursor("Not a cursor of this list.")
    if not hmac.compare_digest(signature, _mac(raw)):
        raise invalid_cursor("Not a cursor of this list (tampered, or from elsewhere).")
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_cursor("Not a cursor of this list.")
    if not isinstance(payload, dict):
        raise invalid_cursor("Not a cursor of this list.")
    return payload


# typed scalars: [type, value]
def encode_value(value):
    if value is None:
        return ["n", None]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, datetime):
        return ["t", to_iso(value)]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", value]
    if isinstance(value, str):
        return ["s", value]
    raise TypeError(f"cannot page on a {type(value).__name__} value")


_CHECKS = {"n": lambda v: v is None, "b": lambda v: isinstance(v, bool),
           "i": lambda v: isinstance(v, int) and not isinstance(v, bool),
           "f": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
           "s": lambda v: isinstance(v, str), "t": lambda v: isinstance(v, str)}


def decode_value(typed):
    if not (isinstance(typed, list) and len(typed) == 2 and typed[0] in _CHECKS
            and _CHECKS[typed[0]](typed[1])):
        raise invalid_cursor("Not a cursor of this list.")
    kind, value = typed
    if kind == "t":
        try:
            return parse_iso(value)
        except (ValueError, TypeError):
            raise invalid_cursor("Not a cursor of this list.")
    return float(value) if kind == "f" else value


def parse_sort(sort, allowed, default):
    sort = sort or default
    field = sort.lstrip("-")
    if field not in allowed:
        raise BadRequest(f"Cannot sort by {field!r}", {"allowed": sorted(allowed)})
    return field, DESCENDING if sort.startswith("-") else ASCENDING


def encode_cursor(sort_field, direction, doc, scope=""):
    """`scope`: the list the cursor belongs to (page() passes the collection's name)."""
    return sign_token({"l": scope, "f": sort_field, "d": direction,
                       "v": encode_value(_path_value(doc, sort_field)),
                       "i": encode_value(doc["_id"])})


def _path_value(doc, path):
    """The value at a dotted path (`custom.budget.amount`: a typed custom field's sort)."""
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def decode_cursor(cursor, sort_field, direction, scope=""):
    payload = verify_token(cursor)
    if (payload.get("l") != scope or payload.get("f") != sort_field
            or payload.get("d") != direction):
        raise invalid_cursor("This cursor was made for another list or sort.")
    return decode_value(payload.get("v")), decode_value(payload.get("i"))


def after_cursor(query, cursor, sort_field, direction, scope=""):
    """Add the keyset condition "strictly after the cursor" to a query."""
    if not cursor:
        return query
    value, last_id = decode_cursor(cursor, sort_field, direction, scope)
    op = "$gt" if direction == ASCENDING else "$lt"
    keyset = {"$or": [{sort_field: {op: value}}, {sort_field: value, "_id": {op: last_id}}]}
    return {"$and": [query, keyset]} if query else keyset


def page(collection, query, sort_field, direction, limit, cursor=None, projection=None):
    """One page plus the cursor of the next, reading limit+1 documents to know if there is one."""
    scope = collection.name
    full_query = after_cursor(query, cursor, sort_field, direction, scope)
    # the cursor holds the sort value: a projection that leaves it out (an internal key,
    # e.g. contacts' sort_name) reads it all the same, and it is dropped after
    hidden = isinstance(projection, dict) and projection.get(sort_field) == 0
    if hidden:
        projection = {k: v for k, v in projection.items() if k != sort_field}
    found = collection.find(full_query, projection).sort([(sort_field, direction), ("_id", direction)])
    docs = list(found.limit(limit + 1))
    next_cursor = None
    if len(docs) > limit:
        docs = docs[:limit]
        next_cursor = encode_cursor(sort_field, direction, docs[-1], scope)
    if hidden:
        for doc in docs:
            doc.pop(sort_field, None)
    return docs, next_cursor
