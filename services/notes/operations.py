"""What the notes service does, apart from how it is called. A write is prepared first (the
record asked of its owning service, mentions checked: RPC before any write), then stored
with its events (`(result, events)`, run by the entrypoint through the outbox)."""
from crm_common.context import user_context
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.fields import with_every_key
from crm_common.ids import new_id
from crm_common.messaging.events import envelope
from crm_common.timeutil import parse_iso, to_iso, utcnow
from crm_common.validation import load
from contracts import notes as schemas
from services.notes.richtext import clean, excerpt, plain
from services.notes.store import PARKED, record_key

SERVICE = "notes"
# the owner of each kind of record and its RPC that answers it within the caller's visibility
OWNERS = {"contact": ("contacts", "get_contact"), "company": ("contacts", "get_company"),
          "deal": ("deals", "get_deal"), "task": ("tasks", "get_task")}

note_in = schemas.NoteIn()
note_patch = schemas.NotePatch()
note_out = schemas.NoteOut()
list_query = schemas.NoteListQuery()
commitment_query = schemas.CommitmentListQuery()
comment_in = schemas.CommentIn()
comment_patch = schemas.CommentPatch()
comment_out = schemas.CommentOut()
comment_query = schemas.CommentListQuery()


def _event(event_type, data):
    return envelope(SERVICE, event_type, data)


def _invalid(field, message, **details):
    return ValidationFailed("Invalid input", {"fields": {field: [message]}, **details})


def dump_note(doc):
    out = note_out.dump(doc)
    out["body"] = clean(doc.get("body"))  # cleaned again on the way out
    if doc.get("commitment"):
        out["commitment"]["reminder_key"] = f"commitment:{doc['_id']}"
    return with_every_key(note_out, out, doc["_id"])


def dump_comment(doc):
    out = comment_out.dump(doc)
    out["body"] = "" if doc.get("deleted_at") else clean(doc.get("body"))
    if doc.get("deleted_at"):
        out["history"] = []
    return with_every_key(comment_out, out, doc["_id"])


class Records:
    """Asks the services that own notes' records about them: "a note is visible to whoever
    sees its record", as the caller or as a mentioned user."""

    def __init__(self, acting):
        self.acting = acting  # crm_common.messaging.rpc.ActingRpc

    def get(self, record_type, record_id, context=None):
        """The record as its owning service answers it to the caller (or to `context`, a
        caller context of someone else): NotFound when it does not exist or is not visible."""
        service, method = OWNERS[record_type]
        return self.acting.call(service, method, record_id, context=context)


