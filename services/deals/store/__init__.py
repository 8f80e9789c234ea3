"""The deals store: with reports.py and summaries.py of this package, the only code of the
deals service that touches pymongo or writes a query.

Collections: pipelines, deals, deal_history (one document per stage entry, inserted, never
rewritten), targets, settings (the configurable lists), lead_sources (the source registry
with costs), leads (one per inbound request, _id = request id), lead_counters (round robin),
lead_claims (which lead opens the deal of a contact in a pipeline), report_summaries (the sales
and forecast buckets, summaries.py: every write of a deal below marks the buckets it
changes before and after the write). No query is hinted (crm_common.mongo); hot-path
queries use only indexed fields."""
import json
from contextlib import contextmanager

from bson import json_util
from bson.int64 import Int64
from pymongo import ASCENDING, DESCENDING, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_common.cursors import page
from crm_common.custom_fields import SORTABLE, Definitions
from crm_common.ids import new_id
from crm_common.mongo import (BaseStore, active_ids, after_commit, after_transaction, find_in,
                              increment, outside_transaction, set_if_newer, update_and_get)
from crm_common.timeutil import utcnow
from services.deals import funnel, summaries
from services.deals.domain import DEFAULT_LOST_REASONS, DEFAULT_LEAD_SOURCES, default_pipeline
from services.deals.store import reports
from services.deals.store.reports import ReportQueries
from services.deals.store.buckets import SummaryQueries

LIVE = {"deleted_at": None}
DEFAULT_KEY = "default"
# deal filter fields with a (field, created_at, _id) index each
FILTERED = ("contact_id", "company_id", "stage_id", "owner_id", "pipeline_id", "source", "status")


