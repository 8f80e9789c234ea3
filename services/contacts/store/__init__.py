"""The contacts store: with imports.py and inbound.py of this package, the only code of the
contacts service that touches pymongo or writes a query."""
import json

from bson import json_util
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError

from crm_common.cursors import after_cursor, page
from crm_common.custom_fields import SORTABLE, Definitions
from crm_common.ids import new_id
from crm_common.errors import Unavailable
from crm_common.mongo import BaseStore, active_ids, find_in, update_and_get
from crm_common.phones import looks_like_phone, phone_search_keys
from crm_common.timeutil import utcnow
from services.contacts.domain import EMAIL

LIVE = {"deleted_at": None}

# Internal search keys stay in the database; reads leave them out.
READ = {"email_keys": 0, "phone_keys": 0, "handle_keys": 0,
        "sort_name": 0, "parked_keys": 0}
# Lookup keys a soft-deleted contact keeps aside, so lookups and duplicate checks query one
# indexed field only (SecantusDB scans the collection when a query adds deleted_at).
KEY_FIELDS = ("email_keys", "phone_keys", "handle_keys")
# indexes of earlier versions that only served search and the list screens' filters (now
# the search service's index; its MongoDB fallback walks the sort's index): each was
# written with every contact, an import's main cost
RETIRED_INDEXES = ("search_prefixes_1", "tags_1_created_at_-1__id_-1",
                   "source_1_created_at_-1__id_-1", "status_1_created_at_-1__id_-1",
                   "last_contacted_at_1",
                   # by-id reads and writes that also say deleted_at / owner_id: both servers
                   # answer them from _id alone (SecantusDB 0.7: 0.5 ms at 5,000 and at
                   # 20,000 contacts without it), and it cost every insert an entry
                   "_id_1_deleted_at_1_owner_id_1")


def visible_condition(visible):
    """The condition of what a caller sees: contacts whose owner_id is one of `visible`
    (a list that may hold None: the shared ones), or everything when `visible` is None."""
    return {} if visible is None else {"owner_id": {"$in": list(visible)}}


def text_query(q, region):
    """`q` as a Mongo condition, for the list's fallback while the search index is rebuilt
    (gateway/lists.py): a phone in any form or an email (lookup keys); words are searched
    in the index only."""
    q = q.strip()
    if looks_like_phone(q):
        return {"phone_keys": {"$in": phone_search_keys(q, region)}}
    if EMAIL.match(q):
        return {"email_keys": q.lower()}
    raise words_need_the_index()


def words_need_the_index():
    return Unavailable("Searching by words needs the search index, which is being rebuilt; "
                       "a phone number or an email can be searched meanwhile")


class ContactsStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.contacts = db["contacts"]
        self.companies = db["companies"]
        self.timeline = db["timeline"]
        self.custom_fields = Definitions(db["custom_fields"])  # typed custom fields
        self.users = db["users"]  # the users' copy (kept by imports.py's store)

    def ensure_indexes(self):
        self.custom_fields.ensure_indexes()
        for entity in ("contact", "company"):
            for key, definition in self.custom_fields.of(entity).items():
                if definition["type"] in SORTABLE:
                    self.index_custom_value(entity, key, definition["type"])
        c = self.contacts
        c.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        c.create_index([("updated_at", DESCENDING), ("_id", DESCENDING)])
        c.create_index([("sort_name", ASCENDING), ("_id", ASCENDING)])
        # an agent's list (the MongoDB fallback, exports, counts) and a company's people
        for field in ("owner_id", "company_id"):
            c.create_index([(field, ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        c.create_index("phone_keys")
        c.create_index("email_keys")
        c.create_index("handle_keys")
        c.create_index([("birthday_md", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)])
        self.companies.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.companies.create_index([("updated_at", DESCENDING), ("_id", DESCENDING)])
        self.companies.create_index([("owner_id", ASCENDING), ("created_at", DESCENDING)])
        for collection in (c, self.companies):
            retired = set(RETIRED_INDEXES) & set(collection.index_information())
            for name in retired:
                collection.drop_index(name)
        self.timeline.create_index([("contact_id", ASCENDING), ("occurred_at", DESCENDING),
                                    ("_id", DESCENDING)])
        # one timeline entry per source record and kind, so redelivered events add nothing
        self.timeline.create_index("dedupe_key", unique=True, sparse=True)

    # contacts
    def insert_contact(self, doc):
        doc["_id"] = new_id()
        self.contacts.insert_one(doc)
        return doc

    def get_contact(self, contact_id, include_deleted=False):
        # By _id alone, live-ness checked here: SecantusDB answers {_id, deleted_at} from the
        # compound index at about twice the server CPU of an _id probe; the same document either way, on mongod too.
        doc = self.contacts.find_one({"_id": contact_id}, READ)
        if doc is not None and not include_deleted and doc.get("deleted_at") is not None:
            return None
        return doc

    def update_contact(self, contact_id, changes, include_deleted=False, unset=None):
        query = {"_id": contact_id}
        if not include_deleted:
            query.update(LIVE)
        update = {"$set": changes, "$inc": {"version": 1}}
        if unset:
            update["$unset"] = {field: "" for field in unset}
        return update_and_get(self.contacts, query, update, projection=READ)

    def soft_delete_contact(self, contact_id, when):
        """Mark deleted and park its lookup keys, in one atomic update."""
        current = self.contacts.find_one({"_id": contact_id, **LIVE}, {f: 1 for f in KEY_FIELDS})
        if not current:
            return None
        parked = {f: current.get(f, []) for f in KEY_FIELDS}
        return self.update_contact(contact_id, {"deleted_at": when, "updated_at": when,
                                                "parked_keys": parked, **{f: [] for f in KEY_FIELDS}})

    def restore_contact(self, contact_id, when):
        current = self.contacts.find_one({"_id": contact_id, "deleted_at": {"$ne": None}},
                                         {"parked_keys": 1})
        if not current:
            return None
        keys = current.get("parked_keys") or {}
        return self.update_contact(contact_id, {"deleted_at": None, "updated_at": when,
                                                **{f: keys.get(f, []) for f in KEY_FIELDS}},
                                   include_deleted=True, unset=["parked_keys"])

    def find_by_keys(self, email_keys, phone_keys, exclude_id=None, limit=10):
        found = []
        for field, keys in (("email_keys", email_keys), ("phone_keys", phone_keys)):
            if keys:
                found += self.contacts.find({field: {"$in": list(keys)}}, {"_id": 1}).limit(limit + 1)
        unique = [d for d in {d["_id"]: d for d in found}.values() if d["_id"] != exclude_id]
        return unique[:limit]

    def lookup(self, field, keys, limit=20):
        # only live contacts carry lookup keys (see park_keys), so no deleted_at predicate
        return list(self.contacts.find({field: {"$in": keys}}, READ).limit(limit))

    def lookup_many(self, field, keys):
        """Live contacts with any of `keys` (lists of 50: crm_common.mongo.find_in)."""
        return list(find_in(self.contacts, field, keys, READ))

    def explain_lookup(self, field, keys):
        plan = self.contacts.find({field: {"$in": keys}}, READ).explain()
        return json.loads(json_util.dumps(plan))  # BSON types -> plain JSON for RPC

    # the lists' queries, from their validated parameters
    def index_custom_value(self, entity, key, kind):
        """A typed custom field's values, for lists filtered or sorted by it (made when the
        field is defined, outside any transaction)."""
        path = f"custom.{key}" + (".amount" if kind == "money" else "")
        collection = self.contacts if entity == "contact" else self.companies
        collection.create_index([(path, ASCENDING), ("_id", ASCENDING)])

    def completeness_records(self, entity, projection, owner_id, visible):
        """The live records a completeness report reads (contacts within `visible`)."""
        if entity == "company":
            query = {"deleted_at": None}
            collection = self.companies
        else:
            query = {"deleted_at": None, **visible_condition(visible)}
            collection = self.contacts
        if owner_id:
            query = {"$and": [query, {"owner_id": owner_id}]}
        return collection.find(query, projection)

    def active_user_ids(self, user_ids):
        return active_ids(self.users, user_ids)

    def contact_filter(self, filters, region, visible):
        """The contact list's query from its validated parameters (`filters`), for a caller
        who sees `visible` (see visible_condition)."""
        query = {} if filters["include_deleted"] else {"deleted_at": None}
        conditions = []
        if filters.get("q"):
            conditions.append(text_query(filters["q"], region))
        for key, field in (("tag", "tags"), ("owner_id", "owner_id"), ("company_id", "company_id"),
                           ("source", "source"), ("status", "status")):
            if filters.get(key):
                query[field] = filters[key]
        created = {}
        if filters.get("created_after"):
            created["$gte"] = filters["created_after"]
        if filters.get("created_before"):
            created["$lt"] = filters["created_before"]
        if created:
            query["created_at"] = created
        if filters.get("not_contacted_since"):
            since = filters["not_contacted_since"]
            conditions.append({"$or": [{"last_contacted_at": None},
                                       {"last_contacted_at": {"$lt": since}}]})
        if visible_condition(visible):
            conditions.append(visible_condition(visible))
        if filters.get("buyer_ids") is not None:  # bought_product (operations._filter)
            query["_id"] = {"$in": filters["buyer_ids"]}
        if filters.get("custom_query"):  # typed custom fields (crm_common.custom_fields)
            query.update(filters["custom_query"])
        if conditions:
            query["$and"] = conditions
        return query

    def company_filter(self, filters):
        """The company list's query from its validated parameters."""
        query = {} if filters["include_deleted"] else {"deleted_at": None}
        if filters.get("q"):
            raise words_need_the_index()
        for key in ("tag", "owner_id"):
            if filters.get(key):
                query["tags" if key == "tag" else key] = filters[key]
        query.update(filters.get("custom_query") or {})  # typed custom fields
        return query

    def page_company_people(self, company_id, visible, limit, cursor):
        """A company's live contacts the caller sees, newest first."""
        return self.page_contacts({"company_id": company_id, "deleted_at": None,
                                   **visible_condition(visible)}, "created_at", -1, limit, cursor)

    def page_contacts(self, query, sort_field, direction, limit, cursor):
        return page(self.contacts, query, sort_field, direction, limit, cursor, projection=READ)

    def export_cursor(self, query, sort_field, direction, after=None, batch_size=500,
                      ids_only=False):
        """One sorted cursor over everything the export takes (after the keyset cursor
        `after`, when given). SecantusDB sorts the match once and then streams it; a keyset
        page re-sorts every time (O(n) each). `ids_only`: each document's id and sort value."""
        query = after_cursor(query, after, sort_field, direction)
        # the sort value is read: the export's position (a keyset cursor) holds it
        projection = ({"_id": 1, sort_field: 1} if ids_only else
                      {k: v for k, v in READ.items() if k != sort_field})
        return (self.contacts.find(query, projection)
                .sort([(sort_field, direction), ("_id", direction)]).batch_size(batch_size))

    def explain_page(self, query, sort_field):
        plan = (self.contacts.find(query, READ).sort([(sort_field, -1), ("_id", -1)])
                .limit(51).explain())
        return json.loads(json_util.dumps(plan))

    def count_contacts(self, query):
        return self.contacts.count_documents(query)

    def set_company_name(self, company_id, name):
        """The company's contacts (deleted ones too: one indexed predicate) carry its name."""
        self.contacts.update_many({"company_id": company_id}, {"$set": {"company_name": name}})

    def update_owner_if_none(self, contact_id, owner_id, when):
        """Give an owner-less contact its first owner; None when it already had one."""
        return update_and_get(
            self.contacts, {"_id": contact_id, "owner_id": None},
            {"$set": {"owner_id": owner_id, "updated_at": when}, "$inc": {"version": 1}},
            projection=READ)

    def touch_contacted_many(self, touched):
        """{contact id: time} in one bulk write. last_contacted_at only moves forward,
        whatever order events arrive in ($max: a date is above null in BSON order; an $or
        condition here made SecantusDB scan the collection)."""
        if touched:
            self.contacts.bulk_write([UpdateOne({"_id": cid}, {"$max": {"last_contacted_at": when}})
                                      for cid, when in touched.items()], ordered=False)

    # companies
    def insert_company(self, doc):
        doc["_id"] = new_id()
        self.companies.insert_one(doc)
        return doc

    def get_company(self, company_id, include_deleted=False):
        query = {"_id": company_id} if include_deleted else {"_id": company_id, **LIVE}
        return self.companies.find_one(query)

    def update_company(self, company_id, changes, include_deleted=False):
        query = {"_id": company_id}
        if not include_deleted:
            query.update(LIVE)
        return update_and_get(self.companies, query, {"$set": changes})

    def page_companies(self, query, sort_field, direction, limit, cursor):
        return page(self.companies, query, sort_field, direction, limit, cursor)

    def count_companies(self, query):
        return self.companies.count_documents(query)

    # timeline
    def add_timeline(self, entry):
        """Insert once: an entry with a dedupe_key already stored is a redelivery."""
        entry["_id"] = new_id()
        entry.setdefault("occurred_at", utcnow())
        if entry.get("dedupe_key") is None:
            entry.pop("dedupe_key", None)
        result = self.timeline.update_one(
            {"dedupe_key": entry["dedupe_key"]} if "dedupe_key" in entry else {"_id": entry["_id"]},
            {"$setOnInsert": entry}, upsert=True)
        return result.upserted_id is not None

    def add_timeline_many(self, entries):
        """Entries with dedupe keys in one insert; one whose key is stored (a redelivered
        event) is a duplicate key error, left out."""
        for entry in entries:
            entry["_id"] = new_id()
        if not entries:
            return
        try:
            self.timeline.insert_many(entries, ordered=False)
        except BulkWriteError as exc:
            errors = (exc.details or {}).get("writeErrors") or []
            if not errors or any(e.get("code") != 11000 for e in errors):
                raise

    def page_birthdays(self, month_day, limit, cursor):
        return page(self.contacts, {"birthday_md": month_day, **LIVE}, "created_at", ASCENDING,
                    limit, cursor)

    def page_timeline(self, query, limit, cursor):
        return page(self.timeline, query, "occurred_at", DESCENDING, limit, cursor)
