"""Search service entrypoints: thin; the index is dependencies.py (index.py underneath),
what an event means is feed.py, how a text becomes a query is query.py."""
from contracts.search import SearchQuery, TYPES, parse_types
from crm_common.context import CallerContext
from crm_common.errors import EXPECTED, Unavailable, ValidationFailed
from crm_common.health import HealthEntrypoints
from crm_common.messaging.rpc import rpc
from crm_common.validation import load
from services.search import lists
from services.search.dependencies import SearchIndex
from services.search.feed import SOURCES, event_types_of
from services.search.listen import feed_handler

search_in = SearchQuery()


def _feed(source):
    @feed_handler(source, event_types_of(source))
    def handle(self, event):
        """Reads the records it names from their owner into this replica's index (every
        replica: its own queue)."""
        self.index.apply(event)

    handle.__name__ = f"on_{source}_events"
    return handle


class SearchService(HealthEntrypoints):
    name = "search"

    index = SearchIndex()
    caller = CallerContext()

    @rpc(expected_exceptions=EXPECTED + (Unavailable,))
    def search(self, params, access=None):
        """GET /api/v1/search: ranked records of every type the caller may see. `access`:
        {type: {"hidden": [field], "custom_keys": [key]}} of a custom role's hidden fields,
        which then never make a record match (gateway/field_access.py search_access)."""
        data = load(search_in, params)
        return self.index.search(data["q"], parse_types(data.get("types")), data["limit"],
                                 self.caller, access)

    @rpc(expected_exceptions=EXPECTED + (Unavailable,))
    def list_records(self, kind, params, fresh=None, hints=None):
        """A list endpoint of contacts, companies, deals, tasks or calls from the index
        (the owner's list parameters and answer); 503 while the index is rebuilt (the
        gateway then asks the owner). `fresh`: the caller's latest writes to show;
        `hints` (lists.page): {"access": as search's, "sort_type": the type of the custom
        field a `sort=cf.<key>` sorts by}."""
        if kind not in lists.LISTS:
            raise ValidationFailed("Unknown type", {"fields": {"kind": [f"One of {TYPES}."]}})
        return self.index.list_page(kind, params or {}, self.caller, fresh, hints)

    @rpc
    def health(self):
        return {"service": self.name, "ok": True, **self.index.state()}

    def _ready(self):
        return self.index.index is not None

    @rpc(expected_exceptions=EXPECTED)
    def indexed(self, kind):
        """{"replica", "state", "ids": {id: updated_at in microseconds}} of every live
        record of a type this replica holds (to compare an index with its source)."""
        if kind not in TYPES:
            raise ValidationFailed("Unknown type", {"fields": {"kind": [f"One of {TYPES}."]}})
        return self.index.indexed(kind)

    # every replica its own queue per source, bound to the events that change a record
    for _source in SOURCES:
        locals()[f"on_{_source}_events"] = _feed(_source)
    del _source
