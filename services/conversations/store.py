"""The only code in the conversations service that touches pymongo.

Hot paths are single-predicate lookups on an index (a message's dedupe key, a Message-ID,
a conversation's key); documents known by `_id` are changed with update_and_get; claims
(a mailbox to sync, a wait to escalate) are a compare-and-set on `_id` plus the field
that changes, read first from a small index range; messages to send are claimed by a
range of their due time (claim_sends)."""
import re
import time

import gridfs
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from crm_common.cursors import page
from crm_common.mongo import BaseStore, find_in, in_chunks, update_and_get
from crm_common.timeutil import utcnow


class ConversationsStore(BaseStore):
    def __init__(self, db, settings):
        super().__init__(db, settings)
        self.mailboxes = db["mailboxes"]
        self.channels = db["channels"]
        self.conversations = db["conversations"]
        self.messages = db["messages"]
        self.lead_links = db["lead_links"]
        self.send_marks = db["send_marks"]
        self.templates = db["templates"]
        self._files = None
        self._settings_cache = {}  # (collection, key) -> (read at, value): see cached()

    def ensure_indexes(self):
        m = self.mailboxes
        m.create_index([("active", ASCENDING), ("next_sync_at", ASCENDING)])
        m.create_index([("created_at", ASCENDING), ("_id", ASCENDING)])
        m.create_index("owner_id")
        self.channels.create_index([("kind", ASCENDING)])
        self.channels.create_index([("route_id", ASCENDING)], sparse=True)
        self.channels.create_index([("created_at", ASCENDING), ("_id", ASCENDING)])
        c = self.conversations
        c.create_index("key", unique=True)
        if "contact_id_1" in c.index_information():
            # a client's conversations are listed by (contact_id, last_message_at, _id) below;
            # this one only made every write to a conversation rewrite one more entry
            c.drop_index("contact_id_1")
        c.create_index("lead_request_id", sparse=True)
        c.create_index([("last_message_at", DESCENDING), ("_id", DESCENDING)])
        for field in ("status", "assignee_id", "contact_id", "channels"):
            c.create_index([(field, ASCENDING), ("last_message_at", DESCENDING),
                            ("_id", DESCENDING)])
        c.create_index([("waiting", ASCENDING), ("last_message_at", DESCENDING),
                        ("_id", DESCENDING)])
        c.create_index("escalate_at", sparse=True)
        g = self.messages
        g.create_index("dedupe_key", unique=True)
        g.create_index("message_id", sparse=True)
        g.create_index([("conversation_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)])
        g.create_index([("thread_key", ASCENDING), ("at", DESCENDING)], sparse=True)
        g.create_index("send_due_at", sparse=True)
        g.create_index([("updated_at", ASCENDING), ("_id", ASCENDING)])  # search_records
        self.files_meta.create_index("metadata.message_id")
        self.lead_links.create_index("conversation_id")
        # a live template's name, case folded (unset when it is deleted)
        self.templates.create_index("name_key", unique=True, sparse=True)
        self.templates.create_index([("name_key", ASCENDING), ("_id", ASCENDING)], sparse=True)

    # message templates (soft deleted: `deleted_at` set, `name_key` unset)
    def insert_template(self, doc):
        """The doc, or None when a live template has its name."""
        try:
            self.templates.insert_one(doc)
        except DuplicateKeyError:
            return None
        return doc

    def live_template(self, template_id):
        return self.templates.find_one({"_id": template_id, "deleted_at": None})

    def update_template(self, template_id, sets):
        """The changed doc; None when the new name is a live template's (nothing changed)."""
        try:
            return update_and_get(self.templates, {"_id": template_id, "deleted_at": None},
                                  {"$set": sets})
        except DuplicateKeyError:
            return None

    def delete_template(self, template_id, now):
        return update_and_get(self.templates, {"_id": template_id, "deleted_at": None},
                              {"$set": {"deleted_at": now, "updated_at": now},
                               "$unset": {"name_key": ""}})

    def template_page(self, channels, name_part, limit, cursor):
        """Live templates by name (of these channels when given; names containing
        `name_part`, case folded)."""
        query = {"name_key": {"$exists": True}}
        if channels:
            query["channel"] = {"$in": list(channels)}
        if name_part:
            query["name_key"] = {"$regex": re.escape(name_part)}
        return page(self.templates, query, "name_key", ASCENDING, limit, cursor)

    # attachments (GridFS)
    @property
    def files(self):
        if self._files is None:
            self._files = gridfs.GridFS(self.db.raw if hasattr(self.db, "raw") else self.db,
                                        collection="attachments")
        return self._files

    @property
    def files_meta(self):
        return self.db["attachments.files"]

    def put_attachment(self, file_id, data, meta):
        self.files.put(data, _id=file_id, filename=meta["filename"],
                       content_type=meta["content_type"], metadata=meta)

    def get_attachment(self, file_id):
        try:
            grid_out = self.files.get(file_id)
        except gridfs.errors.NoFile:
            return None
        return grid_out.read(), grid_out.content_type, grid_out.filename

    # mailboxes
    def insert(self, collection, doc):
        getattr(self, collection).insert_one(doc)
        self._settings_changed(collection)
        return doc

    def get(self, collection, doc_id):
        return getattr(self, collection).find_one({"_id": doc_id})

    def update(self, collection, doc_id, sets, unset=None, condition=None):
        update = {"$set": sets}
        if unset:
            update["$unset"] = {k: "" for k in unset}
        try:
            return update_and_get(getattr(self, collection),
                                  {"_id": doc_id, **(condition or {})}, update)
        finally:
            self._settings_changed(collection)

    def delete(self, collection, doc_id):
        try:
            return getattr(self, collection).delete_one({"_id": doc_id}).deleted_count == 1
        finally:
            self._settings_changed(collection)

    # what a queued message is addressed from, read at most every SETTINGS_TTL_S per
    # process (a read per message was a database command per message sent); changes made
    # through this process are seen at once, another replica's within the TTL (the sender
    # reads the mailbox or channel again before it sends)
    SETTINGS_TTL_S = 2.0

    def cached(self, collection, key, read):
        found = self._settings_cache.get((collection, key))
        now = time.monotonic()
        if found is None or now - found[0] > self.SETTINGS_TTL_S:
            found = (now, read())
            self._settings_cache[(collection, key)] = found
        return found[1]

    def _settings_changed(self, collection):
        if collection in ("mailboxes", "channels"):
            self._settings_cache.clear()

    def mailbox_cached(self, mailbox_id):
        return self.cached("mailboxes", mailbox_id, lambda: self.get("mailboxes", mailbox_id))

    def channels_of_cached(self, kind):
        return self.cached("channels", kind, lambda: self.channels_of(kind))

    def mailboxes_of_cached(self, owner_id):
        """A person's mailboxes (a first mail to a client, as a campaign's every one, is
        sent from its sender's, else its owner's, else a shared one: up to three finds)."""
        return self.cached("mailboxes", ("owner", owner_id), lambda: self.mailboxes_of(owner_id))

    def shared_mailboxes_cached(self):
        return self.cached("mailboxes", "shared", self.shared_mailboxes)

    def page(self, collection, query, sort_field, direction, limit, cursor):
        return page(getattr(self, collection), query, sort_field, direction, limit, cursor)

    def channels_of(self, kind):
        return list(self.channels.find({"kind": kind}).sort("created_at", ASCENDING))

    def telegram_channel_of_route(self, route_id):
        return self.channels.find_one({"route_id": route_id, "kind": "telegram"})

    def shared_mailboxes(self):
        return [m for m in self.mailboxes.find({"active": True}) if m.get("shared")]

    def mailboxes_of(self, owner_id):
        return [m for m in self.mailboxes.find({"owner_id": owner_id}) if m.get("active")]

    def due_mailboxes(self, now, limit):
        return list(self.mailboxes.find({"active": True, "next_sync_at": {"$lte": now}},
                                        {"_id": 1, "lease_until": 1}).limit(limit))

    def claim_mailbox(self, mailbox_id, holder, now, lease_until):
        """True for exactly one claimer: free, or its lease ran out."""
        doc = self.mailboxes.find_one({"_id": mailbox_id}, {"lease_until": 1, "holder": 1})
        if doc is None or (doc.get("lease_until") and doc["lease_until"] > now):
            return False
        return self.mailboxes.update_one(
            {"_id": mailbox_id, "lease_until": doc.get("lease_until")},
            {"$set": {"lease_until": lease_until, "holder": holder}}).modified_count == 1

    def renew_mailbox(self, mailbox_id, holder, lease_until, sets=None):
        return self.mailboxes.update_one({"_id": mailbox_id, "holder": holder},
                                         {"$set": {"lease_until": lease_until, **(sets or {})}}
                                         ).modified_count == 1

    def release_mailbox(self, mailbox_id, holder, sets, inc=None):
        update = {"$set": {**sets, "lease_until": None, "holder": None}}
        if inc:
            update["$inc"] = inc
        self.mailboxes.update_one({"_id": mailbox_id, "holder": holder}, update)

    def mailbox_progress(self, mailbox_id, uidvalidity, last_uid, stored):
        """The mailbox read up to `last_uid` (in the batch's transaction)."""
        return update_and_get(self.mailboxes, {"_id": mailbox_id}, {
            "$set": {"uidvalidity": uidvalidity, "last_uid": last_uid},
            "$inc": {"synced": stored}})

    # conversations
    def conversations_by(self, field, values):
        """{value: conversation} by `key` or `_id`, lists of 50 (find_in)."""
        return {d[field]: d for d in find_in(self.conversations, field, values)}

    def conversations_received(self, changes, channel):
        """Conversations that received messages on `channel`, in one bulk write:
        [(conversation id, fields set, latest message's time)]."""
        if changes:
            self.conversations.bulk_write([UpdateOne({"_id": cid}, {
                "$set": sets, "$max": {"last_message_at": at}, "$addToSet": {"channels": channel}})
                for cid, sets, at in changes], ordered=False)

    def conversation_by_key(self, key):
        return self.conversations.find_one({"key": key})

    def conversation_by_contact(self, contact_id):
        return self.conversations.find_one({"key": f"contact:{contact_id}"})

    def conversations_of_request(self, request_id):
        return list(self.conversations.find({"lead_request_id": request_id}))

    def insert_conversation_if_new(self, doc):
        """(the conversation with doc's key, created?); an upsert, never a duplicate key
        error (it may run inside a transaction)."""
        result = self.conversations.update_one({"key": doc["key"]}, {"$setOnInsert": doc},
                                               upsert=True)
        if result.upserted_id is not None:
            return doc, True
        return self.conversations.find_one({"key": doc["key"]}), False

    @staticmethod
    def visible_to(person_ids):
        """Conversations assigned to or owned by these people, or nobody's at all."""
        return {"$or": [{"assignee_id": {"$in": person_ids}}, {"owner_id": {"$in": person_ids}},
                        {"assignee_id": None, "owner_id": None}]}

    def touch_conversation(self, conversation_id, sets, unset=None, maxs=None, add=None,
                           add_all=None, read_back=True):
        update = {"$set": sets}
        if add_all:
            add = {k: {"$each": list(v)} for k, v in add_all.items()}
        if unset:
            update["$unset"] = {k: "" for k in unset}
        if maxs:
            update["$max"] = maxs
        if add:
            update["$addToSet"] = add
        if not read_back:
            self.conversations.update_one({"_id": conversation_id}, update)
            return None
        return update_and_get(self.conversations, {"_id": conversation_id}, update)

    def due_escalations(self, now, limit=50):
        return list(self.conversations.find({"escalate_at": {"$lte": now}}).limit(limit))

    def claim_escalation(self, conversation_id, escalate_at, sets):
        """Once per wait: only the claimer that still sees this escalate_at wins."""
        return self.conversations.update_one(
            {"_id": conversation_id, "escalate_at": escalate_at},
            {"$set": sets, "$unset": {"escalate_at": ""}}).modified_count == 1

    def save_lead_link(self, request_id, link):
        self.lead_links.update_one({"_id": request_id}, {"$set": link}, upsert=True)

    def note_lead_waiting(self, request_id, conversation_id):
        self.lead_links.update_one({"_id": request_id},
                                   {"$set": {"conversation_id": conversation_id}}, upsert=True)
        return self.lead_links.find_one({"_id": request_id})

    # messages
    def insert_message_if_new(self, doc):
        result = self.messages.update_one({"dedupe_key": doc["dedupe_key"]},
                                          {"$setOnInsert": doc}, upsert=True)
        if result.upserted_id is not None:
            return doc, True
        return self.messages.find_one({"dedupe_key": doc["dedupe_key"]}), False

    def queue_message(self, doc):
        """A message to send (never inside a transaction) -> (the message with doc's dedupe
        key, created?): an insert, cheaper than an upsert; the same key stored meanwhile
        (a call made again) answers the stored one."""
        try:
            self.messages.insert_one(doc)
            return doc, True
        except DuplicateKeyError:
            return self.messages.find_one({"dedupe_key": doc["dedupe_key"]}), False

    def stored_dedupe_keys(self, keys):
        return {d["dedupe_key"] for d in find_in(self.messages, "dedupe_key", keys,
                                                 {"dedupe_key": 1})}

    def insert_messages(self, docs):
        """New messages (their dedupe keys checked in the same transaction): one insert;
        a key stored meanwhile aborts the transaction, which runs again."""
        if docs:
            self.messages.insert_many(docs, ordered=False)

    def thread_heads(self, thread_keys):
        """{thread key: thread id of its latest message}: one indexed read of the latest
        per key (reading every message of the keys made a long sync quadratic: a batch
        late in a 10,000-message mailbox read thousands of its predecessors)."""
        heads = {}
        for key in thread_keys:
            for doc in self.messages.find({"thread_key": key}, {"thread_id": 1}).sort(
                    "at", DESCENDING).limit(1):
                heads[key] = doc.get("thread_id")
        return heads

    def message_by_dedupe(self, key):
        return self.messages.find_one({"dedupe_key": key})

    def messages_by_ids(self, message_ids, projection=None):
        return list(find_in(self.messages, "message_id", message_ids, projection))

    def latest_of_thread_key(self, thread_key):
        return self.messages.find_one({"thread_key": thread_key}, sort=[("at", DESCENDING)])

    def repoint_messages(self, conversation_id, to_id, sets):
        self.messages.update_many({"conversation_id": conversation_id},
                                  {"$set": {"conversation_id": to_id, "updated_at": utcnow(),
                                            **sets}})

    def claim_sends(self, now, lease_until, token, limit):
        """Due messages claimed with a lease (of two senders one gets each) -> the claimed
        messages. Every step is one range of the `send_due_at` index: the first `limit`
        due ones are read, the range up to the latest of them is moved to the lease in one
        update (a compare-and-set on their due time), and the claimed ones are read back by
        their lease. (A condition on `_id` plus another field is a collection scan on
        SecantusDB, growing with every message stored.)"""
        due = [d["send_due_at"] for d in self.messages.find(
            {"send_due_at": {"$lte": now}}, {"send_due_at": 1}).limit(limit)]
        if not due:
            return []
        self.messages.update_many(
            {"send_due_at": {"$lte": max(due)}},
            {"$set": {"send_due_at": lease_until, "status": "sending", "holder": token},
             "$inc": {"attempts": 1}})
        return self.with_marks([d for d in self.messages.find({"send_due_at": lease_until})
                                if d.get("holder") == token])

    def mark_sent(self, sent, now):
        """[(message id, external id)] sent: one bulk write."""
        self.messages.bulk_write([UpdateOne({"_id": message_id}, {
            "$set": {"status": "sent", "sent_at": now, "error": None, "external_id": external,
                     "updated_at": now},
            "$unset": {"send_due_at": "", "holder": ""}}) for message_id, external in sent],
            ordered=False)

    def conversations_followed(self, changes):
        """[(conversation id, change)] (sender.followed: fields set and unset, channels
        added, a later last_message_at) in one bulk write."""
        writes = []
        for cid, change in changes:
            update = {"$set": change["sets"]}
            if change["last_message_at"]:  # a message received meanwhile keeps its later time
                update["$max"] = {"last_message_at": change["last_message_at"]}
            if change["unset"]:
                update["$unset"] = {k: "" for k in change["unset"]}
            if change["channels"]:
                update["$addToSet"] = {"channels": {"$each": change["channels"]}}
            writes.append(UpdateOne({"_id": cid}, update))
        if writes:
            self.conversations.bulk_write(writes, ordered=False)

    def message_update(self, message_id, sets, unset=None, read_back=True):
        update = {"$set": {**sets, "updated_at": utcnow()}}
        if unset:
            update["$unset"] = {k: "" for k in unset}
        if not read_back:
            self.messages.update_one({"_id": message_id}, update)
            return None
        return update_and_get(self.messages, {"_id": message_id}, update)

    def mark_message(self, message_id, sets, first=False):
        """A sender's mark (`smtp_data_at`...) of a message, in `send_marks`: a document of
        its own with no index but `_id` costs a third of a write to the message, whose
        every index entry a write rewrites. `first`: the attempt's first mark, inserted
        (an upsert is a read and an insert on SecantusDB); one kept from an earlier attempt
        is updated."""
        self.mark_messages([(message_id, sets, first)])

    def mark_messages(self, marks):
        """Marks of several messages (a sender's lanes at once: sender.Sender.mark), the
        first ones in one insert, the others in one update command; a first one whose
        message kept a mark from an earlier attempt is updated after."""
        again = [(mid, sets) for mid, sets, first in marks if not first]
        firsts = [(mid, sets) for mid, sets, first in marks if first]
        if firsts:
            try:
                self.send_marks.insert_many([{"_id": mid, **sets} for mid, sets in firsts],
                                            ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors") or []
                if any(e.get("code") != 11000 for e in errors):
                    raise
                again += [firsts[e["index"]] for e in errors]
        if again:
            self.send_marks.bulk_write([UpdateOne({"_id": mid}, {"$set": sets}, upsert=True)
                                        for mid, sets in again], ordered=False)

    def with_marks(self, docs):
        """Messages claimed again (by a sender taking over, or a retry) with their marks."""
        again = [d["_id"] for d in docs if d.get("attempts", 1) > 1]
        marks = {m["_id"]: m for m in find_in(self.send_marks, "_id", again)} if again else {}
        for doc in docs:
            doc.update({k: v for k, v in marks.get(doc["_id"], {}).items() if k != "_id"})
        return docs

    def forget_marks(self, message_ids):
        for chunk in in_chunks(message_ids):
            self.send_marks.delete_many({"_id": {"$in": chunk}})