class Notes:
    def __init__(self, store, caller, acting):
        self.store = store
        self.caller = caller
        self.records = Records(acting)

    # who may do what
    def _is_admin(self):
        """An admin, or an integration's API key (acts for the whole company)."""
        return self.caller.role == "admin" or (self.caller.role is None
                                               and self.caller.user_id is None)

    def _record(self, record_type, record_id, field="record_id"):
        """The record as the caller sees it; 404 when it is unknown or not visible."""
        try:
            return self.records.get(record_type, record_id)
        except NotFound:
            raise NotFound(f"No such {record_type}", {"record_type": record_type,
                                                      field: record_id})

    def _visible_note(self, note_id):
        """The note and its record, if the caller sees the record (else 404)."""
        doc = self.store.get_note(note_id)
        if not doc:
            raise NotFound("Note not found", {"id": note_id})
        try:
            record = self.records.get(doc["record_type"], doc["record_id"])
        except NotFound:
            raise NotFound("Note not found", {"id": note_id})
        return doc, record

    def _check_mentions(self, mentions, record_type, record_id):
        """Every mentioned user exists, is active and sees the record (they are sent a link
        to it): else 422 naming them."""
        mentions = list(dict.fromkeys(mentions or []))
        if not mentions:
            return []
        users = self.store.get_users(mentions)
        unknown = [m for m in mentions if m not in users or users[m].get("active") is False]
        if unknown:
            raise _invalid("mentions", "Unknown or inactive user.", unknown=unknown)
        blind = []
        for user_id in mentions:
            user = users[user_id]
            if user.get("role") == "admin":
                continue
            context = user_context(
                {**user, "id": user_id},
                (self.store.team_member_ids(user_id, user.get("team"))
                 if user.get("role") == "manager" else []), self.caller.request_id)
            try:
                self.records.get(record_type, record_id, context=context)
            except NotFound:
                blind.append(user_id)
        if blind:
            raise _invalid("mentions", "This user cannot see the record.", invisible=blind)
        return mentions

    @staticmethod
    def _contact_of(record_type, record_id, record):
        if record_type == "contact":
            return record_id
        if record_type in ("deal", "task"):
            return (record or {}).get("contact_id")
        return None

    # notes
    def prepare_create(self, payload):
        data = load(note_in, payload)
        record = self._record(data["record_type"], data["record_id"])
        body = clean(data["body"])
        text = plain(body)
        if not text:
            raise _invalid("body", "Nothing left once cleaned of unsafe markup.")
        data["body"], data["text"] = body, text
        data["mentions"] = self._check_mentions(data.get("mentions"), data["record_type"],
                                                data["record_id"])
        data["contact_id"] = self._contact_of(data["record_type"], data["record_id"], record)
        if data.get("commitment"):
            if not self.caller.user_id:
                raise _invalid("commitment", "A commitment needs a signed-in author (its owner).")
            commitment = dict(data["commitment"])
            commitment["contact_id"] = commitment.get("contact_id") or data["contact_id"]
            if commitment["contact_id"] and commitment["contact_id"] != data["contact_id"]:
                try:
                    self.records.get("contact", commitment["contact_id"])
                except NotFound:
                    raise _invalid("commitment", "Unknown contact.",
                                   contact_id=commitment["contact_id"])
            data["commitment"] = commitment
        data["deal_id"] = data["record_id"] if data["record_type"] == "deal" else (
            (record or {}).get("deal_id") if data["record_type"] == "task" else None)
        return data

    def create(self, data):
        now = utcnow()
        note_id = new_id()
        doc = {"_id": note_id, "record_type": data["record_type"], "record_id": data["record_id"],
               "record_key": record_key(data["record_type"], data["record_id"]),
               "contact_id": data["contact_id"], "author_id": self.caller.user_id,
               "body": data["body"], "text": data["text"], "pinned": data["pinned"],
               "sort_key": self._sort_key(data["pinned"], now), "mentions": data["mentions"],
               "commitment": None, "comments_count": 0, "history": [], "created_at": now,
               "updated_at": now, "deleted_at": None, "deleted_by": None, "version": 1}
        events = []
        commitment = data.get("commitment")
        if commitment:
            doc["commitment"] = {**commitment, "status": "open", "owner_id": self.caller.user_id}
            doc.update(cm_owner=self.caller.user_id, cm_contact=commitment["contact_id"],
                       cm_status="open", cm_due=commitment["due_at"])
        self.store.insert_note(doc)
        result = dump_note(doc)
        events.append(_event("note_created", {
            **self._note_event(result), "summary": f"Note: {excerpt(result['text'], 120)}"}))
        if commitment:
            events.append(_event("commitment_made", {
                "note_id": note_id, "owner_id": self.caller.user_id,
                "text": commitment["text"], "to_whom": commitment.get("to_whom"),
                "due_at": to_iso(commitment["due_at"]), "contact_id": commitment["contact_id"],
                "deal_id": data.get("deal_id"), "reminder_key": f"commitment:{note_id}",
                "ref": {"type": "note", "id": note_id}}))
        events += self._mentioned(doc, data["mentions"], result["text"])
        return result, events

    def get(self, note_id):
        doc, _ = self._visible_note(note_id)
        return dump_note(doc)

    def list(self, params):
        q = load(list_query, params)
        self._record(q["record_type"], q["record_id"])
        docs, next_cursor = self.store.page_notes(record_key(q["record_type"], q["record_id"]),
                                                  q["limit"], q.get("cursor"))
        return {"items": [dump_note(d) for d in docs], "next_cursor": next_cursor}

    def prepare_update(self, note_id, payload):
        data = load(note_patch, payload, partial=True)
        doc, _ = self._visible_note(note_id)
        if doc.get("deleted_at"):
            raise Conflict("The note was deleted", {"id": note_id})
        if ("body" in data or "mentions" in data) and doc.get("author_id") != self.caller.user_id:
            raise Forbidden("Only its author edits a note", {"id": note_id})
        if "commitment" in data:
            if not doc.get("commitment"):
                raise _invalid("commitment", "This note holds no commitment.")
            owner = doc["commitment"].get("owner_id")
            if owner != self.caller.user_id and not self._is_admin():
                raise Forbidden("Only its owner or an admin closes a commitment", {"id": note_id})
        if "body" in data:
            data["body"] = clean(data["body"])
            data["text"] = plain(data["body"])
            if not data["text"]:
                raise _invalid("body", "Nothing left once cleaned of unsafe markup.")
        if "mentions" in data:
            data["mentions"] = self._check_mentions(data["mentions"], doc["record_type"],
                                                    doc["record_id"])
        return doc, data

    def update(self, prepared):
        doc, data = prepared
        now = utcnow()
        changes, push = {"updated_at": now}, None
        if "body" in data and data["body"] != doc["body"]:
            changes.update(body=data["body"], text=data["text"])
            push = {"history": {"body": doc["body"], "edited_at": now,
                                "edited_by": self.caller.user_id}}
        if "pinned" in data:
            changes["pinned"] = data["pinned"]
            changes["sort_key"] = self._sort_key(data["pinned"], doc["created_at"])
        new_mentions = []
        if "mentions" in data:
            new_mentions = [m for m in data["mentions"] if m not in (doc.get("mentions") or [])]
            changes["mentions"] = data["mentions"]
        if "commitment" in data:
            changes["commitment.status"] = data["commitment"]["status"]
            changes["cm_status"] = data["commitment"]["status"]
        updated = self.store.update_note(doc["_id"], doc["version"], changes, push)
        if not updated:
            raise Conflict("The note changed meanwhile; read it again", {"id": doc["_id"]})
        result = dump_note(updated)
        events = [_event("note_updated", {**self._note_event(result),
                                          "changed": sorted(data)})]
        events += self._mentioned(updated, new_mentions, result["text"])
        return result, events

    def prepare_delete(self, note_id):
        doc, _ = self._visible_note(note_id)
        if doc.get("deleted_at"):
            raise Conflict("The note was deleted", {"id": note_id})
        if doc.get("author_id") != self.caller.user_id and not self._is_admin():
            raise Forbidden("Only its author or an admin deletes a note", {"id": note_id})
        return doc

    def delete(self, doc):
        now = utcnow()
        changes = {"deleted_at": now, "deleted_by": self.caller.user_id, "updated_at": now,
                   "record_key": PARKED + doc["record_key"]}
        if (doc.get("commitment") or {}).get("status") == "open":
            changes.update({"commitment.status": "canceled", "cm_status": "canceled"})
        updated = self.store.update_note(doc["_id"], doc["version"], changes)
        if not updated:
            raise Conflict("The note changed meanwhile; read it again", {"id": doc["_id"]})
        result = dump_note(updated)
        return result, [_event("note_deleted", self._note_event(result))]

    def commitments(self, params):
        q = load(commitment_query, params)
        if q.get("contact_id"):
            self._record("contact", q["contact_id"], "contact_id")
            field, value = "cm_contact", q["contact_id"]
        else:
            owner = q.get("owner_id") or self.caller.user_id
            if not owner:
                raise _invalid("owner_id", "Name the owner (or a contact_id).")
            if not self.caller.may_assign(owner):
                raise Forbidden("You cannot see this user's commitments",
                                {"owner_id": owner})
            field, value = "cm_owner", owner
        docs, next_cursor = self.store.page_commitments(field, value, q["status"], q["limit"],
                                                        q.get("cursor"))
        return {"items": [dump_note(d) for d in docs], "next_cursor": next_cursor}

    # comments
    def prepare_comment(self, note_id, payload):
        data = load(comment_in, payload)
        doc, _ = self._visible_note(note_id)
        if doc.get("deleted_at"):
            raise Conflict("The note was deleted", {"id": note_id})
        if data.get("parent_id"):
            parent = self.store.get_comment(data["parent_id"])
            if not parent or parent["note_id"] != note_id:
                raise _invalid("parent_id", "No such comment on this note.")
        data["body"] = clean(data["body"])
        if not plain(data["body"]):
            raise _invalid("body", "Nothing left once cleaned of unsafe markup.")
        data["mentions"] = self._check_mentions(data.get("mentions"), doc["record_type"],
                                                doc["record_id"])
        return doc, data

    def comment(self, prepared):
        note, data = prepared
        now = utcnow()
        doc = {"_id": new_id(), "note_id": note["_id"], "parent_id": data.get("parent_id"),
               "author_id": self.caller.user_id, "body": data["body"],
               "mentions": data["mentions"], "history": [], "created_at": now,
               "updated_at": now, "deleted_at": None}
        self.store.insert_comment(doc)
        self.store.inc_comments(note["_id"])
        result = dump_comment(doc)
        events = [_event("comment_created", {
            "comment": result, "note_id": note["_id"], "contact_id": note.get("contact_id"),
            "actor_id": self.caller.user_id, "ref": {"type": "note", "id": note["_id"]}})]
        events += self._mentioned(note, data["mentions"], plain(data["body"]), doc["_id"])
        return result, events

    def comments(self, note_id, params):
        q = load(comment_query, params)
        self._visible_note(note_id)
        docs, next_cursor = self.store.page_comments(note_id, q["limit"], q.get("cursor"))
        return {"items": [dump_comment(d) for d in docs], "next_cursor": next_cursor}

    def _own_comment(self, note_id, comment_id, admin_too):
        self._visible_note(note_id)
        doc = self.store.get_comment(comment_id)
        if not doc or doc["note_id"] != note_id:
            raise NotFound("Comment not found", {"id": comment_id})
        if doc.get("deleted_at"):
            raise Conflict("The comment was deleted", {"id": comment_id})
        if doc.get("author_id") != self.caller.user_id and not (admin_too and self._is_admin()):
            raise Forbidden("Only its author" + (" or an admin" if admin_too else "")
                            + " may do this", {"id": comment_id})
        return doc

    def edit_comment(self, note_id, comment_id, payload):
        data = load(comment_patch, payload)
        doc = self._own_comment(note_id, comment_id, admin_too=False)
        body = clean(data["body"])
        if not plain(body):
            raise _invalid("body", "Nothing left once cleaned of unsafe markup.")
        now = utcnow()
        updated = self.store.update_comment(comment_id, {"body": body, "updated_at": now}, {
            "history": {"body": doc["body"], "edited_at": now, "edited_by": self.caller.user_id}})
        return dump_comment(updated)

    def delete_comment(self, note_id, comment_id):
        self._own_comment(note_id, comment_id, admin_too=True)
        now = utcnow()
        updated = self.store.update_comment(comment_id, {"deleted_at": now, "updated_at": now})
        return dump_comment(updated)

    # events of other services
    def on_user_upserted(self, event):
        user = event["data"]["user"]
        self.store.upsert_user({
            "_id": user["id"], "manager_id": user.get("manager_id"), "team": user.get("team"),
            "role": user.get("role"), "active": user.get("active", True) is not False,
            "name": user.get("name"), "synced_at": utcnow()}, parse_iso(event["occurred_at"]))

    # helpers
    @staticmethod
    def _sort_key(pinned, created_at):
        # fixed width (milliseconds, as MongoDB keeps them): the key sorts as the time does
        return f"{1 if pinned else 0}{created_at.strftime('%Y-%m-%dT%H:%M:%S.%f')[:23]}"

    def _note_event(self, result):
        return {"note": {k: result[k] for k in ("id", "record_type", "record_id", "author_id",
                                                "text")},
                "contact_id": result.get("contact_id"), "actor_id": self.caller.user_id,
                "ref": {"type": "note", "id": result["id"]}}

    def _mentioned(self, note, mentions, text, comment_id=None):
        mentions = [m for m in mentions if m != self.caller.user_id]
        if not mentions:
            return []
        return [_event("note_mentioned", {
            "mentioned_ids": mentions, "note_id": note["_id"], "comment_id": comment_id,
            "record_type": note["record_type"], "record_id": note["record_id"],
            "author_id": self.caller.user_id, "excerpt": excerpt(text, 200),
            "ref": {"type": note["record_type"], "id": note["record_id"]},
            "summary": f"You were mentioned: {excerpt(text, 100)}"})]
