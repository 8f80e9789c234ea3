"""The Mongo dependency: one MongoClient per service container, indexes ensured at start.

A service hands it its store class (the only code that touches pymongo); every worker
gets the same store instance, which is safe because MongoClient is thread/greenlet safe.
"""
import logging

from nameko.extensions import DependencyProvider
from pymongo import MongoClient

from crm_common.config import load_settings
from crm_common.cursors import page
from crm_common.timeutil import parse_iso, utcnow

log = logging.getLogger(__name__)


def connect(mongo_url, appname):
    # Short server selection so a missing database fails a call fast instead of hanging it.
    # connectTimeoutMS is also the monitor's heartbeat timeout: a server busy for a few
    # seconds (SecantusDB sorting a large export) must not be declared down, which cancels
    # every operation in flight; an unreachable server still fails selection in 3 s.
    return MongoClient(mongo_url, tz_aware=True, appname=appname,
                       serverSelectionTimeoutMS=3000, connectTimeoutMS=20000)


def update_and_get(collection, query, update, projection=None, upsert=False):
    """What `find_one_and_update(query, update, return_document=AFTER)` answers, as
    update_one + find_one by _id; `query` names `_id`.

    SecantusDB (dev/CI) runs find_one_and_update on an EXISTING document as a scan of the
    whole collection (57 ms at 5,000 documents, growing with size; plain pymongo repro in
    docs/developing.md), while update_one and find_one by _id are index probes (~1 ms); mongod
    is fast either way. Not one atomic step: the document read back may already carry a
    later write (the update itself is still one atomic write, so a compare-and-set in
    `query` keeps its meaning: None when it did not match). A caller that records
    something from the exact result of its own compare-and-set must not use this: it
    builds the result from what it read and changed (deals' move does)."""
    result = collection.update_one(query, update, upsert=upsert)
    if not result.matched_count and result.upserted_id is None:
        return None
    return collection.find_one({"_id": query["_id"] if result.upserted_id is None
                                else result.upserted_id}, projection)


# SecantusDB (dev/CI) checks every document an `$in` matches against the whole list, so
# one `$in` costs (values x matches): 1,000 email keys matching 200 contacts took 0.56-0.97 s,
# the same keys in lists of 50 took 0.055 s; 1,000 `_id`s 1.87 s vs 0.12 s (reproduction in
# docs/developing.md). mongod walks the index bounds either way; lists of 50 cost it a few
# round trips. Queries whose list can be long go through these two.
IN_CHUNK = 50


def in_chunks(values, size=IN_CHUNK):
    """`values` without repeats, in lists of at most `size` (for `$in` and bulk by-id writes)."""
    values = list(dict.fromkeys(values))
    for start in range(0, len(values), size):
        yield values[start:start + size]


def find_in(collection, field, values, projection=None):
    """The documents whose `field` is one of `values`, each once (a multikey field may
    match one document from two lists)."""
    seen = set()
    for chunk in in_chunks(values):
        for doc in collection.find({field: {"$in": chunk}}, projection):
            if doc["_id"] not in seen:
                seen.add(doc["_id"])
                yield doc


def query_fields(query):
    """The field names a Mongo query filters on, through nested $and."""
    fields = set()
    for key, value in query.items():
        if key == "$and":
            for part in value:
                fields |= query_fields(part)
        elif not key.startswith("$"):
            fields.add(key)
    return fields


class MongoStore(DependencyProvider):
    def __init__(self, store_class):
        self.store_class = store_class
        self.client = None
        self.store = None

    def setup(self):
        settings = load_settings()
        service = self.container.service_name
        self.client = connect(settings.mongo_url, f"crm-{service}")
        db = self.client[settings.database_name(service)]
        self.store = self.store_class(db, settings)

    def start(self):
        self.store.ensure_indexes()
        log.info("indexes ensured for %s", self.store.db.name)

    def stop(self):
        if self.client is not None:
            self.client.close()

    def get_dependency(self, worker_ctx):
        return self.store


class BaseStore:
    """What every store shares: its database, settings and a cheap health probe."""

    def __init__(self, db, settings):
        self.db = db
        self.settings = settings

    def ensure_indexes(self):
        pass

    def ping(self):
        self.db.command("ping")
        return True

    def search_records(self, collection, dump_many, ids=None, after=None, limit=500,
                       since=None, cursor=None):
        """For the search service (contracts/search.py RecordsPage): the documents of
        `collection` with these `ids`; else, with `since` (ISO time), those changed since
        then in (updated_at, _id) keyset pages (needs that index); else the next `limit`
        after `after` in `_id` order (an index range, never a skip). Deleted ones
        included, as `dump_many` dumps them plus `deleted` and `version`."""
        limit = max(1, min(int(limit), 2000))
        next_cursor = None
        if ids is not None:
            docs = list(find_in(self.db[collection], "_id", [str(i) for i in ids]))
        elif since is not None:
            docs, next_cursor = page(self.db[collection], {"updated_at": {"$gte": parse_iso(since)}},
                                     "updated_at", 1, limit, cursor)
        else:
            docs = list(self.db[collection].find({"_id": {"$gt": str(after or "")}})
                        .sort("_id", 1).limit(limit))
        items = [dict(out, id=doc["_id"], deleted=doc.get("deleted_at") is not None,
                      version=doc.get("version"),
                      **({"import_id": doc["import_id"]} if doc.get("import_id") else {}))
                 for doc, out in zip(docs, dump_many(docs))]
        full = ids is None and since is None and len(docs) == limit
        return {"items": items, "next_after": docs[-1]["_id"] if full else None,
                "next_cursor": next_cursor}

    def repoint_contact(self, collection, event, field="contact_id"):
        """contacts' contact_merged: records of the merged contacts now belong to the
        survivor. Idempotent: a redelivered event finds nothing left to move."""
        survivor = event["data"]["survivor_id"]
        merged = [i for i in event["data"]["merged_ids"] if i != survivor]
        if not merged:
            return 0
        result = self.db[collection].update_many(
            {field: {"$in": merged}}, {"$set": {field: survivor, "updated_at": utcnow()}})
        return result.modified_count
