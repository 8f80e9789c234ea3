"""The only pymongo code of inbound requests (docs/leads.md): routes (web forms and channel
settings) and every request as it was received."""
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from crm_common.cursors import page
from crm_common.mongo import BaseStore, update_and_get


class InboundStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.forms = db["lead_forms"]
        self.requests = db["inbound_requests"]

    def ensure_indexes(self):
        self.forms.create_index("key", unique=True)
        self.forms.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.forms.create_index("channel")
        r = self.requests
        r.create_index([("received_at", DESCENDING), ("_id", DESCENDING)])
        for field in ("status", "channel", "form_id", "contact_id"):
            r.create_index([(field, ASCENDING), ("received_at", DESCENDING), ("_id", DESCENDING)])
        # the sweeper's query: both predicates in one index (SecantusDB scans otherwise)
        r.create_index([("pending", ASCENDING), ("next_attempt_at", ASCENDING)])
        # a message id seen before on the same channel is the same request
        r.create_index("dedupe_key", unique=True, sparse=True)

    # routes
    def insert_form(self, doc):
        self.forms.insert_one(doc)
        return doc

    def get_form(self, form_id):
        return self.forms.find_one({"_id": form_id, "deleted_at": None})

    def form_by_key(self, key):
        doc = self.forms.find_one({"key": key})
        return doc if doc and doc.get("deleted_at") is None else None

    def channel_route(self, channel):
        """The oldest active route of kind channel for `channel` (few per channel)."""
        found = [d for d in self.forms.find({"channel": channel}).limit(100)
                 if d.get("kind") == "channel" and d.get("active") and d.get("deleted_at") is None]
        return min(found, key=lambda d: d["created_at"]) if found else None

    def update_form(self, form_id, changes):
        return update_and_get(self.forms, {"_id": form_id, "deleted_at": None}, {"$set": changes})

    def count_on_form(self, form_id, counter):
        self.forms.update_one({"_id": form_id}, {"$inc": {counter: 1}})

    def page_forms(self, query, limit, cursor):
        return page(self.forms, {"deleted_at": None, **query}, "created_at", DESCENDING, limit,
                    cursor)

    # requests
    def insert_request(self, doc):
        """Store once; a repeat of a deduplicated message returns the stored one."""
        try:
            self.requests.insert_one(doc)
            return doc, True
        except DuplicateKeyError:
            if not doc.get("dedupe_key"):
                raise
            return self.requests.find_one({"dedupe_key": doc["dedupe_key"]}), False

    def get_request(self, request_id):
        return self.requests.find_one({"_id": request_id})

    def update_request(self, request_id, changes, unset=None):
        update = {"$set": changes}
        if unset:
            update["$unset"] = {field: "" for field in unset}
        return update_and_get(self.requests, {"_id": request_id}, update)

    def claim_due(self, now, lease):
        """One request still to capture whose time has come, leased to the caller."""
        return self.requests.find_one_and_update(
            {"pending": True, "next_attempt_at": {"$lte": now}},
            {"$set": {"next_attempt_at": now + lease}, "$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER)

    @staticmethod
    def owned_by(owner_ids):
        """The condition for requests routed to one of `owner_ids` or to no one yet
        (None: every request)."""
        return {} if owner_ids is None else {"owner_id": {"$in": list(owner_ids) + [None]}}

    def page_requests(self, query, limit, cursor):
        return page(self.requests, query, "received_at", DESCENDING, limit, cursor)
