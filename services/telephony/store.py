"""The only code in the telephony service that touches pymongo."""
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from crm_common.cursors import page
from crm_common.mongo import BaseStore
from crm_common.timeutil import utcnow

# list filters in the order their index narrows a calls query best (see choose_index)
SELECTIVE = ("contact_id", "agent_id", "number", "owner_id", "direction", "outcome", "missed")
SEEN_TTL_S = 90 * 24 * 3600


def choose_index(query):
    fields = {k for k in query if not k.startswith("$")}
    for field in SELECTIVE:
        if field in fields:
            return f"{field}_1_started_at_-1__id_-1"
    return "started_at_-1__id_-1"


class TelephonyStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.calls = db["calls"]
        self.seen = db["call_events"]
        self.users = db["users"]
        self.counters = db["counters"]

    def ensure_indexes(self):
        c = self.calls
        # one record per provider call: concurrent first events race on this, never double
        c.create_index([("provider", ASCENDING), ("call_id", ASCENDING)], unique=True)
        c.create_index([("started_at", DESCENDING), ("_id", DESCENDING)])
        for field in SELECTIVE:
            c.create_index([(field, ASCENDING), ("started_at", DESCENDING), ("_id", DESCENDING)])
        # processed event ids (idempotency), forgotten after 90 days on mongod
        self.seen.create_index("at", expireAfterSeconds=SEEN_TTL_S)
        self.users.create_index("extension")
        # every predicate of mark_called_back in one index, so it needs no hint
        c.create_index([("number", ASCENDING), ("missed", ASCENDING), ("called_back", ASCENDING),
                        ("started_at", DESCENDING)], name="callbacks")

    # calls
    def upsert_call(self, provider, call_id, base):
        """The call record, created if new; returns (doc, created)."""
        for _ in range(3):
            try:
                doc = self.calls.find_one_and_update(
                    {"provider": provider, "call_id": call_id}, {"$setOnInsert": base},
                    upsert=True, return_document=ReturnDocument.AFTER)
            except DuplicateKeyError:
                doc = None  # another event of the same call inserted it first
            if doc is None:
                # mongod never answers None to an upsert, but SecantusDB does when a
                # concurrent upsert of the same key won: the record exists, read it
                doc = self.get_by_key(provider, call_id)
            if doc is not None:
                return doc, doc["_id"] == base["_id"]
        raise RuntimeError("call upsert kept colliding")

    def update_call(self, call_id, update, condition=None):
        """Apply `update` (if `condition` still holds); the new doc, or None if it did not."""
        query = {"_id": call_id, **(condition or {})}
        return self.calls.find_one_and_update(query, update, return_document=ReturnDocument.AFTER)

    def get_call(self, call_id, visible=None):
        return self.calls.find_one({"_id": call_id, **(visible or {})})

    def get_by_key(self, provider, call_id):
        # no hint: every predicate is in the unique index (a hint makes SecantusDB walk
        # the whole index, seconds at 100k records; mongod plans this the same either way)
        return self.calls.find_one({"provider": provider, "call_id": call_id})

    def insert_call(self, doc):
        self.calls.insert_one(doc)
        return doc

    def page_calls(self, query, limit, cursor):
        return page(self.calls, query, "started_at", DESCENDING, limit, cursor,
                    hint=choose_index(query))

    def count_calls(self, query):
        return self.calls.count_documents(query, hint=choose_index(query))

    def mark_called_back(self, number, before, by_call_id, when):
        """Earlier missed calls from this number are called back by an answered call."""
        return self.calls.update_many(
            {"number": number, "missed": True, "called_back": False,
             "started_at": {"$lte": before}},
            {"$set": {"called_back": True, "called_back_by": by_call_id,
                      "called_back_at": when}}).modified_count  # index: callbacks

    def report(self, match, group_key):
        pipeline = [
            {"$match": match},
            {"$group": {"_id": group_key, "calls": {"$sum": 1},
                        "answered": {"$sum": {"$cond": [{"$eq": ["$outcome", "answered"]}, 1, 0]}},
                        "missed": {"$sum": {"$cond": [{"$eq": ["$missed", True]}, 1, 0]}},
                        "talk_s": {"$sum": {"$ifNull": ["$talk_s", 0]}}}},
            {"$sort": {"_id": 1}}]
        return list(self.calls.aggregate(pipeline, hint="started_at_-1__id_-1"))

    def count_missed_not_called_back(self, match):
        return self.calls.count_documents({**match, "missed": True, "called_back": False},
                                          hint="missed_1_started_at_-1__id_-1")

    # processed events
    def event_seen(self, key):
        return self.seen.find_one({"_id": key}) is not None

    def remember_event(self, key, call_doc_id):
        try:
            self.seen.insert_one({"_id": key, "call": call_doc_id, "at": utcnow()})
        except DuplicateKeyError:
            pass  # a concurrent repeat: already remembered

    # users (a copy of what the gateway announces)
    def upsert_user(self, user):
        self.users.update_one({"_id": user["_id"]}, {"$set": user}, upsert=True)

    def user(self, user_id):
        return self.users.find_one({"_id": user_id}) if user_id else None

    def user_by_extension(self, extension):
        if not extension:
            return None
        # only the indexed field in the query (no hint, no predicate outside the index)
        return next((u for u in self.users.find({"extension": extension})
                     if u.get("active", True) is not False), None)

    def round_robin_users(self):
        return [u["_id"] for u in self.users.find({"active": {"$ne": False},
                                                   "extension": {"$nin": [None, ""]}},
                                                  {"_id": 1}).sort("_id", ASCENDING)]

    def next_counter(self, name):
        """Atomic: concurrent callers never get the same turn."""
        doc = self.counters.find_one_and_update({"_id": name}, {"$inc": {"value": 1}},
                                                upsert=True, return_document=ReturnDocument.AFTER)
        return doc["value"]
