"""The notes API, one source: notes and threaded comments on contacts, companies, deals and
tasks, @mentions, commitments. The service validates with these, the gateway validates the
same way before calling and generates the OpenAPI document from them."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from contracts.events import (EventData, IsoTime, Object, Ref, actor_field, ref_field,
                             summary_field)
from crm_common.fields import PageOf, PageQuery, UtcDateTime

RECORD_TYPES = ("contact", "company", "deal", "task")
COMMITMENT_STATUSES = ("open", "kept", "broken", "canceled")
MAX_BODY = 20000
MAX_MENTIONS = 20
ID = validate.Length(1, 40)


def _mentions():
    return fields.List(fields.String(validate=ID), validate=validate.Length(max=MAX_MENTIONS),
                       metadata={"description": "user ids to tell (in-app and their channels); "
                                                "each must be an active user who can see the record"})


def _body(required):
    return fields.String(required=required, validate=validate.Length(1, MAX_BODY), metadata={
        "description": "rich text: a safe HTML subset (p, br, b, strong, i, em, u, s, ul, ol, "
                       "li, blockquote, code, pre, a href http/https/mailto); anything else "
                       "(scripts, styles, event handlers, images) is removed on input and output"})


class CommitmentIn(Schema):
    """An agreement made to the client: a reminder task for the note's author is created."""
    text = fields.String(required=True, validate=validate.Length(1, 500),
                         metadata={"description": "what was promised"})
    to_whom = fields.String(allow_none=True, validate=validate.Length(max=200),
                            metadata={"description": "the person it was promised to"})
    contact_id = fields.String(allow_none=True, validate=ID, metadata={
        "description": "the contact it was promised to (default: the note's contact)"})
    due_at = UtcDateTime(required=True, metadata={"description": "by when it must be kept"})


class CommitmentPatch(Schema):
    status = fields.String(required=True, validate=validate.OneOf(COMMITMENT_STATUSES))


class CommitmentOut(Schema):
    text = fields.String()
    to_whom = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    due_at = UtcDateTime()
    status = fields.String(metadata={"description": " | ".join(COMMITMENT_STATUSES)})
    owner_id = fields.String(allow_none=True, metadata={"description": "who must keep it"})
    reminder_key = fields.String(metadata={
        "description": "the reminder task's source key in the tasks service"})


class NoteIn(Schema):
    # record_id names an existing record (a created contact's id replaces it: the links)
    OPENAPI_EXAMPLES = ({"record_type": "contact", "record_id": "6b15947da1b615f0043a58db",
                         "body": "Called: sending the quote on Monday.", "pinned": True},)
    record_type = fields.String(required=True, validate=validate.OneOf(RECORD_TYPES))
    record_id = fields.String(required=True, validate=ID)
    body = _body(True)
    pinned = fields.Boolean(load_default=False)
    mentions = _mentions()
    commitment = fields.Nested(CommitmentIn, allow_none=True)


class NotePatch(Schema):
    body = _body(False)
    pinned = fields.Boolean()
    mentions = _mentions()
    commitment = fields.Nested(CommitmentPatch, metadata={
        "description": "close the commitment: kept, broken or canceled"})

    @validates_schema
    def something(self, data, **kwargs):
        if not data:
            raise ValidationError("Nothing to change.", "_schema")


class Revision(Schema):
    body = fields.String()
    edited_at = UtcDateTime()
    edited_by = fields.String(allow_none=True)


