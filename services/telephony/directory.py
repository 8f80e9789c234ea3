"""Telephony's copy of who has which phone number, kept from contacts' events, so the
ringing answer (which a PBX waits on to route the call) needs no RPC to contacts: that
service is shared with search's catch-up, imports and the API, and a queue there showed
as ringing latency. A number the copy does not know is still asked of contacts (contacts
created before telephony kept a copy, or an event not yet handled)."""
from crm_common.timeutil import as_utc, parse_iso, utcnow

# what the call log and the ringing answer use of a contact
KEPT = ("id", "first_name", "last_name", "owner_id", "do_not_contact")


def _at(value):
    return as_utc(parse_iso(value)) if value else utcnow()


def contact_changed(store, event):
    """contact_created / contact_updated / contact_restored: the contact's numbers."""
    contact = event["data"]["contact"]
    deleted = bool(contact.get("deleted_at"))
    phones = [] if deleted else sorted({p["e164"] for p in contact.get("phones") or []
                                        if p.get("e164")})
    store.put_contact_phones(contact["id"], {"phones": phones, "contact": {
        k: contact.get(k) for k in KEPT}}, _at(contact.get("updated_at") or event.get("occurred_at")))


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
