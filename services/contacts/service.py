"""Contacts service entrypoints: thin; the work is in operations.py, storage in store.py."""
import logging

from nameko.timer import timer

from crm_common.config import get_settings
from crm_common.custom_fields import CustomFieldEntrypoints
from crm_common.context import CallerContext
from crm_common.errors import EXPECTED
from crm_common.health import HealthEntrypoints
from crm_common.ids import new_id
from crm_common.messaging.events import reliable_handler
from crm_common.mongo import MongoStore
from crm_common.messaging.outbox import OutboxDispatcher
from crm_common.messaging.rpc import ServiceRpc, rpc
from crm_common.timeutil import parse_iso, utcnow
from services.contacts.dependencies import (CapturePool, ExportSessions, TimelineIntake,
                                            job_timer, stopping)
from services.contacts.operations import Contacts, dump_company, dump_contact, foreign_entry
from services.contacts.store import ContactsStore
from services.contacts.import_jobs import Imports
from services.contacts.store.imports import ImportStore
from services.contacts.inbound import Inbound
from services.contacts.store.inbound import InboundStore
from services.contacts.merge import Merges
from services.contacts.timeline_events import GATHERED, TIMELINE_EVENTS


log = logging.getLogger(__name__)
SETTINGS = get_settings().contacts


def _timeline_handler(source, event_type):
    if (source, event_type) in GATHERED:
        @reliable_handler(source, event_type)
        def handle(self, event):
            """On the timeline of the contact it names, with the events handled at the
            same moment (timeline_events.GATHERED): acked once stored."""
            self.timeline_intake.submit(foreign_entry(event),
                                        self.contacts.record_foreign_events)
    else:
        @reliable_handler(source, event_type)
        def handle(self, event):
            """On the timeline of the contact it names (timeline_events.py)."""
            self.contacts.record_foreign_event(event)

    handle.__name__ = f"on_{source}_{event_type}"
    return handle


