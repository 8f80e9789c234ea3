"""The list endpoints of the big collections (contacts, companies, deals, tasks, calls),
answered by the search service's index (services/search/lists.py), with the owner's own
MongoDB list as the fallback while the index is rebuilt or the search service does not
answer.

Read-your-own-write: the caller's writes of the last FRESH_SECONDS (from the audit log,
written before each write's answer left) go with the query, and the search service makes
its index hold at least those states before it answers."""
import time
from datetime import timedelta

from flask import g

from contracts.custom_fields import OWNERS
from crm_common import custom_fields
from crm_common.config import get_settings
from crm_common.errors import BadRequest, Timeout, Unavailable
from crm_common.timeutil import utcnow
from gateway.calls import call

FRESH_SECONDS = 5   # the index has applied a write's event well within this
FRESH_LIMIT = 10
# the audit's resource (route tag) of each record type
RESOURCES = {"contacts": "contact", "companies": "company", "deals": "deal", "tasks": "task",
             "calls": "call"}
# the writes a list shows besides its own type's: a contact carries its company's name, a
# deal its contact's and company's words
SHOWN = {"contact": ("contact", "company"), "deal": ("deal", "contact", "company")}


def recent_writes(kind):
    """[{"type", "id", "updated_at"}] of the caller's latest writes this list shows."""
    from gateway.auth import current
    identity = g.get("identity") or {}
    who = (("actor_id", identity["user_id"]) if identity.get("user_id")
           else ("api_key_id", identity.get("api_key_id")))
    if not who[1]:
        return []
    resources = [r for r, k in RESOURCES.items() if k in SHOWN.get(kind, (kind,))]
    entries = current().store.recent_writes(who[0], who[1], resources,
                                            utcnow() - timedelta(seconds=FRESH_SECONDS),
                                            FRESH_LIMIT)
    return [{"type": RESOURCES[e["resource"]], "id": e["resource_id"],
             "updated_at": e["record_updated_at"]}
            for e in entries if e.get("resource_id") and e.get("record_updated_at")]


def from_index(kind, owner, method, params):
    """The list page from the index, else (rebuilding, search down) from its owner. Typed
    custom-field filters (`cf.<key>`, `.ne`, `.gte`, `.lte`) are checked against their
    definitions here and sent in their stored form, and a sort by a custom field goes with
    its type (INDEX_SORTS); the index answers them, except a range over text or a sort by
    a boolean, which only the owner's list orders. A custom role's hidden fields go along
    (field_access.search_access): they never make a record match `q`, so while the index
    does not answer such a caller's `q` is 503 rather than the owner's lookup."""
    sort = str(params.get("sort") or "").lstrip("-")
    custom = {str(k): v for k, v in params.items() if str(k).startswith("cf.")}
    if custom:
        checked = checked_filters(kind, custom)
        if checked is None:
            return call(owner, method, params)
        params = {**params, **checked}
    hints = {}
    if sort.startswith("cf."):
        definition = definitions(kind).get(sort[3:])
        if definition is None:
            definition = definitions(kind, fresh=True).get(sort[3:])
        if definition is None or definition["type"] not in INDEX_SORTS:
            return call(owner, method, params)   # its 400, or the sorts only it orders
        hints["sort_type"] = definition["type"]
    from gateway import field_access
    access = field_access.search_access(g.get("identity"), (kind,), custom_keys)
    if access:
        hints["access"] = access
    try:
        return call("search", "list_records", kind, params, recent_writes(kind), hints or None)
    except (Unavailable, Timeout):
        if params.get("q") and (access or {}).get(kind, {}).get("hidden"):
            # the owner's own phone and email lookup knows no field grants
            raise Unavailable("Searching is not available while the search index is being "
                              "rebuilt; try again shortly", details={"service": "search"})
        return call(owner, method, params)


def custom_keys(kind):
    """The keys of a kind's custom fields (retired ones too)."""
    return list(definitions(kind))


RANGED = ("number", "money", "date", "datetime")   # the index's ranges (search Entry.numbers)
# the custom field sorts the index orders (a number, or a text's first bytes)
INDEX_SORTS = RANGED + ("text", "select", "user", "url", "email", "phone")
DEFINITIONS_TTL_S = 30
_definitions = {}   # kind -> (monotonic time read, {key: definition})


def definitions(kind, fresh=False):
    """A kind's custom field definitions, as its owner keeps them (cached a while: a filter
    the cached ones refuse reads them again)."""
    held = _definitions.get(kind)
    if fresh or held is None or time.monotonic() - held[0] > DEFINITIONS_TTL_S:
        found = call(OWNERS[kind], "list_custom_fields", {"entity": kind,
                                                          "include_retired": "true"})
        held = _definitions[kind] = (time.monotonic(), {d["key"]: d for d in found["items"]})
    return held[1]


def checked_filters(kind, custom):
    """{param: the value as stored} of a list's `cf.` parameters (400 naming a bad one), or
    None when a range is over a type the index does not range (text, select...)."""
    try:
        typed, conditions = definitions(kind), None
        conditions = custom_fields.list_filters(typed, custom, get_settings().default_region)
    except BadRequest:
        typed = definitions(kind, fresh=True)
        conditions = custom_fields.list_filters(typed, custom, get_settings().default_region)
    out = {}
    for name in custom:
        key, _, op = name[3:].partition(".")
        definition = typed[key]
        if op in ("gte", "lte") and definition["type"] not in RANGED:
            return None
        path = f"custom.{key}" + (".amount" if definition["type"] == "money" else "")
        value = conditions[path] if not op else conditions[path][f"${op}"]
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out
