"""The only code in the telephony service that touches pymongo.

SecantusDB (dev/CI) answers find_one_and_update on an EXISTING document with a scan of the
whole collection (it re-checks the query as `{_id, $and: [query]}`, which no index covers),
so its cost grows with the calls stored. So records are changed with update_one (an index
probe) and read back with find_one by _id (crm_common.mongo.update_and_get);
find_one_and_update is kept only for the counters (crm_common.mongo.increment)."""
import threading
import time

import gridfs
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_common.cursors import page
from crm_common.mongo import (BaseStore, JoiningDatabase, find_in, increment, set_if_newer,
                               update_and_get)
from crm_common.timeutil import as_utc, utcnow

# list filters, each with a (field, started_at, _id) index (no hints: crm_common.mongo)
SELECTIVE = ("contact_id", "agent_id", "number", "owner_id", "direction", "outcome", "missed")
SEEN_TTL_S = 90 * 24 * 3600
# the users copy is read from memory on the hot path; another replica's change to it (each
# user_upserted reaches one replica) shows here after at most this many seconds
USERS_CACHE_S = 5.0


class TelephonyStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.calls = db["calls"]
        self.seen = db["call_events"]
        self.users = db["users"]
        self.counters = db["counters"]
        # the contacts' phone numbers (a copy kept from contacts' events): the ringing path
        # finds the caller here, not through an RPC to a contacts service that may be busy
        self.phones = db["contact_phones"]
        self._recordings = None  # the GridFS bucket, made on first use
        self._users = None          # (loaded_at, {id: user}, {extension: [users]})
        self._users_generation = 0  # bumped by every local change: a reload that started
        self._users_lock = threading.Lock()  # before it never installs a stale copy
        self._users_loading = False  # a worker is reloading the expired copy

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
        self.phones.create_index("phones")
        # every predicate of mark_called_back in one index, so it needs no hint
        c.create_index([("number", ASCENDING), ("missed", ASCENDING), ("called_back", ASCENDING),
                        ("started_at", DESCENDING)], name="callbacks")
        # recordings to fetch (services/telephony/recordings.py), and the stored ones
        c.create_index([("recording_state", ASCENDING), ("recording_due", ASCENDING)])
        self.recording_files.create_index([("metadata.call_id", ASCENDING),
                                           ("uploadDate", DESCENDING)])
        self.recording_files.create_index("metadata.expire_at")

    # calls
    def upsert_call(self, provider, call_id, base, likely_new=False):
        """The call record, created as `base` if new; returns (doc, created). One cheap
        round trip in the expected case: the insert first for a call's likely first
        event, else the read first (an update_one upsert would cost more on SecantusDB)."""
        if likely_new and self.insert_if_new(base):
            return dict(base), True
        for _ in range(3):
            doc = self.get_by_key(provider, call_id)
            if doc is not None:
                return doc, False
            if self.insert_if_new(base):
                return dict(base), True
        raise RuntimeError("call upsert kept colliding")

    def insert_if_new(self, doc):
        """Insert a new call record; False if its (provider, call_id) exists already
        (another event of the same call won the unique index). An upsert, not an insert
        that fails: a duplicate key would abort the transaction the event is folded in."""
        result = self.calls.update_one({"provider": doc["provider"], "call_id": doc["call_id"]},
                                       {"$setOnInsert": doc}, upsert=True)
        return result.upserted_id is not None

    def update_call(self, call_id, sets, mins=None, maxs=None, rank_below=None, unchanged=None):
        """Set the fields of `sets`, lower those of `mins` and raise those of `maxs` to the
        values given (fields may be paths, "legs.<key>.rank"), if the call's rank is still
        below `rank_below` and each field of `unchanged` still has its value (None matches
        missing); the new doc, or None when the condition no longer held."""
        update = {"$set": sets}
        if mins:
            update["$min"] = mins
        if maxs:
            update["$max"] = maxs
        condition = {} if rank_below is None else {"rank": {"$lt": rank_below}}
        condition.update(unchanged or {})
        return update_and_get(self.calls, {"_id": call_id, **condition}, update)

    def claim(self, call_id, field):
        """Atomic once-per-call claim (e.g. creating its lead): True for exactly one caller."""
        return self.calls.update_one({"_id": call_id, field: {"$ne": True}},
                                     {"$set": {field: True}}).modified_count == 1

    def get_call(self, call_id, visible=None):
        return self.calls.find_one({"_id": call_id, **(visible or {})})

    def get_by_key(self, provider, call_id):
        # no hint: every predicate is in the unique index (a hint makes SecantusDB walk
        # the whole index, seconds at 100k records; mongod plans this the same either way)
        return self.calls.find_one({"provider": provider, "call_id": call_id})

    def insert_call(self, doc):
        self.calls.insert_one(doc)
        return doc

    def call_filter(self, filters, start, end, visible):
        """The call log's query: equality `filters`, calls started in [start, end) (either
        None: unbounded), the caller's visibility."""
        query = dict(filters)
        started = {}
        if start:
            started["$gte"] = start
        if end:
            started["$lt"] = end
        if started:
            query["started_at"] = started
        if visible:
            query["$and"] = [visible]
        return query

    def page_calls(self, query, limit, cursor):
        return page(self.calls, query, "started_at", DESCENDING, limit, cursor)

    def count_calls(self, query):
        return self.calls.count_documents(query)

    def mark_called_back(self, number, before, by_call_id, when):
        """Earlier missed calls from this number are called back by an answered call."""
        return self.calls.update_many(
            {"number": number, "missed": True, "called_back": False,
             "started_at": {"$lte": before}},
            {"$set": {"called_back": True, "called_back_by": by_call_id,
                      "called_back_at": when}}).modified_count  # index: callbacks

    def report(self, start, end, visible, group_by):
        """Calls started in [start, end) (click-to-call originations left out) per agent or
        per UTC day ({"rows": [{_id, calls, answered, missed, talk_s}]}, sorted), and the
        missed calls of the range not called back yet."""
        match = {"provider": {"$ne": "click_to_call"}, **self.call_filter({}, start, end, visible)}
        group_key = ("$agent_id" if group_by == "agent" else
                     {"$dateToString": {"format": "%Y-%m-%d", "date": "$started_at"}})
        pipeline = [
            {"$match": match},
            {"$group": {"_id": group_key, "calls": {"$sum": 1},
                        "answered": {"$sum": {"$cond": [{"$eq": ["$outcome", "answered"]}, 1, 0]}},
                        "missed": {"$sum": {"$cond": [{"$eq": ["$missed", True]}, 1, 0]}},
                        "talk_s": {"$sum": {"$ifNull": ["$talk_s", 0]}}}},
            {"$sort": {"_id": 1}}]
        rows = list(self.calls.aggregate(pipeline))
        rest = {k: v for k, v in match.items() if k != "provider"}
        return {"rows": rows, "missed_not_called_back": self.calls.count_documents(
            {**rest, "missed": True, "called_back": False})}

    # processed events
    def event_seen(self, key):
        return self.seen.find_one({"_id": key}) is not None

    def remember_event(self, key, call_doc_id):
        try:
            self.seen.insert_one({"_id": key, "call": call_doc_id, "at": utcnow()})
        except DuplicateKeyError:
            pass  # a concurrent repeat: already remembered

    # users (a copy of what the gateway announces), read from memory
    def upsert_user(self, user, at):
        """The agent's copy as of `at` (its announcement's time), unless a later one is
        stored (crm_common.mongo.set_if_newer): the extension decides whose calls an agent
        sees."""
        try:
            set_if_newer(self.users, user["_id"], user, at)
        finally:
            with self._users_lock:
                self._users_generation += 1
                self._users = None

    def _users_snapshot(self):
        cached = self._users
        if cached is not None and (time.monotonic() - cached[0] < USERS_CACHE_S
                                   or self._users_loading):
            # expired while another worker reloads it: every ringing event that came
            # meanwhile reloaded the whole collection too (1,000 users: ~30 ms each)
            return cached
        self._users_loading = True
        try:
            generation = self._users_generation
            by_id, by_ext = {}, {}
            for user in self.users.find({}).sort("_id", ASCENDING):
                by_id[user["_id"]] = user
                if user.get("extension"):
                    by_ext.setdefault(user["extension"], []).append(user)
            fresh = (time.monotonic(), by_id, by_ext)
        finally:
            self._users_loading = False
        with self._users_lock:
            if generation == self._users_generation:
                self._users = fresh
        return fresh

    def user(self, user_id):
        if not user_id:
            return None
        found = self._users_snapshot()[1].get(user_id)
        # a user stored a moment ago may not be in this process's copy yet (the copy is
        # dropped right after the write): a miss asks the database (small collection)
        return found if found is not None else self.users.find_one({"_id": user_id})

    def user_by_extension(self, extension):
        if not extension:
            return None
        candidates = self._users_snapshot()[2].get(extension) or list(
            self.users.find({"extension": extension}).sort("_id", ASCENDING))
        found = [u for u in candidates if u.get("extension") == extension
                 and u.get("active", True) is not False]
        # extensions are unique in the gateway; two here (a copy between two changes, data
        # from before the rule) name no one: a call is never given to a guess, so no one
        # sees another's calls through an extension
        return found[0] if len(found) == 1 else None

    def round_robin_users(self):
        return [u["_id"] for u in self._users_snapshot()[1].values()
                if u.get("active", True) is not False and u.get("extension")]

    # settings an admin changed through the API (services/telephony/settings.py)
    def telephony_settings(self):
        return self.db["settings"].find_one({"_id": "telephony"})

    def save_telephony_settings(self, sets, unsets):
        update = {"$set": sets, "$inc": {"version": 1}}
        if unsets:
            update["$unset"] = {name: "" for name in unsets}
        self.db["settings"].update_one({"_id": "telephony"}, update, upsert=True)
        return self.telephony_settings()

    # the contacts' phones (services/telephony/directory.py)
    def contact_by_phone(self, e164):
        """The copy of the contact with this number (one indexed predicate), or None."""
        return self.phones.find_one({"phones": e164})

    def put_contact_phones(self, contact_id, sets, at):
        """The contact's copy as of `at`, unless a newer one is stored (events of one
        contact may arrive out of order)."""
        if self.phones.update_one({"_id": contact_id, "at": {"$lt": at}},
                                  {"$set": {**sets, "at": at}}).matched_count:
            return True
        try:
            self.phones.insert_one({"_id": contact_id, **sets, "at": at})
            return True
        except DuplicateKeyError:
            return False  # a newer copy is stored

    def put_contact_phones_many(self, copies):
        """[(contact_id, sets, at)] as put_contact_phones does each, in a few round trips:
        one read of which are held (lists of 50), one insert of the new ones."""
        held = {d["_id"]: as_utc(d.get("at")) for d in find_in(
            self.phones, "_id", [contact_id for contact_id, _, _ in copies], {"at": 1})}
        new, older = [], []
        for contact_id, sets, at in copies:
            if contact_id not in held:
                new.append({"_id": contact_id, **sets, "at": at})
                held[contact_id] = at
            elif held[contact_id] is None or held[contact_id] < at:
                older.append((contact_id, sets, at))
        if new:
            try:
                self.phones.insert_many(new, ordered=False)
            except BulkWriteError as exc:  # an event stored one meanwhile: compare as one
                lost = {new[e["index"]]["_id"] for e in exc.details.get("writeErrors", [])
                        if e.get("code") == 11000}
                if len(lost) != len(exc.details.get("writeErrors", [])):
                    raise
                older += [(d["_id"], {k: v for k, v in d.items() if k not in ("_id", "at")},
                           d["at"]) for d in new if d["_id"] in lost]
        for contact_id, sets, at in older:
            self.put_contact_phones(contact_id, sets, at)

    def renew_phones_sync(self, lease_until):
        self.counters.update_one({"_id": "contact_phones_sync"},
                                 {"$set": {"lease_until": lease_until}})

    def claim_phones_sync(self, now, lease_until):
        """The contacts sync's state, leased to this replica until `lease_until`; None
        while another replica holds it."""
        state = self.counters.find_one({"_id": "contact_phones_sync"})
        if state is None:
            try:
                self.counters.insert_one({"_id": "contact_phones_sync", "mark": None,
                                          "lease_until": lease_until})
                return {"mark": None}
            except DuplicateKeyError:
                return None
        if state.get("lease_until") and state["lease_until"] > now:
            return None
        taken = self.counters.update_one(
            {"_id": "contact_phones_sync", "lease_until": state.get("lease_until")},
            {"$set": {"lease_until": lease_until}}).modified_count == 1
        return state if taken else None

    def save_phones_sync(self, mark):
        self.counters.update_one({"_id": "contact_phones_sync"},
                                 {"$set": {"mark": mark, "lease_until": None}})

    # recordings (services/telephony/recordings.py)
    @property
    def recordings(self):
        """GridFS wants pymongo's own Database (not the transaction-joining wrapper): its
        writes come from the recordings timer, outside any transaction."""
        if self._recordings is None:
            db = self.db.raw if isinstance(self.db, JoiningDatabase) else self.db
            self._recordings = gridfs.GridFSBucket(db, bucket_name="recordings")
        return self._recordings

    @property
    def recording_files(self):
        return self.db["recordings.files"]

    def claim_recording(self, now, lease_until):
        """One call whose recording is due to be fetched, leased until `lease_until` (a
        fetcher that died leaves it due again then); None when there is none. Claimed by a
        conditional update on the due time it was read with: two replicas never both win."""
        for _ in range(3):
            doc = self.calls.find_one({"recording_state": "pending",
                                       "recording_due": {"$lte": now}},
                                      sort=[("recording_due", ASCENDING)])
            if doc is None:
                return None
            won = self.calls.update_one(
                {"_id": doc["_id"], "recording_state": "pending",
                 "recording_due": doc["recording_due"]},
                {"$set": {"recording_due": lease_until},
                 "$inc": {"recording_attempts": 1}}).modified_count == 1
            if won:
                doc["recording_attempts"] = doc.get("recording_attempts", 0) + 1
                return doc
        return None

    def recording_result(self, call_id, url, sets):
        """The fetch's outcome, unless the call's recording URL changed meanwhile (then the
        new one stays pending)."""
        self.calls.update_one({"_id": call_id, "recording_url": url}, {"$set": sets})

    def put_recording(self, call_id, data, content_type, expire_at):
        """The recording's bytes in GridFS; an older copy of the same call is deleted."""
        file_id = self.recordings.upload_from_stream(
            f"{call_id}.rec", data, metadata={"call_id": call_id, "content_type": content_type,
                                              "size": len(data), "expire_at": expire_at})
        for old in self.recording_files.find({"metadata.call_id": call_id,
                                              "_id": {"$ne": file_id}}, {"_id": 1}):
            self._delete_recording(old["_id"])
        return file_id

    def recording(self, call_id):
        """The newest stored recording's files document of a call, or None."""
        return self.recording_files.find_one({"metadata.call_id": call_id},
                                             sort=[("uploadDate", DESCENDING)])

    def read_recording(self, file_id, start, length):
        with self.recordings.open_download_stream(file_id) as stream:
            stream.seek(start)
            return stream.read(length)

    def expired_recordings(self, now, limit=500):
        return [d["_id"] for d in self.recording_files.find(
            {"metadata.expire_at": {"$lte": now}}, {"_id": 1}).limit(limit)]

    def _delete_recording(self, file_id):
        try:
            self.recordings.delete(file_id)
        except gridfs.errors.NoFile:
            pass  # deleted by another replica's sweep

    def delete_recording(self, file_id, call_id=None):
        self._delete_recording(file_id)
        if call_id:
            self.calls.update_one({"_id": call_id, "recording_file": file_id},
                                  {"$set": {"recording_state": "expired"},
                                   "$unset": {"recording_file": ""}})

    def next_counter(self, name):
        """Atomic: concurrent callers never get the same turn."""
        return increment(self.counters, name, "value")
