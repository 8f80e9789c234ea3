from contracts import search as s
from gateway.calls import call
from gateway.routes import api

TAG = "search"


@api.route("/search", "GET", "One search box over contacts, companies, deals, tasks, calls and notes: "
           "ranked, typo tolerant, prefix as you type, only what the caller may see", TAG,
           query=s.SearchQuery, response=s.SearchResults, errors=(400, 422, 503, 504),
           permission="search:read")
def search(body, params):
    return call("search", "search", params)