class NoteOut(Schema):
    id = fields.String()
    record_type = fields.String()
    record_id = fields.String()
    contact_id = fields.String(allow_none=True, metadata={
        "description": "the contact whose timeline shows it (the record's contact)"})
    author_id = fields.String(allow_none=True)
    body = fields.String()
    text = fields.String(metadata={"description": "the body as plain text"})
    pinned = fields.Boolean()
    mentions = fields.List(fields.String())
    commitment = fields.Nested(CommitmentOut, allow_none=True)
    comments_count = fields.Integer()
    history = fields.List(fields.Nested(Revision), metadata={
        "description": "earlier versions of the body, oldest first"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    deleted_at = UtcDateTime(allow_none=True)
    deleted_by = fields.String(allow_none=True)


class NoteListQuery(PageQuery):
    record_type = fields.String(required=True, validate=validate.OneOf(RECORD_TYPES))
    record_id = fields.String(required=True, validate=ID)


class NotePage(PageOf):
    items = fields.List(fields.Nested(NoteOut), metadata={
        "description": "pinned notes first, then the newest first"})


class CommitmentListQuery(PageQuery):
    contact_id = fields.String(validate=ID)
    owner_id = fields.String(validate=ID, metadata={"description": "default: the caller"})
    status = fields.String(load_default="open", validate=validate.OneOf(COMMITMENT_STATUSES))


class CommentIn(Schema):
    body = _body(True)
    parent_id = fields.String(allow_none=True, validate=ID, metadata={
        "description": "the comment this one answers (threads)"})
    mentions = _mentions()


class CommentPatch(Schema):
    body = _body(True)


class CommentOut(Schema):
    id = fields.String()
    note_id = fields.String()
    parent_id = fields.String(allow_none=True)
    author_id = fields.String(allow_none=True)
    body = fields.String()
    mentions = fields.List(fields.String())
    history = fields.List(fields.Nested(Revision))
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    deleted_at = UtcDateTime(allow_none=True)


class CommentListQuery(PageQuery):
    pass


class CommentPage(PageOf):
    items = fields.List(fields.Nested(CommentOut), metadata={
        "description": "oldest first; a reply names its parent_id"})


# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------

class NoteCopy(EventData):
    """The note as the API returns it (NoteOut)."""
    id = fields.String(required=True)
    record_type = fields.String(metadata={"description": " | ".join(RECORD_TYPES)})
    record_id = fields.String()
    author_id = fields.String(allow_none=True)
    text = fields.String()


class NoteEvent(EventData):
    note = Object(NoteCopy, required=True)
    contact_id = fields.String(allow_none=True, metadata={
        "description": "the contact whose timeline shows it"})
    actor_id = actor_field()
    ref = ref_field("note")


class NoteCreated(NoteEvent):
    """A note was written on a record."""
    summary = summary_field()


class NoteUpdated(NoteEvent):
    """A note's body, pin or commitment changed."""
    changed = fields.List(fields.String())


class NoteDeleted(NoteEvent):
    """A note was deleted (kept, with deleted_at)."""


class CommentCopy(EventData):
    """The comment as the API returns it (CommentOut)."""
    id = fields.String(required=True)
    note_id = fields.String()
    parent_id = fields.String(allow_none=True)
    author_id = fields.String(allow_none=True)
    created_at = IsoTime()


class CommentCreated(EventData):
    """A comment was written on a note."""
    comment = Object(CommentCopy, required=True)
    note_id = fields.String(required=True)
    contact_id = fields.String(allow_none=True)
    actor_id = actor_field()
    ref = ref_field("note")


class NoteMentioned(EventData):
    """Users were @mentioned in a note or a comment (each is told, with a link to the
    record)."""
    mentioned_ids = fields.List(fields.String(), required=True)
    note_id = fields.String(required=True)
    comment_id = fields.String(allow_none=True)
    record_type = fields.String()
    record_id = fields.String()
    author_id = fields.String(allow_none=True)
    excerpt = fields.String(metadata={"description": "the start of the text, plain"})
    ref = Object(Ref, metadata={
        "description": 'the record the note is on: {"type": record_type, "id": record_id}'})
    summary = summary_field()


class CommitmentMade(EventData):
    """A note recorded a commitment: the tasks service creates a reminder task for its
    owner (source key `reminder_key`)."""
    note_id = fields.String(required=True)
    owner_id = fields.String(required=True, allow_none=True)
    text = fields.String(required=True)
    to_whom = fields.String(allow_none=True)
    due_at = IsoTime(required=True)
    contact_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True)
    reminder_key = fields.String(required=True)
    ref = ref_field("note")


EVENTS = {
    "note_created": NoteCreated, "note_updated": NoteUpdated, "note_deleted": NoteDeleted,
    "comment_created": CommentCreated, "note_mentioned": NoteMentioned,
    "commitment_made": CommitmentMade,
}
