"""The audit log of every successful write through the gateway (admins only)."""
from crm_common.validation import load
from gateway import auth
from contracts.gateway import AuditEntry, AuditPage, AuditQuery
from gateway.routes import api

TAG = "audit"
_entry = AuditEntry()
_query = AuditQuery()


@api.route("/audit", "GET", "Audit log, newest first (admin); filters combine", TAG,
           query=AuditQuery, response=AuditPage, errors=(400, 422, 503), permission="audit:read")
def list_audit(body, params):
    q = load(_query, params)
    query = {k: q[k] for k in ("actor_id", "api_key_id", "resource", "resource_id", "method",
                               "request_id") if q.get(k)}
    at = {}
    if q.get("from_"):
        at["$gte"] = q["from_"]
    if q.get("to"):
        at["$lt"] = q["to"]
    if at:
        query["at"] = at
    docs, next_cursor = auth.current().store.page_audit(query, q["limit"], q.get("cursor"))
    items = []
    for doc in docs:
        item = _entry.dump(doc)
        item["id"] = doc["_id"]
        items.append(item)
    return {"items": items, "next_cursor": next_cursor}