class ContactsService(HealthEntrypoints, CustomFieldEntrypoints):
    name = "contacts"

    store = MongoStore(ContactsStore)
    caller = CallerContext()
    dispatch = OutboxDispatcher()
    timeline_intake = TimelineIntake()

    @property
    def contacts(self):
        return Contacts(self.store, self.caller, self.sales_rpc.product_buyers)

    @rpc(expected_exceptions=EXPECTED)
    def create_contact(self, payload, force=False):
        contact = self._announce(self.contacts.create, payload, force)
        log.info("contact %s created", contact["id"])
        return contact

    @rpc(expected_exceptions=EXPECTED)
    def get_contact(self, contact_id, include_deleted=False):
        return self.contacts.get(contact_id, include_deleted)

    @rpc(expected_exceptions=EXPECTED)
    def update_contact(self, contact_id, payload):
        return self._announce(self.contacts.update, contact_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_contact(self, contact_id):
        return self._announce(self.contacts.delete, contact_id)

    @rpc(expected_exceptions=EXPECTED)
    def restore_contact(self, contact_id):
        return self._announce(self.contacts.restore, contact_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_contacts(self, params):
        return self.contacts.list(params)

    export_sessions = ExportSessions()

    @rpc(expected_exceptions=EXPECTED)
    def export_page(self, params, token=None, limit=500):
        """The export's next page: one sorted cursor per export (see Contacts.export_page)."""
        return self.contacts.export_page(params, token, self.export_sessions,
                                         max(1, min(int(limit), 5000)))

    @rpc(expected_exceptions=EXPECTED)
    def export_ids(self, params, token=None, limit=10000):
        """The ids of what the export's filters match, in pages of up to 50,000 (a
        campaign's recipients), on the export's cursor: `{"ids": [...], "next_cursor"}`."""
        return self.contacts.export_page(params, token, self.export_sessions,
                                         max(1, min(int(limit), 50000)), ids_only=True)

    @rpc(expected_exceptions=EXPECTED)
    def search_records(self, kind, ids=None, after=None, limit=500, since=None, cursor=None,
                       until=None):
        """For the search service: contacts or companies by id, a page by id, or those
        changed since a time (imports, merges and renames announce no event per contact)."""
        collection, dump = (("companies", dump_company) if kind == "company"
                            else ("contacts", dump_contact))
        return self.store.search_records(collection, lambda docs: [dump(d) for d in docs],
                                         ids, after, limit, since, cursor, until)

    @rpc(expected_exceptions=EXPECTED)
    def lookup(self, params):
        return self.contacts.lookup(params)

    @rpc(expected_exceptions=EXPECTED)
    def lookup_emails(self, emails):
        return self.contacts.lookup_emails(emails)

    @rpc(expected_exceptions=EXPECTED)
    def explain_lookup(self, params):
        return self.contacts.explain_lookup(params)

    @rpc(expected_exceptions=EXPECTED)
    def explain_list(self, params):
        return self.contacts.explain_list(params)

    @rpc(expected_exceptions=EXPECTED)
    def birthdays(self, month_day, cursor=None):
        """For the notifications service's daily birthday list."""
        return self.contacts.birthdays(month_day, cursor)

    @rpc(expected_exceptions=EXPECTED)
    def timeline(self, contact_id, params):
        return self.contacts.timeline(contact_id, params)

    @rpc(expected_exceptions=EXPECTED)
    def create_company(self, payload):
        return self._announce(self.contacts.create_company, payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_company(self, company_id):
        return self.contacts.get_company(company_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_company(self, company_id, payload):
        return self._announce(self.contacts.update_company, company_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_company(self, company_id):
        return self._announce(self.contacts.delete_company, company_id)

    @rpc(expected_exceptions=EXPECTED)
    def restore_company(self, company_id):
        return self._announce(self.contacts.restore_company, company_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_companies(self, params):
        return self.contacts.list_companies(params)

    # typed custom fields and the minimal data set (crm_common.custom_fields)
    CUSTOM_ENTITIES = ("contact", "company")

    @property
    def custom_index(self):
        return self.store.index_custom_value

    def completeness_source(self):
        return self.contacts.completeness_records, "owner_id"

    # imports, duplicates and merge (docs/import.md)
    import_store = MongoStore(ImportStore)
    runner_id = new_id()  # this process, as the holder of a job's lease

    @property
    def imports(self):
        return Imports(self.import_store, self.caller, self.store.settings)

    @rpc(expected_exceptions=EXPECTED)
    def start_import(self, payload):
        return self.imports.start(payload, SETTINGS.import_max_bytes)

    @rpc(expected_exceptions=EXPECTED)
    def get_import(self, import_id):
        return self.imports.get(import_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_imports(self, params):
        return self.imports.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def import_errors(self, import_id, params):
        return self.imports.errors(import_id, params)

    @rpc(expected_exceptions=EXPECTED)
    def undo_import(self, import_id):
        return self.imports.request_undo(import_id)

    @job_timer(interval=SETTINGS.import_poll_seconds)
    def run_imports(self):
        self.imports.run_all(self.runner_id, SETTINGS.import_lease_seconds, SETTINGS.import_batch,
                             stopping, lambda event: self.dispatch(event["type"], event))

    @rpc(expected_exceptions=EXPECTED)
    def find_duplicates(self, params):
        return Merges(self.store, self.import_store, self.caller).duplicates(params)

    @rpc(expected_exceptions=EXPECTED)
    def merge_contacts(self, survivor_id, payload):
        return self._announce(Merges(self.store, self.import_store, self.caller).merge,
                              survivor_id, payload)

    # inbound requests: web forms, messages, Telegram updates (docs/leads.md)
    inbound_store = MongoStore(InboundStore)
    deals_rpc = ServiceRpc("deals")
    sales_rpc = ServiceRpc("sales")
    captures = CapturePool(8)

    @property
    def inbound(self):
        return Inbound(self.inbound_store, self.store, self.import_store, self.caller,
                       self.deals_rpc)

    @rpc(expected_exceptions=EXPECTED)
    def create_form(self, payload):
        return self.inbound.create_form(payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_form(self, form_id):
        return self.inbound.get_form(form_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_form(self, form_id, payload):
        return self.inbound.update_form(form_id, payload)

    @rpc(expected_exceptions=EXPECTED)
    def delete_form(self, form_id):
        return self.inbound.delete_form(form_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_forms(self, params):
        return self.inbound.list_forms(params)

    @rpc(expected_exceptions=EXPECTED)
    def public_form(self, key):
        return self.inbound.public_form(key)

    @rpc(expected_exceptions=EXPECTED)
    def receive_form(self, key, fields, meta):
        return self._received(*self.inbound.receive_form(key, fields, meta))

    @rpc(expected_exceptions=EXPECTED)
    def receive_message(self, payload, meta):
        return self._received(*self.inbound.receive_message(payload, meta))

    @rpc(expected_exceptions=EXPECTED)
    def receive_telegram(self, key, update, meta):
        return self._received(*self.inbound.receive_telegram(key, update, meta))

    @rpc(expected_exceptions=EXPECTED)
    def get_inbound_request(self, request_id):
        return self.inbound.get_request(request_id)

    @rpc(expected_exceptions=EXPECTED)
    def list_inbound_requests(self, params):
        return self.inbound.list_requests(params)

    @timer(interval=5)
    def sweep_inbound(self):
        """Requests whose capture failed or never ran (a crash right after storing)."""
        for _ in range(50):
            if not self._announce(self._sweep_one, utcnow()):
                return

    def _received(self, answer, request):
        """Stored: the sender has its answer now; the capture runs beside it (a few at a
        time; beyond that, and after any failure, the sweeper takes it within 20 s)."""
        if request is not None:
            self.captures.try_spawn(self._capture, request)
        return answer

    def _capture(self, request):
        try:
            self._announce(self._capture_and_mark, request)
        except Exception as exc:  # noqa: BLE001 - stored; the sweeper retries it
            self.inbound.capture_failed(request["_id"], exc)

    def _capture_and_mark(self, request):
        """The capture's writes, its events and the request leaving the sweeper's queue:
        one transaction."""
        events, changes = self.inbound.capture(request)
        self.inbound.mark_captured(request["_id"], changes)
        return request["_id"], events

    def _sweep_one(self, now):
        """One due request claimed and captured (or its failure recorded), in one
        transaction; None when nothing is due."""
        found = self.inbound.sweep_one(now)
        if found is None:
            return None, []
        request, events, changes = found
        if changes is not None:
            self.inbound.mark_captured(request["_id"], changes)
        return request["_id"], events

    @reliable_handler("deals", "lead_routed")
    def on_lead_routed(self, event):
        """The routing on the request and the timeline; an owner-less contact gets the owner."""
        self._handle_and_announce(self.inbound.on_lead_routed, event)

    @reliable_handler("gateway", "user_upserted")
    def on_gateway_user_upserted(self, event):
        """Owners by email in imports: a local copy of who the users are."""
        self.import_store.upsert_user(event["data"]["user"], parse_iso(event["occurred_at"]))

    # one reliable (dead-lettering) handler per event listed in timeline_events.py
    for _source, _type in TIMELINE_EVENTS:
        # a name taken by a handler above would silently replace it
        assert f"on_{_source}_{_type}" not in locals(), f"on_{_source}_{_type} is taken"
        locals()[f"on_{_source}_{_type}"] = _timeline_handler(_source, _type)
    del _source, _type
