"""The only code in the automation service that touches pymongo."""
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, DESCENDING, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from crm_common.cursors import page
from crm_common.mongo import (BaseStore, find_in, increment, set_if_newer, update_and_get,
                               upsert_if_newer)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# a record copy's time-trigger fields, each with a sparse index: absent when without a value
TIME_FIELDS = ("quiet_since", "stage_since", "date_keys")


def copy_upsert(key, doc):
    """The write of one record's copy: kept unless the stored copy is newer (`at`), the
    later `quiet_since` kept either way, a time field with no value left out."""
    return upsert_if_newer(key, {k: v for k, v in doc.items() if v or k not in TIME_FIELDS},
                           keep_max=("quiet_since",))


def _duplicates(exc):
    """The indexes of an unordered bulk write's statements refused as duplicate keys;
    `exc` (a BulkWriteError) raised again when it holds any other error."""
    details = exc.details or {}
    if any(e.get("code") != 11000 for e in details.get("writeErrors", [])) \
            or details.get("writeConcernErrors"):
        raise exc
    return [e["index"] for e in details.get("writeErrors", [])]


def _ignoring_duplicates(write):
    """An unordered bulk write whose only errors are duplicate keys (already done) ->
    its result, or how many documents it inserted."""
    try:
        return write()
    except BulkWriteError as exc:
        _duplicates(exc)
        return (exc.details or {}).get("nInserted", 0)


class AutomationStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.rules = db["rules"]
        self.runs = db["runs"]
        self.events = db["events"]
        self.records = db["records"]
        self.users = db["users"]
        self.meta = db["meta"]
        self.segments = db["segments"]
        self.campaigns = db["campaigns"]
        self.sends = db["sends"]
        self.optouts = db["optouts"]
        self.recipients = db["recipients"]  # a campaign's recipients, in chunks of ids

    def ensure_indexes(self):
        self.rules.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.rules.create_index("enabled")
        # /task-rules lists stage rules by pipeline and stage
        self.rules.create_index([("task_rule.pipeline_id", ASCENDING),
                                 ("task_rule.stage_id", ASCENDING),
                                 ("created_at", DESCENDING), ("_id", DESCENDING)])
        # the run log per rule and per record, and what the timer wakes up
        self.runs.create_index([("rule_id", ASCENDING), ("created_at", DESCENDING),
                                ("_id", DESCENDING)])
        self.runs.create_index([("record_key", ASCENDING), ("created_at", DESCENDING),
                                ("_id", DESCENDING)])
        self.runs.create_index("wake_at", sparse=True)
        # the events kept for dry runs, one document per group commit (mongod's TTL
        # monitor drops them after the window); the (type_key, occurred_at) index serves
        # the one-event documents written before, until they expire
        self.events.create_index([("types", ASCENDING), ("last", DESCENDING)])
        self.events.create_index([("type_key", ASCENDING), ("occurred_at", ASCENDING),
                                  ("_id", ASCENDING)])
        self.events.create_index("stored_at", expireAfterSeconds=int(
            self.settings.automation.events_keep_days * 86400))
        # the time triggers' lookups, sparse: a copy is rewritten for each event of its
        # record (SecantusDB rewrites every index entry of a changed document), and holds
        # only the fields it has a value for: a contact `quiet_since`, an open deal
        # `stage_since`, a record with dates `date_keys` (replacing (kind, field) indexes,
        # which held two entries for every copy)
        info = self.records.index_information()
        for name in ("kind_1_quiet_since_1", "kind_1_stage_since_1"):
            if name in info:
                self._drop_index(name)
        if "date_keys_1" in info and not info["date_keys_1"].get("sparse"):
            self._drop_index("date_keys_1")
        for field in ("quiet_since", "stage_since", "date_keys"):
            self.records.create_index(field, sparse=True)
        self.segments.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.campaigns.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.campaigns.create_index("wake_at", sparse=True)
        self.sends.create_index("wake_at", sparse=True)
        # (a send's _id starts with its campaign's: no index by campaign, one entry less
        # for each of a send's three writes)
        if "campaign_id_1__id_1" in self.sends.index_information():
            self._drop_index("campaign_id_1__id_1", self.sends)

    def _drop_index(self, name, collection=None):
        try:
            (collection if collection is not None else self.records).drop_index(name)
        except OperationFailure:  # dropped by another replica starting
            pass

    # meta: test clock, rules version, counters
    def clock_offset(self):
        doc = self.meta.find_one({"_id": "clock"})
        return doc.get("offset", 0.0) if doc else 0.0

    def set_clock_offset(self, seconds):
        self.meta.update_one({"_id": "clock"}, {"$set": {"offset": seconds}}, upsert=True)

    def add_clock_offset(self, seconds):
        self.meta.update_one({"_id": "clock"}, {"$inc": {"offset": seconds}}, upsert=True)

    def rules_version(self):
        doc = self.meta.find_one({"_id": "rules_version"})
        return doc.get("n", 0) if doc else 0

    def bump_rules_version(self):
        return increment(self.meta, "rules_version")

    def next_turn(self, key):
        return increment(self.meta, f"turn:{key}")

    # rules
    def insert_rule(self, doc):
        self.rules.insert_one(doc)
        self.bump_rules_version()

    def insert_rule_once(self, doc):
        """1 if stored now, 0 if a rule with this id exists (a migration repeated)."""
        result = self.rules.update_one({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
        if result.upserted_id is None:
            return 0
        self.bump_rules_version()
        return 1

    def flag(self, name):
        return self.meta.find_one({"_id": f"flag:{name}"}) is not None

    def set_flag(self, name):
        self.meta.update_one({"_id": f"flag:{name}"}, {"$set": {"on": True}}, upsert=True)

    def get_rule(self, rule_id):
        return self.rules.find_one({"_id": rule_id})

    def update_rule(self, rule_id, version, changes):
        doc = update_and_get(self.rules, {"_id": rule_id, "version": version},
                             {"$set": changes, "$inc": {"version": 1}})
        if doc:
            self.bump_rules_version()
        return doc

    def delete_rule(self, rule_id):
        deleted = self.rules.delete_one({"_id": rule_id}).deleted_count
        self.bump_rules_version()
        return deleted

    def enabled_rules(self):
        return list(self.rules.find({"enabled": True}))

    def rule_event_types(self):
        """The events any rule, enabled or not, triggers on."""
        return [t for t in self.rules.distinct("trigger.event") if t]

    def list_rules(self, query, limit, cursor):
        return page(self.rules, query, "created_at", DESCENDING, limit, cursor)

    def list_task_rules(self, pipeline_id, stage_id, limit, cursor):
        where = {"task_rule": {"$exists": True}}
        if pipeline_id:
            where["task_rule.pipeline_id"] = pipeline_id
        if stage_id:
            where["task_rule.stage_id"] = stage_id
        return page(self.rules, where, "created_at", DESCENDING, limit, cursor)

    def advance_scan(self, rule_id, field, value):
        """Moves a time rule's scan mark forward (never back: two replicas scan)."""
        self.rules.update_one({"_id": rule_id}, {"$max": {field: value}})

    # runs
    def claim_run(self, doc):
        """Creates the run unless its key exists (another replica, a redelivery): True
        when this call created it."""
        try:
            result = self.runs.update_one({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
        except DuplicateKeyError:  # concurrent first upserts of one key
            return False
        return result.upserted_id is not None

    def get_run(self, run_id):
        return self.runs.find_one({"_id": run_id})

    def update_run(self, run_id, changes, expect=None):
        query = {"_id": run_id, **(expect or {})}
        return self.runs.update_one(query, {"$set": changes}).matched_count == 1

    def due_runs(self, now, limit):
        return list(self.runs.find({"wake_at": {"$lte": now}}).sort("wake_at", 1).limit(limit))

    def take_run(self, run, now, lease_s):
        """Compare-and-set on the wake time read: one replica takes a due run."""
        return self.runs.update_one(
            {"_id": run["_id"], "wake_at": run["wake_at"]},
            {"$set": {"wake_at": now + timedelta(seconds=lease_s), "state": "running",
                      "updated_at": now}}).matched_count == 1

    def list_runs(self, query, limit, cursor):
        return page(self.runs, query, "created_at", DESCENDING, limit, cursor)

    # what events leave behind (operations.flush_intake): kept events, record copies
    def keep_intake(self, batch, copies, touches):
        """The batch's events for dry runs (one document, `operations.kept_batch`; an event
        delivered again may be kept twice: `events_since` lists it once), each record's
        newest copy (`upsert_if_newer` on `at`: an older copy arriving late changes nothing;
        a touch known from elsewhere is kept: the later `quiet_since`) and touches of
        contacts: an insert and at most one unordered bulk write (its upserts that lost a
        race with another replica's first upsert of the key are written again)."""
        if batch:
            self.events.insert_one(batch)
        ops = [copy_upsert(key, doc) for key, doc in copies.items()]
        ops += [UpdateOne({"_id": key}, {"$max": {"quiet_since": when}})
                for key, when in touches.items()]
        if not ops:
            return
        try:
            self.records.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            again = [ops[i] for i in _duplicates(exc)]
            _ignoring_duplicates(lambda: self.records.bulk_write(again, ordered=False))

    def events_since(self, type_key, since, limit):
        """The newest `limit` events of this type since `since`, newest first, each once:
        from the batches (by their latest event, newest first, until the next batch holds
        only older events than the `limit` found) and the one-event documents of before."""
        found = {}

        def enough(bound):
            if len(found) < limit:
                return False
            oldest = sorted((e["occurred_at"] for e in found.values()), reverse=True)[limit - 1]
            return bound < oldest

        for batch in self.events.find({"types": type_key, "last": {"$gte": since}}).sort(
                "last", DESCENDING):
            if enough(batch["last"]):
                break
            for event in batch["events"]:
                if event["type_key"] == type_key and event["occurred_at"] >= since:
                    found.setdefault(event["_id"], event)
        for event in self.events.find({"type_key": type_key, "occurred_at": {"$gte": since}}) \
                .sort([("occurred_at", DESCENDING)]).limit(limit):
            found.setdefault(event["_id"], event)
        return sorted(found.values(), key=lambda e: e["occurred_at"], reverse=True)[:limit]

    def get_record(self, key):
        doc = self.records.find_one({"_id": key})
        return doc["record"] if doc else None

    def get_records(self, keys):
        """{key: record copy} of those of `keys` kept (one `$in` on _id)."""
        return {doc["_id"]: doc["record"]
                for doc in find_in(self.records, "_id", list(keys), {"record": 1})}

    def records_between(self, kind, field, after, until, limit):
        """Copies of `kind` whose `field` lies in (after, until]: `quiet_since` is only a
        contact's and `stage_since` only a deal's, so their sparse index is the query."""
        return list(self.records.find({field: {"$gt": after, "$lte": until}}).limit(limit))

    def records_by_date_key(self, key, limit):
        return list(self.records.find({"date_keys": key}).limit(limit))

    # users (gateway's user_upserted)
    def upsert_user(self, user, at):
        """The copy as of its announcement's time `at` (a later one stays: set_if_newer)."""
        set_if_newer(self.users, user["id"], {
            "timezone": user.get("timezone"), "team": user.get("team"),
            "active": user.get("active", True), "role": user.get("role")}, at)

    def has_users(self):
        return self.users.find_one({}, {"_id": 1}) is not None

    def get_user(self, user_id):
        return self.users.find_one({"_id": user_id}) if user_id else None

    # segments and campaigns
    def insert(self, collection, doc):
        self.db[collection].insert_one(doc)

    def get(self, collection, doc_id):
        return self.db[collection].find_one({"_id": doc_id})

    def update(self, collection, doc_id, changes, expect=None):
        return update_and_get(self.db[collection], {"_id": doc_id, **(expect or {})},
                              {"$set": changes})

    def delete(self, collection, doc_id):
        return self.db[collection].delete_one({"_id": doc_id}).deleted_count

    def list_page(self, collection, limit, cursor):
        return page(self.db[collection], {}, "created_at", DESCENDING, limit, cursor)

    def has_pending_sends(self, campaign_id):
        """Whether a send of the campaign waits (queued, taken or to retry: each has a
        wake time, a finished one none): read on the wake-time index, which holds only the
        sends in flight (the sends have no index by campaign: both servers pick this one)."""
        return self.sends.find_one({"wake_at": {"$gt": EPOCH}, "campaign_id": campaign_id},
                                   {"_id": 1}) is not None

    def insert_sends(self, docs):
        """Queued recipients; a key already queued (a retried start) is kept as it is."""
        if not docs:
            return 0
        return _ignoring_duplicates(
            lambda: len(self.sends.insert_many(docs, ordered=False).inserted_ids))

    def save_recipients(self, campaign_id, chunks):
        """A campaign's recipients as numbered chunks of contact ids ({n: [ids]}); a
        retried queuing writes the same keys again."""
        if chunks:
            self.recipients.bulk_write([
                ReplaceOne({"_id": f"{campaign_id}:{n:06d}"},
                           {"campaign_id": campaign_id, "n": n, "ids": ids}, upsert=True)
                for n, ids in chunks.items()], ordered=False)

    def recipient_chunks(self, campaign_id, numbers):
        """{n: [contact ids]} of these chunks (by _id: one index probe each)."""
        keys = [f"{campaign_id}:{n:06d}" for n in numbers]
        return {d["n"]: d["ids"] for d in find_in(self.recipients, "_id", keys)}

    def due_sends(self, now, limit):
        return list(self.sends.find({"wake_at": {"$lte": now}}).sort("wake_at", 1).limit(limit))

    def take_sends(self, sends, now, lease_s, claim):
        """Those of `sends` (as read by `due_sends`) this replica takes: each a
        compare-and-set on the wake time read, all in one unordered bulk, then one read of
        which carry this take's `claim` mark (a send taken by another replica meanwhile
        does not)."""
        if not sends:
            return []
        until = now + timedelta(seconds=lease_s)
        self.sends.bulk_write([UpdateOne({"_id": send["_id"], "wake_at": send["wake_at"]},
                                         {"$set": {"wake_at": until, "claim": claim}})
                               for send in sends], ordered=False)
        taken = {doc["_id"] for doc in find_in(self.sends, "_id", [s["_id"] for s in sends],
                                               {"claim": 1}) if doc.get("claim") == claim}
        return [dict(send, wake_at=until) for send in sends if send["_id"] in taken]

    def settle_sends(self, finished, retries):
        """A tick's outcomes in one unordered bulk: `finished` [(send id, state, detail)]
        leave the timer's index, `retries` [(send id, attempts, wake time)] wait again."""
        ops = [UpdateOne({"_id": send_id}, {"$set": {"state": state, "detail": detail},
                                             "$unset": {"wake_at": ""}})
               for send_id, state, detail in finished]
        ops += [UpdateOne({"_id": send_id}, {"$set": {"attempts": attempts, "wake_at": wake_at}})
                for send_id, attempts, wake_at in retries]
        if ops:
            self.sends.bulk_write(ops, ordered=False)

    def due_campaigns(self, now):
        return list(self.campaigns.find({"wake_at": {"$lte": now}}).limit(20))

    def take_campaign(self, campaign, changes):
        return self.campaigns.update_one({"_id": campaign["_id"], "wake_at": campaign["wake_at"]},
                                         {"$set": changes}).matched_count == 1

    def count_campaign(self, campaign_id, field, n=1):
        self.campaigns.update_one({"_id": campaign_id}, {"$inc": {f"counts.{field}": n}})

    def count_campaign_by(self, campaign_id, counts):
        """{state: n} added to the campaign's counts in one write."""
        if counts:
            self.campaigns.update_one({"_id": campaign_id}, {"$inc": {
                f"counts.{state}": n for state, n in counts.items()}})

    def opt_out(self, contact_id, channel, campaign_id, at):
        self.optouts.update_one({"_id": f"{contact_id}:{channel}"}, {"$setOnInsert": {
            "contact_id": contact_id, "channel": channel, "campaign_id": campaign_id, "at": at}},
            upsert=True)

    def opted_out_of(self, keys):
        """Which of these `<contact>:<channel>` keys are opted out (one `$in` on _id)."""
        return {doc["_id"] for doc in find_in(self.optouts, "_id", list(keys), {"_id": 1})}

    def opted_out(self, contact_id, channel):
        return self.optouts.find_one({"_id": f"{contact_id}:{channel}"}) is not None
