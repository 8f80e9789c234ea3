from contracts import notes as s
from gateway.calls import call
from gateway.routes import api

TAG = "notes"
WRITE_ERRORS = (400, 403, 404, 409, 413, 415, 422, 503, 504)


@api.route("/notes", "GET", "A record's notes: pinned first, then the newest (the caller must see the record)",
           TAG, query=s.NoteListQuery, response=s.NotePage, permission="notes:read")
def list_notes(body, params):
    return call("notes", "list_notes", params)


@api.route("/notes", "POST",
           "Write a note on a contact, company, deal or task (safe rich text; @mentions are told; "
           "a commitment gets a reminder task)", TAG, body=s.NoteIn, response=s.NoteOut,
           status=201, errors=WRITE_ERRORS, permission="notes:write")
def create_note(body, params):
    return call("notes", "create_note", body)


@api.route("/notes/{note_id}", "GET", "Get a note with its edit history", TAG,
           response=s.NoteOut, permission="notes:read")
def get_note(note_id, body, params):
    return call("notes", "get_note", note_id)


@api.route("/notes/{note_id}", "PATCH",
           "Edit one's note (the old body is kept in history), pin or unpin it, close its commitment",
           TAG, body=s.NotePatch, response=s.NoteOut, errors=WRITE_ERRORS,
           permission="notes:write")
def update_note(note_id, body, params):
    return call("notes", "update_note", note_id, body)


@api.route("/notes/{note_id}", "DELETE", "Delete a note (its author or an admin; kept, with deleted_at)",
           TAG, response=s.NoteOut, errors=(403, 404, 409, 503, 504), permission="notes:write")
def delete_note(note_id, body, params):
    return call("notes", "delete_note", note_id)


@api.route("/commitments", "GET",
           "Commitments made in notes, soonest due first: a contact's (contact_id) or a user's (owner_id, default the caller)",
           TAG, query=s.CommitmentListQuery, response=s.NotePage, permission="notes:read")
def list_commitments(body, params):
    return call("notes", "list_commitments", params)


@api.route("/notes/{note_id}/comments", "GET", "A note's comments, oldest first (threads by parent_id)",
           TAG, query=s.CommentListQuery, response=s.CommentPage, permission="notes:read")
def list_comments(note_id, body, params):
    return call("notes", "list_comments", note_id, params)


@api.route("/notes/{note_id}/comments", "POST", "Comment on a note, or answer a comment (parent_id)",
           TAG, body=s.CommentIn, response=s.CommentOut, status=201, errors=WRITE_ERRORS,
           permission="notes:write")
def create_comment(note_id, body, params):
    return call("notes", "create_comment", note_id, body)


@api.route("/notes/{note_id}/comments/{comment_id}", "PATCH",
           "Edit one's comment (the old body is kept in history)", TAG, body=s.CommentPatch,
           response=s.CommentOut, errors=WRITE_ERRORS, permission="notes:write")
def update_comment(note_id, comment_id, body, params):
    return call("notes", "update_comment", note_id, comment_id, body)


@api.route("/notes/{note_id}/comments/{comment_id}", "DELETE",
           "Delete a comment (its author or an admin; the thread keeps its place)", TAG,
           response=s.CommentOut, errors=(403, 404, 409, 503, 504), permission="notes:write")
def delete_comment(note_id, comment_id, body, params):
    return call("notes", "delete_comment", note_id, comment_id)
