"""The list endpoints of the big collections (contacts, companies, deals, tasks, calls),
answered by the search service's index (services/search/lists.py), with the owner's own
MongoDB list as the fallback while the index is rebuilt or the search service does not
answer.

Read-your-own-write: the caller's writes of the last FRESH_SECONDS (from the audit log,
written before each write's answer left) go with the query, and the search service makes
its index hold at least those states before it answers."""
from datetime import timedelta

from flask import g

from crm_common.errors import Timeout, Unavailable
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
    custom fields are the owner's (it checks them against their definitions), except
    `cf.<key>=` / `.ne` beside words in `q`, which only the index answers (their values
    are index terms there, unchecked)."""
    sort = str(params.get("sort") or "").lstrip("-")
    custom = [str(k) for k in params if str(k).startswith("cf.")]
    if sort.startswith("cf.") or (custom and (not params.get("q") or any(
            k.endswith((".gte", ".lte")) for k in custom))):
        return call(owner, method, params)
    try:
        return call("search", "list_records", kind, params, recent_writes(kind))
    except (Unavailable, Timeout):
        return call(owner, method, params)
