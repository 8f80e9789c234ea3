"""Storage of import jobs, their file, per-row errors and before-images, and the bulk
contact writes of imports, undo and merge. Like the contacts store (__init__.py), the only
pymongo code of its part; a second store so the contacts store stays the model of a plain
CRUD store."""
from datetime import timedelta

from bson import Binary
from pymongo import ASCENDING, DESCENDING, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError

from crm_common.cursors import page
from crm_common.custom_fields import Definitions
from crm_common.ids import new_id
from crm_common.mongo import (BaseStore, active_ids, find_in, in_chunks, set_if_newer,
                               update_and_get)
from crm_common.timeutil import utcnow
from services.contacts.store import KEY_FIELDS, visible_condition

DUPLICATE_KEY = 11000
ACTIVE = ("pending", "running", "undo_pending", "undoing")


def _ignore_duplicates(error):
    """Re-running a batch after a restart inserts rows already there: those are fine."""
    others = [e for e in error.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
    if others or error.details.get("writeConcernErrors"):
        raise error


class ImportStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.contacts = db["contacts"]
        self.companies = db["companies"]
        self.jobs = db["imports"]
        self.chunks = db["import_chunks"]
        self.errors = db["import_errors"]
        self.before = db["import_before_images"]
        self.merges = db["merges"]
        self.users = db["users"]
        self.custom_fields = Definitions(db["custom_fields"])  # typed custom fields

    def ensure_indexes(self):
        # one contact per (import, row): a batch replayed after a restart creates nothing twice
        self.contacts.create_index([("import_id", ASCENDING), ("import_row", ASCENDING)],
                                   unique=True, sparse=True, name="import_id_1_import_row_1")
        self.companies.create_index("name")
        self.companies.create_index("import_id", sparse=True)
        self.jobs.create_index([("status", ASCENDING), ("created_at", ASCENDING)])
        self.jobs.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        self.chunks.create_index([("import_id", ASCENDING), ("n", ASCENDING)])
        self.errors.create_index([("import_id", ASCENDING), ("row", ASCENDING),
                                  ("_id", ASCENDING)])
        self.before.create_index("import_id")
        self.merges.create_index("survivor_id")
        self.users.create_index("email")
        self.users.create_index("team")

    # jobs
    def insert_job(self, job, chunks):
        job["_id"] = job.get("_id") or new_id()
        # the file first: a job is only visible to the runner once its file is complete
        for n, chunk in enumerate(chunks):
            self.chunks.insert_one({"_id": f"{job['_id']}:{n:06d}", "import_id": job["_id"],
                                    "n": n, "data": Binary(chunk)})
        self.jobs.insert_one(job)
        return job

    def file_chunks(self, import_id):
        for doc in self.chunks.find({"import_id": import_id}).sort("n", ASCENDING):
            yield bytes(doc["data"])

    def drop_file(self, import_id):
        self.chunks.delete_many({"import_id": import_id})

    def get_job(self, import_id, visibility=None):
        return self.jobs.find_one({"_id": import_id, **(visibility or {})})

    def page_jobs(self, query, limit, cursor):
        return page(self.jobs, query, "created_at", DESCENDING, limit, cursor)

    def claim_job(self, owner, lease_seconds):
        """Take the oldest job that needs work and whose lease is free or expired (its
        runner stopped): one runner per job even with several replicas."""
        now = utcnow()
        return self.jobs.find_one_and_update(
            {"status": {"$in": list(ACTIVE)},
             "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]},
            {"$set": {"lease_owner": owner, "lease_until": now + timedelta(seconds=lease_seconds)}},
            sort=[("created_at", ASCENDING)], return_document=ReturnDocument.AFTER)

    def update_job(self, import_id, changes, owner=None, lease_seconds=None):
        """Apply changes (and renew the lease) only while `owner` still holds the job."""
        query = {"_id": import_id}
        if owner:
            query["lease_owner"] = owner
        if lease_seconds:
            changes = {**changes, "lease_until": utcnow() + timedelta(seconds=lease_seconds)}
        return update_and_get(self.jobs, query, {"$set": changes})

    def request_undo(self, import_id, visibility):
        return update_and_get(
            self.jobs, {"_id": import_id, "status": "done", "dry_run": False, **visibility},
            {"$set": {"status": "undo_pending", "updated_at": utcnow(), "lease_until": None}})

    # per-row errors: the _id is (import, row, column) so a replayed batch adds nothing
    def add_errors(self, import_id, errors):
        if not errors:
            return
        docs = [{"_id": f"{import_id}:{e['row']:09d}:{i:03d}", "import_id": import_id, **e}
                for i, e in _numbered(errors)]
        try:
            self.errors.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            _ignore_duplicates(error)

    def page_errors(self, import_id, limit, after_id=None):
        query = {"import_id": import_id}
        if after_id:
            query["_id"] = {"$gt": after_id}
        # both predicates are fields of the (import_id, row, _id) index, which SecantusDB
        # then reads for this import only; hinted, it walked every import's errors
        return list(self.errors.find(query).sort([("row", ASCENDING), ("_id", ASCENDING)])
                    .limit(limit))

    def count_errors(self, import_id):
        return self.errors.count_documents({"import_id": import_id})

    # Equality and $in lookups here name one indexed field and no hint: SecantusDB walks the
    # whole index when an equality lookup is hinted (far slower than unhinted) and
    # scans the collection when a second field is queried; mongod picks the same index by
    # itself. Duplicates of a batch: one $in per key type; deleted ones dropped in Python.
    def find_by_key_values(self, field, values):
        return [d for d in find_in(self.contacts, field, values)
                if d.get("deleted_at") is None]

    def contacts_by_ids(self, ids):
        return list(find_in(self.contacts, "_id", ids))

    # bulk writes of one batch
    def save_before_images(self, import_id, images):
        """Keep the first before-image of each updated contact (the state before this
        import), whatever batches are replayed; remember which rows touched it."""
        if not images:
            return
        self.before.bulk_write([
            UpdateOne({"_id": f"{import_id}:{contact_id}"},
                      {"$setOnInsert": {"import_id": import_id, "contact_id": contact_id,
                                        "before": doc},
                       "$addToSet": {"rows": {"$each": rows}}}, upsert=True)
            for contact_id, (doc, rows) in images.items()], ordered=False)

    def before_images_of(self, import_id, contact_ids):
        ids = [f"{import_id}:{c}" for c in contact_ids]
        return {d["contact_id"]: d for d in find_in(self.before, "_id", ids)}

    def apply_batch(self, new_docs, updates):
        """Insert the batch's new contacts and apply its updates ($set, never $unset)."""
        if updates:
            self.contacts.bulk_write([
                UpdateOne({"_id": contact_id}, {"$set": changes, "$inc": {"version": 1}})
                for contact_id, changes in updates.items()], ordered=False)
        if new_docs:
            try:
                self.contacts.insert_many(new_docs, ordered=False)
            except BulkWriteError as error:
                _ignore_duplicates(error)

    def companies_by_names(self, names):
        # one indexed predicate only (see find_by_key_values); deleted ones dropped here
        return [c for c in find_in(self.companies, "name", names)
                if c.get("deleted_at") is None]

    def insert_companies(self, docs):
        for doc in docs:
            doc["_id"] = new_id()
        if docs:
            self.companies.insert_many(docs, ordered=False)
        return docs

    def users_by_emails(self, emails):
        """Active users by email (an import row may give contacts only to them)."""
        return {u["email"]: u["_id"] for u in find_in(self.users, "email", emails)
                if u.get("active", True) is not False}

    def upsert_user(self, user, at):
        """The copy as of its announcement's time `at` (a later one stays: set_if_newer)."""
        set_if_newer(self.users, user["id"], {
            "email": (user.get("email") or "").lower(), "name": user.get("name"),
            "active": user.get("active", True), "role": user.get("role"),
            "team": user.get("team")}, at)

    def get_user(self, user_id):
        return self.users.find_one({"_id": user_id})

    def active_user_ids(self, user_ids):
        return active_ids(self.users, user_ids)

    def team_member_ids(self, team):
        """Active members of a team, in a stable order (round robin walks it)."""
        return sorted(u["_id"] for u in self.users.find({"team": team}, {"active": 1})
                      if u.get("active", True))

    # undo
    def before_images(self, import_id, limit, after_id=None):
        query = {"import_id": import_id}
        if after_id:
            query["_id"] = {"$gt": after_id}
        return list(self.before.find(query).sort("_id", ASCENDING).limit(limit))

    def restore_contacts(self, docs):
        if docs:
            self.contacts.bulk_write([ReplaceOne({"_id": d["_id"]}, d) for d in docs],
                                     ordered=False)

    def created_ids(self, import_id, limit):
        return [d["_id"] for d in self.contacts.find({"import_id": import_id}, {"_id": 1})
                .limit(limit)]

    def delete_contacts(self, ids):
        return sum(self.contacts.delete_many({"_id": {"$in": chunk}}).deleted_count
                   for chunk in in_chunks(ids))

    def detach_from_import(self, ids):
        """Contacts an undo keeps (edited since): no longer the import's."""
        for chunk in in_chunks(ids):
            self.contacts.update_many({"_id": {"$in": chunk}},
                                      {"$unset": {"import_id": "", "import_row": ""}})

    def delete_imported_companies(self, import_id):
        return self.companies.delete_many({"import_id": import_id}).deleted_count

    # merge
    def live_contacts(self, ids, visibility):
        return list(self.contacts.find({"_id": {"$in": list(ids)}, "deleted_at": None,
                                        **visibility}))

    def merge(self, survivor_id, survivor_version, changes, merged_ids, record):
        """The survivor update is conditional on the version read, so two concurrent
        merges cannot both apply; then the sources are soft-deleted with merged_into."""
        doc = update_and_get(
            self.contacts, {"_id": survivor_id, "deleted_at": None, "version": survivor_version},
            {"$set": changes, "$inc": {"version": 1}})
        if doc is None:
            return None
        now = changes["updated_at"]
        # soft-deleted the way store.soft_delete_contact does it (lookup keys parked, so
        # lookups and duplicate checks no longer find them and restore puts them back)
        sources = self.contacts.find({"_id": {"$in": list(merged_ids)}, "deleted_at": None},
                                     {f: 1 for f in KEY_FIELDS})
        self.contacts.bulk_write([
            UpdateOne({"_id": s["_id"], "deleted_at": None},
                      {"$set": {"deleted_at": now, "updated_at": now, "merged_into": survivor_id,
                                "parked_keys": {f: s.get(f, []) for f in KEY_FIELDS},
                                **{f: [] for f in KEY_FIELDS}},
                       "$inc": {"version": 1}}) for s in sources], ordered=False)
        record["_id"] = new_id()
        self.merges.insert_one(record)
        return doc

    def merges_of(self, survivor_id):
        return list(self.merges.find({"survivor_id": survivor_id}).sort("at", DESCENDING))

    # duplicates across the base
    def duplicate_groups(self, field, visible, limit):
        """Values of `field` shared by more than one live contact the caller sees (`visible`:
        owner ids, None: every contact), with their ids."""
        match = {"deleted_at": None, **visible_condition(visible)}
        pipeline = [{"$match": match}, {"$project": {field: 1}}, {"$unwind": f"${field}"},
                    {"$group": {"_id": f"${field}", "ids": {"$addToSet": "$_id"},
                                "n": {"$sum": 1}}},
                    {"$match": {"n": {"$gt": 1}}}, {"$limit": limit}]
        return list(self.contacts.aggregate(pipeline, allowDiskUse=True))

    def name_company_groups(self, visible, limit):
        pipeline = [{"$match": {"deleted_at": None, "sort_name": {"$nin": [None, ""]},
                                **visible_condition(visible)}},
                    {"$group": {"_id": {"n": "$sort_name", "c": "$company_id"},
                                "ids": {"$addToSet": "$_id"}, "n": {"$sum": 1}}},
                    {"$match": {"n": {"$gt": 1}}}, {"$limit": limit}]
        return list(self.contacts.aggregate(pipeline, allowDiskUse=True))

    def contacts_brief(self, ids):
        fields = {"first_name": 1, "last_name": 1, "emails": 1, "phones": 1, "company_id": 1,
                  "company_name": 1, "owner_id": 1, "created_at": 1}
        return {d["_id"]: d for d in find_in(self.contacts, "_id", ids, fields)}


def _numbered(errors):
    """Number each error within its row, so (row, n) is stable across replays."""
    seen = {}
    for error in errors:
        n = seen.get(error["row"], 0)
        seen[error["row"]] = n + 1
        yield n, error

