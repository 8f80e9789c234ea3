"""Notes service entrypoints: thin; the work is in operations.py, storage in store.py.
Each write asks the record's owner and checks mentions first (RPC), then stores the write
and its events in one transaction."""
from crm_common.context import CallerContext
from crm_common.errors import EXPECTED
from crm_common.health import HealthEntrypoints
from crm_common.messaging.events import reliable_handler
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import ActingRpc, rpc
from crm_common.mongo import MongoStore
from crm_common.timeutil import utcnow
from services.notes.operations import Notes, dump_note
from services.notes.store import NotesStore


class NotesService(HealthEntrypoints):
    name = "notes"

    store = MongoStore(NotesStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    # the records' owners, asked as the caller or as a mentioned user
    acting = ActingRpc()

    @property
    def notes(self):
        return Notes(self.store, self.caller, self.acting)

    # notes
    @rpc(expected_exceptions=EXPECTED)
    def create_note(self, payload):
        notes = self.notes
        return self._announce(notes.create, notes.prepare_create(payload))

    @rpc(expected_exceptions=EXPECTED)
    def get_note(self, note_id):
        return self.notes.get(note_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_notes(self, params):
        return self.notes.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def update_note(self, note_id, payload):
        notes = self.notes
        return self._announce(notes.update, notes.prepare_update(note_id, payload))

    @rpc(expected_exceptions=EXPECTED)
    def delete_note(self, note_id):
        notes = self.notes
        return self._announce(notes.delete, notes.prepare_delete(note_id))

    @rpc(expected_exceptions=EXPECTED)
    def list_commitments(self, params):
        return self.notes.commitments(params)

    # comments
    @rpc(expected_exceptions=EXPECTED)
    def create_comment(self, note_id, payload):
        notes = self.notes
        return self._announce(notes.comment, notes.prepare_comment(note_id, payload))

    @rpc(expected_exceptions=EXPECTED)
    def list_comments(self, note_id, params):
        return self.notes.comments(note_id, params)

    @rpc(expected_exceptions=EXPECTED)
    def update_comment(self, note_id, comment_id, payload):
        return self.notes.edit_comment(note_id, comment_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_comment(self, note_id, comment_id):
        return self.notes.delete_comment(note_id, comment_id)

    @rpc(expected_exceptions=EXPECTED)
    def search_records(self, kind="note", ids=None, after=None, limit=500, since=None,
                       cursor=None, until=None):
        """For the search service: notes by id, changed since a time, or a page by id."""
        return self.store.search_records("notes", lambda docs: [dump_note(d) for d in docs],
                                         ids, after, limit, since, cursor, until)

    # other services' events
    @reliable_handler("contacts", "contact_merged")
    def on_contact_merged(self, event):
        """The merged contacts' notes and commitments now belong to the survivor."""
        data = event["data"]
        self.store.repoint_contact(data["merged_ids"], data["survivor_id"], utcnow())

    @reliable_handler("gateway", "user_upserted")
    def on_user_upserted(self, event):
        """The users' copy: who may be mentioned (active, role, team, manager)."""
        self.notes.on_user_upserted(event)
