"""Telephony's copy of who has which phone number, kept from contacts' events, so the
ringing answer (which a PBX waits on to route the call) needs no RPC to contacts: that
service is shared with search's catch-up, imports and the API, and a queue there showed
as ringing latency. What announces no event per contact (imports, contacts from before
the copy) is caught up by `sync`, a background pull of the contacts changed since its
last run. A number the copy does not know yet is still asked of contacts."""
from datetime import timedelta

from crm_common.changes import EPOCH, changed_pages
from crm_common.timeutil import as_utc, parse_iso, to_iso, utcnow

SYNC_PAGE = 500
SYNC_LEASE_S = 120
SYNC_OVERLAP_S = 5   # changes committed while a pass ran are read again by the next

# what the call log and the ringing answer use of a contact
KEPT = ("id", "first_name", "last_name", "owner_id", "do_not_contact")


def _at(value):
    return as_utc(parse_iso(value)) if value else utcnow()


def contact_changed(store, event):
    """contact_created / contact_updated / contact_restored: the contact's numbers."""
    contact = event["data"]["contact"]
    contact_id, sets, _ = copy_of(contact)
    store.put_contact_phones(contact_id, sets,
                             _at(contact.get("updated_at") or event.get("occurred_at")))


def contact_deleted(store, event):
    store.put_contact_phones(event["data"]["contact_id"], {"phones": []},
                             _at(event.get("occurred_at")))


def contact_merged(store, event):
    """The merged contacts' numbers now reach the survivor (the event carries it)."""
    data = event["data"]
    at = _at(event.get("occurred_at"))
    for contact_id in data.get("merged_ids") or []:
        if contact_id != data.get("survivor_id"):
            store.put_contact_phones(contact_id, {"phones": []}, at)
    if data.get("contact"):
        contact_changed(store, {"data": {"contact": data["contact"]},
                                "occurred_at": event.get("occurred_at")})


def lookup(store, e164):
    """The contact (its KEPT fields) with this number, or None when the copy has none."""
    doc = store.contact_by_phone(e164) if e164 else None
    return dict(doc["contact"]) if doc and doc.get("contact") else None


def copy_of(contact):
    """(contact id, what the copy keeps, as of when) for a contact in its API form."""
    deleted = bool(contact.get("deleted_at") or contact.get("deleted"))
    phones = [] if deleted else sorted({p["e164"] for p in contact.get("phones") or []
                                        if p.get("e164")})
    return contact["id"], {"phones": phones, "contact": {k: contact.get(k) for k in KEPT}}, \
        _at(contact.get("updated_at"))


def sync(store, contacts):
    """Pulls the contacts changed since the last pass (all of them the first time) into
    the copy; one replica at a time (a lease). The number of contacts read."""
    now = utcnow()
    state = store.claim_phones_sync(now, now + timedelta(seconds=SYNC_LEASE_S))
    if state is None:
        return 0
    since = as_utc(parse_iso(state["mark"])) if state.get("mark") else EPOCH
    read = 0
    try:
        def fetch(**query):
            return contacts.search_records("contact", **query)
        for items in changed_pages(fetch, since, now, SYNC_PAGE):
            store.put_contact_phones_many([copy_of(item) for item in items])
            read += len(items)
            store.renew_phones_sync(utcnow() + timedelta(seconds=SYNC_LEASE_S))
    except Exception:
        store.save_phones_sync(state.get("mark"))  # the lease goes; the next pass retries
        raise
    # changes committed while this pass ran are read again by the next
    store.save_phones_sync(to_iso(now - timedelta(seconds=SYNC_OVERLAP_S)))
    return read
