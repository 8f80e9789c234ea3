from flask import g

from contracts import search as s
from gateway import field_access, roles
from gateway.calls import call
from gateway.lists import custom_keys
from gateway.routes import api

TAG = "search"


@api.route("/search", "GET", "One search box over contacts, companies, deals, tasks, calls and notes: "
           "ranked, typo tolerant, prefix as you type, only what the caller may see", TAG,
           query=s.SearchQuery, response=s.SearchResults, errors=(400, 422, 503, 504),
           permission="search:read")
def search(body, params):
    # a custom role finds only the types it reads (gateway/roles.py)
    asked = s.parse_types(params.get("types"))
    types = roles.searchable_types(g.identity, asked)
    if not types:
        return {"items": [], "counts": {}}
    # a hidden field never makes a record match (field_access.search_access)
    access = field_access.search_access(g.identity, types, custom_keys)
    return call("search", "search", {**params, "types": ",".join(types)} if types != asked
                else params, access)
