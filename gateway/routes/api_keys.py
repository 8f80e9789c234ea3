"""API keys for integrations: created by an admin, shown once, stored as a SHA-256 hash,
scoped, revocable, with the time they were last used."""
from flask import g

from crm_common.errors import NotFound
from crm_common.timeutil import utcnow
from crm_common.validation import load
from gateway import auth
from contracts.gateway import (ApiKeyCreated, ApiKeyIn, ApiKeyListQuery, ApiKeyOut,
                                  ApiKeyPage)
from gateway.routes import api

TAG = "api-keys"
_out = ApiKeyOut()
_list_query = ApiKeyListQuery()


def dump_key(doc):
    out = _out.dump(doc)
    for name in _out.fields:
        out.setdefault(name, None)
    out["id"] = doc["_id"]
    return out


@api.route("/api-keys", "POST", "Create an API key (admin); the key is in this answer only",
           TAG, body=ApiKeyIn, response=ApiKeyCreated, status=201,
           errors=(400, 413, 415, 422, 503), permission="api-keys:manage")
def create_key(body, params):
    data = load(ApiKeyIn(), body)
    key = auth.new_api_key()
    doc = {"name": data["name"], "scopes": sorted(set(data["scopes"])),
           "rate_limit_per_minute": data.get("rate_limit_per_minute"),
           "key_hash": auth.hash_api_key(key), "prefix": key[:10],
           "created_by": g.identity.get("user_id"), "created_at": utcnow(),
           "last_used_at": None, "revoked_at": None}
    doc = auth.current().ready().insert_api_key(doc)
    return {**dump_key(doc), "key": key}, 201


@api.route("/api-keys", "GET", "List API keys (admin)", TAG, query=ApiKeyListQuery,
           response=ApiKeyPage, errors=(400, 422, 503), permission="api-keys:manage")
def list_keys(body, params):
    query_in = load(_list_query, params)
    query = {} if query_in["include_revoked"] else {"revoked_at": None}
    docs, next_cursor = auth.current().store.page_api_keys(query, query_in["limit"],
                                                           query_in.get("cursor"))
    return {"items": [dump_key(d) for d in docs], "next_cursor": next_cursor}


@api.route("/api-keys/{key_id}", "GET", "Get an API key (admin; never the key itself)", TAG,
           response=ApiKeyOut, errors=(404, 503), permission="api-keys:manage")
def get_key(key_id, body, params):
    doc = auth.current().store.get_api_key(key_id)
    if not doc:
        raise NotFound("API key not found", {"id": key_id})
    return dump_key(doc)


@api.route("/api-keys/{key_id}", "DELETE", "Revoke an API key (admin): it stops working at once "
           "and stays readable, with its revoked_at, for the audit trail",
           TAG, response=ApiKeyOut, errors=(404, 503), permission="api-keys:manage")
def revoke_key(key_id, body, params):
    store = auth.current().store
    doc = store.update_api_key(key_id, {"revoked_at": utcnow()}, query={"revoked_at": None})
    doc = doc or store.get_api_key(key_id)  # revoking twice answers the same
    if not doc:
        raise NotFound("API key not found", {"id": key_id})
    return dump_key(doc)
