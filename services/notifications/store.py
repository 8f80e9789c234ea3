"""The only code in the notifications service that touches pymongo.

Collections: users (copy of the gateway's users, from user_upserted), preferences, inbox
(in-app notifications), webhooks (subscriptions), deliveries (the outbox of every message
to send: one per (event, recipient, channel), by a unique key), jobs (daily runs done) and
clock (the test clock offset, only read when CRM_TEST_CLOCK=1)."""
import time
from datetime import timedelta

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateMany
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_common.cursors import page
from crm_common.ids import new_id
from crm_common.mongo import BaseStore, in_chunks, set_if_newer, update_and_get

DUPLICATE_KEY = 11000


class TtlCache:
    """Read-mostly lookups on the fan-out hot path (users, preferences, webhook lists),
    kept `ttl` seconds. Writes through this replica drop their entry at once; another
    replica sees a change within `ttl` (CRM_NOTIFY_CACHE_S, 0 disables)."""

    def __init__(self, ttl):
        self.ttl = ttl
        self.items = {}

    def get(self, key, load):
        if self.ttl <= 0:
            return load()
        hit = self.items.get(key)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        value = load()
        if len(self.items) > 50000:
            self.items.clear()
        self.items[key] = (now + self.ttl, value)
        return value

    def drop(self, key=None):
        if key is None:
            self.items.clear()
        else:
            self.items.pop(key, None)


class NotificationsStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.users = db["users"]
        self.preferences = db["preferences"]
        self.inbox = db["inbox"]
        self.webhooks = db["webhooks"]
        self.deliveries = db["deliveries"]
        self.jobs = db["jobs"]
        self.clock = db["clock"]
        self.cache = TtlCache(settings.notifications.cache_s)
        # nameko starts the timer alongside the store: no claiming before the indexes
        self.ready = False

    def ensure_indexes(self):
        self.inbox.create_index("key", unique=True)
        self.inbox.create_index([("user_id", ASCENDING), ("created_at", DESCENDING),
                                 ("_id", DESCENDING)])
        self.inbox.create_index([("user_id", ASCENDING), ("read_at", ASCENDING),
                                 ("created_at", DESCENDING), ("_id", DESCENDING)])
        self.webhooks.create_index("events")
        self.webhooks.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        # the idempotency key: (event, recipient, channel) is delivered at most once
        self.deliveries.create_index("key", unique=True)
        # set only while there is work to do (pending: next attempt; sending: lease end)
        self.deliveries.create_index("due_at", sparse=True)
        self.deliveries.create_index([("webhook_id", ASCENDING), ("created_at", DESCENDING),
                                      ("_id", DESCENDING)], sparse=True)
        self.deliveries.create_index([("webhook_id", ASCENDING), ("status", ASCENDING),
                                      ("created_at", DESCENDING), ("_id", DESCENDING)],
                                     sparse=True)
        self.deliveries.create_index("event_id")
        # the claim holder's writes ({claim, _id}): SecantusDB uses an index only when it
        # covers every predicate, and {_id, claim} alone was a scan of the whole collection
        # per delivery (mongod indexes every document here: _id is always present)
        self.deliveries.create_index([("claim", ASCENDING), ("_id", ASCENDING)], sparse=True)
        self.preferences.create_index("digest.frequency", sparse=True)
        self.users.create_index("team", sparse=True)
        self.ready = True

    # users (a copy; the newest announcement wins whatever order they arrive in)
    def upsert_user(self, user, event_at):
        try:
            return set_if_newer(self.users, user["id"],
                                {k: v for k, v in user.items() if k != "id"}, event_at,
                                stamp="event_at")
        finally:
            self.cache.drop(("user", user["id"]))

    def get_user(self, user_id):
        return self.users.find_one({"_id": user_id})

    def get_users(self, user_ids):
        return self._cached_many("user", self.users, user_ids)

    def _cached_many(self, kind, collection, ids):
        """{id: doc} for the ids found, through the cache (one query for the misses)."""
        out, missing = {}, []
        for _id in dict.fromkeys(ids):
            hit = self.cache.items.get((kind, _id)) if self.cache.ttl > 0 else None
            if hit and hit[0] > time.monotonic():
                if hit[1] is not None:
                    out[_id] = hit[1]
            else:
                missing.append(_id)
        if missing:
            found = {d["_id"]: d for d in collection.find({"_id": {"$in": missing}})}
            for _id in missing:
                self.cache.get((kind, _id), lambda: found.get(_id))
                if _id in found:
                    out[_id] = found[_id]
        return out

    # preferences
    def get_preferences(self, user_id):
        return self.preferences.find_one({"_id": user_id})

    def get_many_preferences(self, user_ids):
        return self._cached_many("prefs", self.preferences, user_ids)

    def birthday_greeting_owners(self):
        """Users whose `birthday_greetings` preference is on (read once, by automation)."""
        return [d["_id"] for d in self.preferences.find({"birthday_greetings": True}, {"_id": 1})]

    def digest_subscribers(self):
        """[(user_id, preferences)] of those with a scheduled digest (the sparse index on
        digest.frequency: a few documents, not every user's)."""
        return [(d["_id"], d) for d in self.preferences.find(
            {"digest.frequency": {"$in": ["daily", "weekly"]}})]

    def team_member_ids(self, team):
        if not team:
            return []
        return sorted(u["_id"] for u in self.users.find({"team": team}, {"active": 1})
                      if u.get("active", True))

    def set_preferences(self, user_id, doc):
        doc = self.preferences.find_one_and_update(
            {"_id": user_id}, {"$set": doc}, upsert=True, return_document=ReturnDocument.AFTER)
        self.cache.drop(("prefs", user_id))
        return doc

    # inbox
    def add_inbox(self, entries):
        for entry in entries:
            entry["_id"] = new_id()
        return self._insert_new(self.inbox, entries)

    def add_inbox_each(self, entries):
        """(stored flag per entry, {index: error other than a duplicate key})."""
        return self._insert_each(self.inbox, entries)

    def page_inbox(self, user_id, unread, limit, cursor):
        # unhinted (crm_common.mongo's rule): SecantusDB walks the whole hinted index, every
        # user's entries; mongod picks the index
        if unread:
            return page(self.inbox, {"user_id": user_id, "read_at": None}, "created_at",
                        DESCENDING, limit, cursor)
        return page(self.inbox, {"user_id": user_id}, "created_at", DESCENDING, limit, cursor)

    def count_inbox(self, user_id, unread):
        # unhinted, as above
        if unread:
            return self.inbox.count_documents({"user_id": user_id, "read_at": None})
        return self.inbox.count_documents({"user_id": user_id})

    def mark_read(self, user_id, notification_id, when):
        # by _id alone, owner and state checked here: SecantusDB scans the collection for
        # {_id, user_id, read_at} (no index covers the three); two marks at once only move
        # read_at to the later one
        doc = self.inbox.find_one({"_id": notification_id})
        if not doc or doc.get("user_id") != user_id:
            return None
        if doc.get("read_at") is None:
            self.inbox.update_one({"_id": notification_id}, {"$set": {"read_at": when}})
            doc["read_at"] = when
        return doc

    def mark_all_read(self, user_id, when):
        return self.inbox.update_many({"user_id": user_id, "read_at": None},
                                      {"$set": {"read_at": when}}).modified_count

    # webhooks
    def insert_webhook(self, doc):
        doc["_id"] = new_id()
        self.webhooks.insert_one(doc)
        self.cache.drop()
        return doc

    def get_webhook(self, webhook_id):
        return self.webhooks.find_one({"_id": webhook_id, "deleted_at": None})

    def update_webhook(self, webhook_id, changes):
        doc = update_and_get(self.webhooks, {"_id": webhook_id, "deleted_at": None},
                             {"$set": changes})
        self.cache.drop()
        return doc

    def page_webhooks(self, limit, cursor):
        return page(self.webhooks, {"deleted_at": None}, "created_at", DESCENDING, limit,
                    cursor)

    def webhooks_for(self, event_type):
        return self.cache.get(("hooks", event_type), lambda: list(self.webhooks.find(
            {"events": event_type, "active": True, "deleted_at": None}, {"_id": 1})))

    def subscribed_types(self):
        """Every event type an active webhook subscribes to (the queues' bindings)."""
        return {kind for doc in self.webhooks.find({"active": True, "deleted_at": None},
                                                   {"events": 1})
                for kind in doc.get("events") or ()}

    def webhooks_by_ids(self, ids):
        """Through the cache, like the webhook lists (a change through this replica drops
        it at once; another replica's change is seen within CRM_NOTIFY_CACHE_S)."""
        return self._cached_many("hook", self.webhooks, ids)

    # deliveries (the outbox)
    def add_deliveries(self, docs):
        """Insert each new one; a key already stored is a redelivered event: skipped."""
        for doc in docs:
            doc["_id"] = new_id()
        return self._insert_new(self.deliveries, docs)

    def add_deliveries_each(self, docs):
        """(stored flag per delivery, {index: error other than a duplicate key})."""
        return self._insert_each(self.deliveries, docs)

    def release_claims(self, docs, now):
        """Give back deliveries claimed when stored and never sent (graceful stop): pending
        and due now, the attempt not counted."""
        by_token = {}
        for doc in docs:
            by_token.setdefault(doc["claim"], []).append(doc["_id"])
        ops = [UpdateMany({"claim": token, "_id": {"$in": chunk}},
                          {"$set": {"status": "pending", "due_at": now, "updated_at": now},
                           "$unset": {"claim": ""}, "$inc": {"attempts": -1}})
               for token, ids in by_token.items() for chunk in in_chunks(ids)]
        if ops:
            self.deliveries.bulk_write(ops, ordered=False)

    def claim_due(self, now, limit, lease_s, token):
        """Take up to `limit` due deliveries for this worker. The update re-checks `due_at`
        per document, so of two replicas racing for one, only one matches it; the winner's
        claim pushes `due_at` to the lease end, after which a crashed send is retried."""
        if not self.ready:
            return []
        # no hint: SecantusDB walks the whole hinted index, and picks due_at_1 by itself
        ids = [d["_id"] for d in self.deliveries.find({"due_at": {"$lte": now}}, {"_id": 1})
               .sort("due_at", ASCENDING).limit(limit)]
        if not ids:
            return []
        # one scan of the collection on SecantusDB per batch (no index covers _id and
        # due_at); only retries, held and recovered deliveries come this way
        for chunk in in_chunks(ids):  # $in lists of 50: SecantusDB costs values x matches
            self.deliveries.update_many(
                {"_id": {"$in": chunk}, "due_at": {"$lte": now}},
                {"$set": {"status": "sending", "claim": token,
                          "due_at": now + timedelta(seconds=lease_s), "updated_at": now},
                 "$inc": {"attempts": 1}})
        return list(self.deliveries.find({"claim": token}))

    def finish(self, outcomes):
        """outcomes: (delivery id, claim token, $set, $unset) each; only the claimer writes.
        Outcomes alike (a batch delivered at one moment) go in one update_many."""
        if not outcomes:
            return
        groups = {}
        for _id, token, changes, unset in outcomes:
            key = (token, repr(sorted(changes.items())), repr(sorted(unset.items())))
            groups.setdefault(key, (token, changes, unset, []))[3].append(_id)
        ops = [UpdateMany({"claim": token, "_id": {"$in": chunk}},
                          {"$set": changes, **({"$unset": unset} if unset else {})})
               for token, changes, unset, ids in groups.values() for chunk in in_chunks(ids)]
        self.deliveries.bulk_write(ops, ordered=False)

    def page_deliveries(self, webhook_id, status, limit, cursor):
        if status:
            return page(self.deliveries, {"webhook_id": webhook_id, "status": status},
                        "created_at", DESCENDING, limit, cursor)
        return page(self.deliveries, {"webhook_id": webhook_id}, "created_at", DESCENDING,
                    limit, cursor)

    def get_delivery(self, delivery_id):
        return self.deliveries.find_one({"_id": delivery_id})

    def requeue(self, delivery_id, webhook_id, now):
        """Manual redeliver of a finished delivery: due now, attempts start again."""
        return update_and_get(
            self.deliveries, {"_id": delivery_id, "webhook_id": webhook_id,
                              "status": {"$in": ["failed", "delivered"]}},
            {"$set": {"status": "pending", "due_at": now, "next_attempt_at": now,
                      "attempts": 0, "updated_at": now, "last_error": None},
             "$unset": {"claim": ""}, "$inc": {"redeliveries": 1}})

    def deliveries_of_event(self, event_id):
        return list(self.deliveries.find({"event_id": event_id}))  # event_id_1, no hint

    # daily jobs and the test clock
    def claim_job(self, key, now):
        try:
            self.jobs.insert_one({"_id": key, "started_at": now})
            return True
        except DuplicateKeyError:
            return False

    def release_job(self, key):
        self.jobs.delete_one({"_id": key})

    def clock_offset(self):
        doc = self.clock.find_one({"_id": "clock"})
        return doc["offset_s"] if doc else 0.0

    def set_clock_offset(self, offset_s):
        self.clock.update_one({"_id": "clock"}, {"$set": {"offset_s": offset_s}}, upsert=True)

    @staticmethod
    def _insert_new(collection, docs):
        """Insert what is new; duplicates of the unique key are the idempotency at work."""
        if not docs:
            return 0
        try:
            return len(collection.insert_many(docs, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            others = [e for e in exc.details["writeErrors"] if e["code"] != DUPLICATE_KEY]
            if others:
                raise
            return exc.details["nInserted"]

    @staticmethod
    def _insert_each(collection, docs):
        """insert_many(ordered=False) of new documents (each gets its id): every document is
        tried; a duplicate key is the idempotency at work for that document only (mongod and
        SecantusDB both report each failed document by its index and store the others)."""
        if not docs:
            return [], {}
        for doc in docs:
            doc["_id"] = new_id()
        try:
            collection.insert_many(docs, ordered=False)
            return [True] * len(docs), {}
        except BulkWriteError as exc:
            stored, errors = [True] * len(docs), {}
            for error in exc.details["writeErrors"]:
                stored[error["index"]] = False
                if error["code"] != DUPLICATE_KEY:
                    errors[error["index"]] = error.get("errmsg") or str(error)
            return stored, errors
