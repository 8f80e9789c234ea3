"""Contacts service entrypoints: thin; the work is in operations.py, storage in store.py."""
from nameko.events import EventDispatcher
from nameko.rpc import rpc

from crm_common.context import CallerContext
from crm_common.errors import EXPECTED
from crm_common.health import HealthEntrypoints
from crm_common.events import reliable_handler
from crm_common.mongo import MongoStore
from services.contacts.operations import Contacts
from services.contacts.store import ContactsStore
from services.contacts.timeline_events import TIMELINE_EVENTS


def _timeline_handler(source, event_type):
    @reliable_handler(source, event_type)
    def handle(self, event):
        self.contacts.record_foreign_event(event)

    handle.__name__ = f"on_{source}_{event_type}"
    return handle


class ContactsService(HealthEntrypoints):
    name = "contacts"

    store = MongoStore(ContactsStore)
    caller = CallerContext()
    dispatch = EventDispatcher()

    @property
    def contacts(self):
        return Contacts(self.store, self.caller)

    def _announce(self, result_and_events):
        result, events = result_and_events
        for event in events:
            self.dispatch(event["type"], event)
        return result

    @rpc(expected_exceptions=EXPECTED)
    def create_contact(self, payload, force=False):
        return self._announce(self.contacts.create(payload, force))

    @rpc(expected_exceptions=EXPECTED)
    def get_contact(self, contact_id, include_deleted=False):
        return self.contacts.get(contact_id, include_deleted)

    @rpc(expected_exceptions=EXPECTED)
    def update_contact(self, contact_id, payload):
        return self._announce(self.contacts.update(contact_id, payload))

    @rpc(expected_exceptions=EXPECTED)
    def delete_contact(self, contact_id):
        return self._announce(self.contacts.delete(contact_id))

    @rpc(expected_exceptions=EXPECTED)
    def restore_contact(self, contact_id):
        return self._announce(self.contacts.restore(contact_id))

    @rpc(expected_exceptions=EXPECTED)
    def list_contacts(self, params):
        return self.contacts.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def lookup(self, params):
        return self.contacts.lookup(params)

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
        return self._announce(self.contacts.create_company(payload))

    @rpc(expected_exceptions=EXPECTED)
    def get_company(self, company_id):
        return self.contacts.get_company(company_id)

    @rpc(expected_exceptions=EXPECTED)
    def update_company(self, company_id, payload):
        return self._announce(self.contacts.update_company(company_id, payload))

    @rpc(expected_exceptions=EXPECTED)
    def delete_company(self, company_id):
        return self._announce(self.contacts.delete_company(company_id))

    @rpc(expected_exceptions=EXPECTED)
    def restore_company(self, company_id):
        return self._announce(self.contacts.restore_company(company_id))

    @rpc(expected_exceptions=EXPECTED)
    def list_companies(self, params):
        return self.contacts.list_companies(params)

    # one reliable (dead-lettering) handler per event listed in timeline_events.py
    for _source, _type in TIMELINE_EVENTS:
        locals()[f"on_{_source}_{_type}"] = _timeline_handler(_source, _type)
    del _source, _type