def _int64(value):
    """Counters as 64-bit integers (the $bit / $inc updates of count_history need them)."""
    if isinstance(value, dict):
        return {k: _int64(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return Int64(value)
    return value


def _plain(doc):
    return json.loads(json_util.dumps(doc))  # BSON types -> plain JSON for RPC


class DealsStore(ReportQueries, SummaryQueries, BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.pipelines = db["pipelines"]
        self.deals = db["deals"]
        self.history = db["deal_history"]
        self.targets = db["targets"]
        self.config = db["settings"]
        self.lead_sources = db["lead_sources"]
        self.leads = db["leads"]
        self.lead_counters = db["lead_counters"]
        self.lead_claims = db["lead_claims"]
        self.funnel_numbers = db["funnel_numbers"]  # (pipeline, owner) -> last deal number
        self.funnel_months = db["funnel_months"]  # counters, see funnel.py
        self.funnel_days = db["funnel_days"]
        self.summaries = db[summaries.COLLECTION]  # sales / forecast buckets, see summaries.py
        self.custom_fields = Definitions(db["custom_fields"])  # typed custom fields of deals
        self.users = db["users"]  # the gateway's users (user_upserted): user-type fields

    def upsert_user(self, user, at):
        """The copy as of its announcement's time `at` (a later one stays: set_if_newer)."""
        set_if_newer(self.users, user["id"], {"active": user.get("active", True) is not False}, at)

    def active_user_ids(self, user_ids):
        return active_ids(self.users, user_ids)

    def ensure_indexes(self):
        p = self.pipelines
        p.create_index([("created_at", ASCENDING), ("_id", ASCENDING)])
        # the fixed key makes creating the default pipeline an idempotent upsert
        p.create_index("key", unique=True, sparse=True)
        d = self.deals
        # by-id reads carry deleted_at and the caller's visibility: an index covering them
        # keeps those O(1) on SecantusDB (mongod serves them from _id alone)
        d.create_index([("_id", ASCENDING), ("deleted_at", ASCENDING), ("owner_id", ASCENDING)])
        d.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        d.create_index([("updated_at", DESCENDING), ("_id", DESCENDING)])
        for field in FILTERED:
            d.create_index([(field, ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        for name, keys in reports.DEAL_INDEXES.items():
            d.create_index(keys, name=name)
        self.custom_fields.ensure_indexes()
        for key, definition in self.custom_fields.of("deal").items():
            if definition["type"] in SORTABLE:
                self.index_custom_value("deal", key, definition["type"])
        # the deals a contact takes part in (several contacts per deal, participants.py)
        d.create_index([("participant_ids", ASCENDING), ("created_at", DESCENDING),
                        ("_id", DESCENDING)])
        h = self.history
        h.create_index([("deal_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)])
        for name, keys in reports.HISTORY_INDEXES.items():
            h.create_index(keys, name=name)
        t = self.targets
        t.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        t.create_index([("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        t.create_index([("team", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        t.create_index([("period", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        s = self.lead_sources
        s.create_index("name", unique=True)  # a source's name is its key (deals record it)
        s.create_index([("name", ASCENDING), ("_id", ASCENDING)])  # keyset pages by name
        s.create_index("active")
        for name, keys in reports.LEAD_INDEXES.items():
            self.leads.create_index(keys, name=name)
        for collection in (self.funnel_months, self.funnel_days):
            name = collection.name
            collection.create_index([("pipeline_id", ASCENDING), ("period", ASCENDING)], name=name)
            collection.create_index([("pipeline_id", ASCENDING), ("owner_id", ASCENDING),
                                     ("period", ASCENDING)], name=f"{name}_owner")
        # the buckets of a report part: kind, period range (and pipeline); every predicate
        # of the reads is in it (SecantusDB does not range-scan _id: a collection scan)
        self.summaries.create_index([("kind", ASCENDING), ("period", ASCENDING),
                                     ("pipeline_id", ASCENDING)], name="summaries")
        self.ensure_defaults()
        if not self.funnel_counters_ready():
            self.rebuild_funnel_counters(utcnow())  # a database from before the counters
        if not self.summaries_ready():
            summaries.Summaries(self).rebuild()  # a database from before the summaries

    def ensure_defaults(self):
        """The default pipeline and lists exist after the first start; two replicas starting
        at once both upsert the same fixed key, and the loser's duplicate key is ignored."""
        now = utcnow()
        try:
            self.pipelines.update_one({"key": DEFAULT_KEY},
                                      {"$setOnInsert": {**default_pipeline(), "_id": new_id(),
                                                        "key": DEFAULT_KEY, "created_at": now,
                                                        "updated_at": now}},
                                      upsert=True)
        except DuplicateKeyError:
            pass
        for key, values in (("lead_sources", DEFAULT_LEAD_SOURCES),
                            ("lost_reasons", DEFAULT_LOST_REASONS)):
            try:
                self.config.update_one({"_id": key}, {"$setOnInsert": {"values": list(values)}},
                                       upsert=True)
            except DuplicateKeyError:
                pass
        self.seed_lead_sources(now)

    def seed_lead_sources(self, now):
        """Once per database: the registry starts with the lead_sources list of the settings
        (what deals were checked against before the registry existed), in its order."""
        if self.config.find_one({"_id": "lead_source_registry"}):
            return
        names = (self.config.find_one({"_id": "lead_sources"}) or {}).get("values") or []
        for position, name in enumerate(names):
            self.register_lead_source(name, now, auto=False, position=position)
        self.config.update_one({"_id": "lead_source_registry"},
                               {"$set": {"values": "seeded", "at": now}}, upsert=True)

    # settings
    def get_lists(self):
        return {doc["_id"]: doc.get("values") for doc in self.config.find({})}

    def set_list(self, key, values):
        self.config.update_one({"_id": key}, {"$set": {"values": values}}, upsert=True)

    # lead sources (the registry; /deal-settings lead_sources = its active names)
    def register_lead_source(self, name, now, auto, position=None):
        """Idempotent on the name (unique): an existing source is left as it is."""
        doc = {"_id": new_id(), "name": name, "description": None, "costs": [], "active": True,
               "auto_registered": auto, "position": position if position is not None
               else int(now.timestamp() * 1000), "created_at": now, "updated_at": now}
        try:
            self.lead_sources.update_one({"name": name}, {"$setOnInsert": doc}, upsert=True)
        except DuplicateKeyError:
            pass  # a concurrent first registration of the same name

    def insert_lead_source(self, doc):
        """None when the name exists already."""
        doc["_id"] = new_id()
        try:
            self.lead_sources.insert_one(doc)
        except DuplicateKeyError:
            return None
        return doc

    def lead_source_by_name(self, name):
        return self.lead_sources.find_one({"name": name})

    def get_lead_source(self, source_id):
        return self.lead_sources.find_one({"_id": source_id})

    def update_lead_source(self, source_id, changes):
        return update_and_get(self.lead_sources, {"_id": source_id}, {"$set": changes})

    def delete_lead_source(self, source_id):
        return self.lead_sources.find_one_and_delete({"_id": source_id})

    def page_lead_sources(self, query, limit, cursor):
        return page(self.lead_sources, query, "name", ASCENDING, limit, cursor)

    def all_lead_sources(self, limit=5000):
        """The registry is small (a company's channels and campaigns): read it whole."""
        return list(self.lead_sources.find({}).limit(limit))

    def active_lead_source_names(self):
        docs = self.lead_sources.find({"active": True}, {"name": 1, "position": 1})
        return [d["name"] for d in sorted(docs, key=lambda d: (d.get("position") or 0, d["name"]))]

    def set_active_lead_sources(self, names, now):
        """The settings' list replaced: these names active in this order (registered when
        new), every other source inactive; costs and descriptions stay."""
        for position, name in enumerate(names):
            self.register_lead_source(name, now, auto=False, position=position)
            self.lead_sources.update_one({"name": name}, {"$set": {
                "active": True, "position": position, "updated_at": now}})
        wanted = set(names)
        for doc in self.lead_sources.find({"active": True}, {"name": 1}):
            if doc["name"] not in wanted:
                self.lead_sources.update_one({"_id": doc["_id"]},
                                             {"$set": {"active": False, "updated_at": now}})

    # leads (inbound requests routed to deals)
    def record_lead(self, doc):
        """The first delivery of a request writes its record; later ones find it."""
        fields = {k: v for k, v in doc.items() if k != "_id"}
        self.leads.update_one({"_id": doc["_id"]}, {"$setOnInsert": fields}, upsert=True)
        return self.leads.find_one({"_id": doc["_id"]})

    def decide_lead(self, request_id, decision):
        """Only the first decision sticks (two deliveries racing: the loser reads the
        winner's): a redelivery never creates a second deal or moves the round robin on."""
        self.leads.update_one({"_id": request_id, "deal_id": None}, {"$set": decision})
        return self.leads.find_one({"_id": request_id})

    def mark_lead_routed(self, request_id, now):
        self.leads.update_one({"_id": request_id, "routed_at": None}, {"$set": {"routed_at": now}})

    def next_in_rotation(self, key):
        """The route's counter after an atomic +1 (1 for its first lead)."""
        return increment(self.lead_counters, key)

    def claim_new_deal(self, key, deal_id, request_id, now, replacing=None):
        """One claim per (contact, pipeline): the lead that opens a deal there. Two leads of
        one contact arriving together: one claim wins, the other joins that deal. A claim on
        a deal closed since is replaced only from the id read (compare-and-set). Returns the
        claim in place."""
        doc = {"deal_id": deal_id, "request_id": request_id, "at": now}
        if replacing is None:  # an upsert: a duplicate key would abort the transaction
            self.lead_claims.update_one({"_id": key}, {"$setOnInsert": doc}, upsert=True)
        else:
            self.lead_claims.update_one({"_id": key, "deal_id": replacing}, {"$set": doc})
        return self.lead_claims.find_one({"_id": key})

    def lead_claims_get(self, key):
        return self.lead_claims.find_one({"_id": key})

    def open_deal_counts(self, owner_ids):
        """Open deals per owner: (owner_id, status) is a prefix of the forecast_owner index,
        so each query is one index range; deleted deals are dropped here."""
        counts = {}
        for owner_id in owner_ids:
            found = self.deals.find({"owner_id": owner_id, "status": "open"}, {"deleted_at": 1})
            counts[owner_id] = sum(1 for d in found if d.get("deleted_at") is None)
        return counts

    def open_deal_docs(self, contact_id, pipeline_id):
        """The contact's open deals in the pipeline, newest first (see open_deals_of)."""
        found = self.deals.find({"contact_id": contact_id}).limit(1000)
        docs = [d for d in found if d.get("pipeline_id") == pipeline_id
                and d.get("status") == "open" and d.get("deleted_at") is None]
        return sorted(docs, key=lambda d: d["created_at"], reverse=True)

    def deal_by_id(self, deal_id):
        return self.deals.find_one({"_id": deal_id})

    def insert_deal_once(self, doc):
        """False when a deal with this id exists (a redelivered lead already created it).
        An upsert: a duplicate key would abort the transaction the lead is routed in."""
        with self.summaries_marked(summaries.touched(None, doc)):
            result = self.deals.update_one({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)
        return result.upserted_id is not None

    def add_deal_request(self, deal_id, entry, keep, now):
        """Push the request onto the deal once (its id is not there yet), keeping the last
        `keep` entries. No report reads these fields: no summary changes."""
        self.deals.update_one(
            {"_id": deal_id, "requests.request_id": {"$ne": entry["request_id"]}},
            {"$push": {"requests": {"$each": [entry], "$slice": -keep}},
             "$set": {"updated_at": now, "last_request_at": entry["received_at"]}})

    # pipelines
    def insert_pipeline(self, doc):
        doc["_id"] = new_id()
        self.pipelines.insert_one(doc)
        return doc

    def get_pipeline(self, pipeline_id):
        return self.pipelines.find_one({"_id": pipeline_id, **LIVE})

    def default_pipeline(self):
        return self.pipelines.find_one({"key": DEFAULT_KEY})

    def pipelines_by_id(self, ids):
        return {p["_id"]: p for p in self.pipelines.find({"_id": {"$in": list(ids)}})}

    def page_pipelines(self, limit, cursor):
        return page(self.pipelines, dict(LIVE), "created_at", ASCENDING, limit, cursor)

    def update_pipeline(self, pipeline_id, version, changes):
        """Only from the version the caller read: two concurrent edits never mix."""
        return update_and_get(self.pipelines, {"_id": pipeline_id, "version": version, **LIVE},
                              {"$set": changes, "$inc": {"version": 1}})

    # deals: every write marks the report summaries it changes (summaries.py)
    def insert_deal(self, doc):
        with self.summaries_marked(summaries.touched(None, doc)):
            self.deals.insert_one(doc)
        return doc

    def get_deal(self, deal_id, visible, deleted=False):
        if deleted:
            return self.deals.find_one({"_id": deal_id, **visible})
        return self.deals.find_one({"_id": deal_id, **LIVE, **visible})

    def change_deal(self, current, changes, visible=None, live=True):
        """Compare-and-set on the version read (`current`): of two concurrent writes one
        wins, the other re-reads and writes again (moves: each move is one history entry).
        True when this write won; the caller knows the result (what it read + its changes):
        a document read back could already carry the next write. The write replaces exactly
        `current`, so the summaries it touches are those of `current` and of the result.
        `live`: only a deal not deleted (False: only a deleted one, a restore)."""
        query = {"_id": current["_id"], "version": current["version"], **(visible or {})}
        query["deleted_at"] = None if live else {"$ne": None}
        with self.summaries_marked(summaries.touched(current, {**current, **changes})):
            result = self.deals.update_one(query, {"$set": changes, "$inc": {"version": 1}})
        return result.matched_count == 1

    def open_deals_of(self, contact_id, pipeline_id, limit=10):
        """Only the indexed field in the query (a contact has few deals; the rest is checked
        here): SecantusDB walks a hinted index whole, and scans without a hint when a
        predicate is outside the index."""
        found = self.deals.find({"contact_id": contact_id},
                                {"pipeline_id": 1, "status": 1, "deleted_at": 1}).limit(1000)
        return [d["_id"] for d in found if d.get("pipeline_id") == pipeline_id
                and d.get("status") == "open" and d.get("deleted_at") is None][:limit]

    def index_custom_value(self, entity, key, kind):
        """A typed custom field's values, for lists filtered or sorted by it."""
        path = f"custom.{key}" + (".amount" if kind == "money" else "")
        self.deals.create_index([(path, ASCENDING), ("_id", ASCENDING)])

    def completeness_records(self, projection, owner_id, visible_owners):
        """Live deals of `owner_id` (or all), of the owners the caller sees (None: all)."""
        query = {"deleted_at": None}
        if owner_id:
            query["owner_id"] = owner_id
        if visible_owners is not None:
            query = {"$and": [query, {"owner_id": {"$in": list(visible_owners)}}]}
        return self.deals.find(query, projection)

    def deals_with_participants(self, contact_ids):
        return list(find_in(self.deals, "participant_ids", list(contact_ids)))

    def set_participants(self, deal_id, people):
        """After a merge: the list and its index field (contact_id was repointed already)."""
        self.deals.update_one({"_id": deal_id}, {"$set": {
            "contacts": people, "participant_ids": [p["contact_id"] for p in people]}})

    def deals_of_participant(self, contact_id, limit):
        """A contact's deals, newest first: those listing it among their contacts and those
        naming it as contact_id (deals from before the list). One indexed predicate per
        query (a person has few deals); deletion and visibility are checked by the caller."""
        found = {}
        for field in ("participant_ids", "contact_id"):
            for doc in self.deals.find({field: contact_id}).sort(
                    [("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit):
                found[doc["_id"]] = doc
        return sorted(found.values(), key=lambda d: (d["created_at"], d["_id"]),
                      reverse=True)[:limit]

    def deal_filter(self, filters, visible_owners):
        """The deal list's query: live deals with these field values, of the owners the
        caller sees (None: everyone); an owner_id filter outside them matches nothing."""
        query = {"deleted_at": None, **filters}
        if visible_owners is None:
            return query
        if "owner_id" in query:
            if query["owner_id"] not in visible_owners:
                query["owner_id"] = {"$in": []}
            return query
        return {**query, "owner_id": {"$in": list(visible_owners)}}

    def page_deals(self, query, sort_field, direction, limit, cursor):
        return page(self.deals, query, sort_field, direction, limit, cursor)

    def count_deals(self, query, sort_field):
        return self.deals.count_documents(query)

    def any_deal_in(self, pipeline_id, stage_ids=None):
        query = {"pipeline_id": pipeline_id, **LIVE}
        if stage_ids is not None:
            query["stage_id"] = {"$in": list(stage_ids)}
        return {d["stage_id"] for d in self.deals.find(query, {"stage_id": 1})}

    def reassign_stage(self, pipeline_id, from_stage_id, to_stage, now):
        """Deals of a removed stage go to its replacement (same kind, so status holds; an
        open stage's deals change stage and probability in the forecast buckets)."""
        stages = {from_stage_id: (to_stage["id"], to_stage["probability"])}
        with self.pipeline_forecast_restaged(pipeline_id, stages if to_stage["kind"] == "open" else None):
            self.deals.update_many(
                {"pipeline_id": pipeline_id, "stage_id": from_stage_id},
                {"$set": {"stage_id": to_stage["id"], "probability": to_stage["probability"],
                          "updated_at": now}, "$inc": {"version": 1}})

    def set_stage_probability(self, pipeline_id, stage, probability):
        """Deals follow their stage's new probability (the forecast weighs open deals by it:
        for an open stage the pipeline's forecast buckets follow too)."""
        stages = {stage["id"]: (stage["id"], probability)}
        with self.pipeline_forecast_restaged(pipeline_id, stages if stage["kind"] == "open" else None):
            self.deals.update_many({"stage_id": stage["id"], "pipeline_id": pipeline_id},
                                   {"$set": {"probability": probability}})

    # report summaries (summaries.py): marks around deal writes, status reads, stores
    @contextmanager
    def summaries_marked(self, buckets):
        """Before the write: $inc dirty and pending.<token> on each bucket (created when
        missing); after it, whatever happened: $inc dirty again and the token removed. Both
        outside the write's transaction (the unmark once it ended): every deal write of a
        month marks the same buckets, and inside transactions they would all conflict."""
        if not buckets:
            yield
            return
        token = new_id()
        ids = [(summaries.bucket_id(*bucket), bucket) for bucket in buckets]
        self._mark(ids, {"$set": {f"pending.{token}": utcnow()}})
        try:
            yield
        finally:
            after_transaction(self._mark, ids, {"$unset": {f"pending.{token}": ""}})

    @outside_transaction()
    def _mark(self, ids, change):
        ops = [UpdateOne({"_id": key}, {"$inc": {"dirty": 1}, **change,
                                        "$setOnInsert": {"kind": kind, "period": period,
                                                         "pipeline_id": pipeline_id}},
                         upsert=True) for key, (kind, period, pipeline_id) in ids]
        for attempt in range(5):
            try:
                self.summaries.bulk_write(ops, ordered=False)
                return
            except (BulkWriteError, DuplicateKeyError):
                # racing first upserts of one bucket: it exists now; marking the others
                # twice only makes them more dirty
                if attempt == 4:
                    raise

    @contextmanager
    def pipeline_forecast_restaged(self, pipeline_id, stages):
        """A bulk change of a pipeline's open deals (`stages` {old stage id: (new stage id,
        new probability)}; None: nothing to do): every forecast bucket of the pipeline marked
        before it; after it, the buckets no other write marked meanwhile get their rows
        rewritten the same way (summaries.restage, compare-and-set), the others are only
        unmarked (they stay dirty and are recomputed at read)."""
        if not stages:
            yield
            return
        token = new_id()
        queries = [{"kind": kind, "pipeline_id": pipeline_id}
                   for kind in (summaries.FORECAST_MONTH, summaries.FORECAST_DAY)]
        for query in queries:
            self.summaries.update_many(query, {"$inc": {"dirty": 1},
                                               "$set": {f"pending.{token}": utcnow()}})
        done = False
        try:
            yield
            done = True
        finally:
            if done:  # the deals all changed: rewrite what can be
                ops = []
                for query in queries:
                    for doc in self.summaries.find({**query, f"pending.{token}": {"$exists": True}}):
                        if summaries.restageable(doc, token):
                            ops.append(UpdateOne(
                                {"_id": doc["_id"], "dirty": doc["dirty"]},
                                {"$set": {"rows": summaries.restage(doc.get("rows") or [], stages),
                                          "built": doc["dirty"] + 1},
                                 "$inc": {"dirty": 1}, "$unset": {f"pending.{token}": ""}}))
                for i in range(0, len(ops), 1000):
                    self.summaries.bulk_write(ops[i:i + 1000], ordered=False)
            for query in queries:  # the rest (and those whose compare-and-set failed)
                self.summaries.update_many({**query, f"pending.{token}": {"$exists": True}},
                                           {"$inc": {"dirty": 1}, "$unset": {f"pending.{token}": ""}})

    def store_summaries(self, writes):
        """[(bucket id, dirty read, rows, stale tokens)]: each stored only if its `dirty`
        is still the one read (a write since then keeps it dirty)."""
        ops = []
        for key, dirty, rows, stale in writes:
            update = {"$set": {"rows": rows, "built": dirty}}
            if stale:
                update["$unset"] = {f"pending.{token}": "" for token in stale}
            ops.append(UpdateOne({"_id": key, "dirty": dirty}, update))
        for i in range(0, len(ops), 1000):
            self.summaries.bulk_write(ops[i:i + 1000], ordered=False)

    def insert_summaries(self, docs):
        """New buckets (rebuild); one a writer created meanwhile is kept (it is dirty)."""
        ops = [InsertOne(doc) for doc in docs]
        for i in range(0, len(ops), 1000):
            try:
                self.summaries.bulk_write(ops[i:i + 1000], ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise

    def summaries_ready(self):
        marker = self.config.find_one({"_id": "report_summaries"})
        return bool(marker) and marker.get("version") == summaries.VERSION

    def set_summaries_ready(self, version, now):
        self.config.update_one({"_id": "report_summaries"},
                               {"$set": {"version": version, "at": now}}, upsert=True)

    def repoint_contact(self, merged_ids, survivor_id, now):
        """Idempotent: a redelivered merge finds nothing left to move."""
        result = self.deals.update_many({"contact_id": {"$in": list(merged_ids)}},
                                        {"$set": {"contact_id": survivor_id, "updated_at": now}})
        return result.modified_count

    def set_history_owner(self, deal_id, owner_id, funnel_no):
        """Reports filter history by owner: it follows the deal when the deal is reassigned
        (with the deal's number in the new owner's funnel counters)."""
        self.history.update_many({"deal_id": deal_id},
                                 {"$set": {"owner_id": owner_id, "funnel_no": funnel_no}})

    def history_of(self, deal_id, limit=10000):
        return list(self.history.find({"deal_id": deal_id}).limit(limit))

    # history
    def add_history(self, entry):
        """Upsert on the entry's id (deal id + version): writing it twice adds nothing.
        True only for the call that inserted it (it alone adds the entry to the counters)."""
        fields = {k: v for k, v in entry.items() if k != "_id"}  # _id comes from the query
        result = self.history.update_one({"_id": entry["_id"]}, {"$setOnInsert": fields},
                                         upsert=True)
        return result.upserted_id is not None

    # funnel counters (funnel.py): numbers, per-entry updates, reads, rebuild
    @outside_transaction()
    def next_funnel_no(self, pipeline_id, owner_id):
        """A new deal number in the (pipeline, owner) space: an atomic +1 (a number lost to
        a retry only leaves an unused bit). Outside the write's transaction: every deal
        write of an owner takes one, and inside transactions they would all conflict."""
        return increment(self.funnel_numbers, funnel.owner_key(pipeline_id, owner_id))

    def count_history(self, entry, sign=1):
        """Adds one history entry to its month and day counters (sign -1 takes it out), once
        the write's transaction has committed: every deal write of an owner's month touches
        the same counters, and inside transactions they would all conflict (an aborted try
        counts nothing; a process killed in between leaves the counters one entry short,
        as before transactions: rebuild_funnel_counters)."""
        after_commit(self._count_history, entry, sign)

    def _count_history(self, entry, sign):
        bits, incs = funnel.entry_update(entry, sign)
        if not bits:
            return
        op = "or" if sign > 0 else "and"
        update = {"$bit": {path: {op: Int64(mask)} for path, mask in bits.items()}}
        if incs:
            update["$inc"] = {path: Int64(n) for path, n in incs.items()}
        for collection, period in zip((self.funnel_months, self.funnel_days),
                                      funnel.periods(entry["at"])):
            key = funnel.doc_id(entry["pipeline_id"], entry.get("owner_id"), period)
            update["$setOnInsert"] = {"pipeline_id": entry["pipeline_id"],
                                      "owner_id": entry.get("owner_id"), "period": period}
            for attempt in range(5):
                try:
                    collection.update_one({"_id": key}, update, upsert=True)
                    break
                except DuplicateKeyError:  # racing first upserts: the other one created it
                    if attempt == 4:
                        raise

    def funnel_docs(self, collection, pipeline_id, owner, first, end):
        """Counter documents of periods [first, end): one owner is an equality on the
        owner-led index; everyone or a team reads the pipeline's range (few documents)."""
        query = {"pipeline_id": pipeline_id, "period": {"$gte": first, "$lt": end}}
        if owner is not None:
            query["owner_id"] = owner
        return self.db[collection].find(query, {"pipeline_id": 0, "period": 0})

    def history_between(self, pipeline_id, owner, start, end):
        """History entries of the pipeline in [start, end) (the funnel / funnel_owner index;
        used for the partial days at a report period's ends)."""
        query = {"pipeline_id": pipeline_id, "at": {"$gte": start, "$lt": end}}
        if owner is not None:
            query["owner_id"] = owner
        return self.history.find(query, {"owner_id": 1, "to_stage_id": 1, "to_kind": 1,
                                         "from_stage_id": 1, "seconds_in_from_stage": 1,
                                         "funnel_no": 1})

    def explain_funnel_read(self, source, pipeline_id, owner, first, last):
        """The plan of one read of the funnel (funnel_docs or history_between)."""
        query = {"pipeline_id": pipeline_id, **({"owner_id": owner} if owner else {})}
        query["at" if source == "history" else "period"] = {"$gte": first, "$lt": last}
        return self.explain_find("deal_history" if source == "history" else source, query)

    def explain_find(self, collection, query):
        return _plain(self.db[collection].find(query).explain())

    def funnel_counters_ready(self):
        marker = self.config.find_one({"_id": "funnel_counters"})
        return bool(marker) and marker.get("version") == funnel.VERSION

    def rebuild_funnel_counters(self, now):
        """Recomputes every counter document from deal_history, and numbers the deals whose
        entries have no funnel_no yet (a database from before the counters). Entries
        written while it runs may be missed: run it when writes are quiet (or again)."""
        builder = funnel.Builder()
        top, unnumbered = {}, []
        fields = {"deal_id": 1, "pipeline_id": 1, "owner_id": 1, "to_stage_id": 1, "to_kind": 1,
                  "from_stage_id": 1, "seconds_in_from_stage": 1, "at": 1, "funnel_no": 1}
        scanned = 0
        for entry in self.history.find({}, fields, batch_size=5000):
            scanned += 1
            if entry.get("funnel_no") is None:
                unnumbered.append(entry)
                continue
            key = funnel.owner_key(entry["pipeline_id"], entry.get("owner_id"))
            top[key] = max(top.get(key, 0), entry["funnel_no"])
            builder.add(entry)
        for doc in self.funnel_numbers.find({}):
            top[doc["_id"]] = max(top.get(doc["_id"], 0), doc.get("n") or 0)
        numbers = {}  # (pipeline, owner, deal) -> number given now
        for entry in unnumbered:
            owner_of = (entry["pipeline_id"], entry.get("owner_id"), entry["deal_id"])
            if owner_of not in numbers:
                key = funnel.owner_key(entry["pipeline_id"], entry.get("owner_id"))
                top[key] = top.get(key, 0) + 1
                numbers[owner_of] = top[key]
            entry["funnel_no"] = numbers[owner_of]
            builder.add(entry)
        for (pipeline_id, owner_id, deal_id), number in numbers.items():
            self.history.update_many({"deal_id": deal_id, "owner_id": owner_id},
                                     {"$set": {"funnel_no": number}})
            self.deals.update_one({"_id": deal_id, "owner_id": owner_id, "funnel_no": None},
                                  {"$set": {"funnel_no": number}})
        for key, n in top.items():
            self.funnel_numbers.update_one({"_id": key}, {"$max": {"n": n}}, upsert=True)
        for name, docs in builder.docs.items():
            collection = self.db[name]
            collection.delete_many({})
            batch = [_int64(doc) for doc in docs.values()]
            for i in range(0, len(batch), 2000):
                try:
                    collection.insert_many(batch[i:i + 2000], ordered=False)
                except BulkWriteError:  # another replica rebuilding the same documents
                    pass
        self.config.update_one({"_id": "funnel_counters"},
                               {"$set": {"version": funnel.VERSION, "at": now}}, upsert=True)
        return {"history_entries": scanned, "numbered_deals": len(numbers),
                "funnel_months": len(builder.docs["funnel_months"]),
                "funnel_days": len(builder.docs["funnel_days"])}

    def page_history(self, deal_id, limit, cursor):
        # every predicate is in the (deal_id, at, _id) index, so both servers range-scan it
        # unhinted (a hint makes SecantusDB walk the whole index: see README)
        return page(self.history, {"deal_id": deal_id}, "at", DESCENDING, limit, cursor)

    # targets
    def insert_target(self, doc):
        doc["_id"] = new_id()
        self.targets.insert_one(doc)
        return doc

    def get_target(self, target_id, visible):
        return self.targets.find_one({"_id": target_id, **visible})

    def update_target(self, target_id, visible, changes):
        return update_and_get(self.targets, {"_id": target_id, **visible}, {"$set": changes})

    def delete_target(self, target_id, visible):
        return self.targets.find_one_and_delete({"_id": target_id, **visible})

    def page_targets(self, query, limit, cursor):
        return page(self.targets, query, "created_at", DESCENDING, limit, cursor)

    def targets_for(self, query, limit=200):
        return self.page_targets(query, limit, None)[0]

    # reports: the pipelines are built in reports.py and summaries.py of this package.
    # `index` names the index the first $match is built for; it is not hinted.
    def aggregate(self, collection, pipeline, index=None):
        return list(self.db[collection].aggregate(pipeline, allowDiskUse=True))

    def explain_aggregate(self, collection, pipeline, index=None):
        plan = self.db.command("explain", {"aggregate": collection, "pipeline": pipeline,
                                           "cursor": {}}, verbosity="queryPlanner")
        return _plain(plan)
