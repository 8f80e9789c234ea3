"""The only code in the notes service that touches pymongo."""
from pymongo import ASCENDING, DESCENDING

from crm_common.cursors import page
from crm_common.mongo import BaseStore, find_in, set_if_newer, update_and_get

# A deleted note leaves its record's list: its `record_key` is parked under this prefix
# (one predicate on the list's index instead of a `deleted_at` condition beside it).
PARKED = "deleted:"


def record_key(record_type, record_id):
    return f"{record_type}:{record_id}"


class NotesStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.notes = db["notes"]
        self.comments = db["comments"]
        self.users = db["users"]

    def ensure_indexes(self):
        # a record's notes: pinned first, then newest (sort_key = pinned flag + created_at)
        self.notes.create_index([("record_key", ASCENDING), ("sort_key", DESCENDING),
                                 ("_id", DESCENDING)])
        # open commitments per owner and per contact, soonest due first
        for field in ("cm_owner", "cm_contact"):
            self.notes.create_index([(field, ASCENDING), ("cm_status", ASCENDING),
                                     ("cm_due", ASCENDING), ("_id", ASCENDING)], sparse=True)
        self.notes.create_index([("updated_at", ASCENDING), ("_id", ASCENDING)])
        self.notes.create_index("contact_id")  # repointed when contacts merge
        self.comments.create_index([("note_id", ASCENDING), ("created_at", ASCENDING),
                                    ("_id", ASCENDING)])
        self.users.create_index("team")
        self.users.create_index("manager_id")

    # notes
    def insert_note(self, doc):
        self.notes.insert_one(doc)

    def get_note(self, note_id):
        return self.notes.find_one({"_id": note_id})

    def update_note(self, note_id, version, changes, push=None):
        """Changes a note nobody changed since `version` was read; None when someone did."""
        update = {"$set": changes, "$inc": {"version": 1}}
        if push:
            update["$push"] = push
        return update_and_get(self.notes, {"_id": note_id, "version": version}, update)

    def inc_comments(self, note_id, by=1):
        self.notes.update_one({"_id": note_id}, {"$inc": {"comments_count": by}})

    def page_notes(self, key, limit, cursor):
        return page(self.notes, {"record_key": key}, "sort_key", DESCENDING, limit, cursor)

    def page_commitments(self, field, value, status, limit, cursor):
        """`field` is cm_owner or cm_contact; `value` one id or a list (a manager's team)."""
        condition = {"$in": list(value)} if isinstance(value, (list, tuple)) else value
        return page(self.notes, {field: condition, "cm_status": status}, "cm_due", ASCENDING,
                    limit, cursor)

    def repoint_contact(self, merged_ids, survivor_id, now):
        """Idempotent: the notes of merged contacts (on them, on their deals and tasks, their
        commitments) now name the survivor."""
        for merged_id in merged_ids:
            for key in (record_key("contact", merged_id),
                        PARKED + record_key("contact", merged_id)):
                self.notes.update_many({"record_key": key}, {"$set": {
                    "record_key": key.replace(merged_id, survivor_id), "record_id": survivor_id,
                    "updated_at": now}})
            self.notes.update_many({"contact_id": merged_id},
                                   {"$set": {"contact_id": survivor_id, "updated_at": now}})
            self.notes.update_many({"cm_contact": merged_id}, {"$set": {
                "cm_contact": survivor_id, "commitment.contact_id": survivor_id,
                "updated_at": now}})

    # comments
    def insert_comment(self, doc):
        self.comments.insert_one(doc)

    def get_comment(self, comment_id):
        return self.comments.find_one({"_id": comment_id})

    def update_comment(self, comment_id, changes, push=None):
        update = {"$set": changes}
        if push:
            update["$push"] = push
        return update_and_get(self.comments, {"_id": comment_id}, update)

    def page_comments(self, note_id, limit, cursor):
        return page(self.comments, {"note_id": note_id}, "created_at", ASCENDING, limit, cursor)

    # the copy of the gateway's users (mentions)
    def upsert_user(self, user, at):
        """The copy as of its announcement's time `at` (a later one stays: set_if_newer)."""
        set_if_newer(self.users, user["_id"], user, at)

    def get_users(self, ids):
        return {d["_id"]: d for d in find_in(self.users, "_id", ids)}

    def team_member_ids(self, user_id, team):
        """As the gateway computes a manager's team: who reports to them, plus their team."""
        ids = {d["_id"] for d in self.users.find({"manager_id": user_id}, {"_id": 1})}
        if team:
            ids |= {d["_id"] for d in self.users.find({"team": team}, {"_id": 1})}
        ids.discard(user_id)
        return sorted(ids)
