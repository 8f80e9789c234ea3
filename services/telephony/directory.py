"""Telephony's copy of who has which phone number, kept from contacts' events, so the
ringing answer (which a PBX waits on to route the call) needs no RPC to contacts: that
service is shared with search's catch-up, imports and the API, and a queue there showed
as ringing latency. What announces no event per contact (imports, contacts from before
the copy) is caught up by `sync`, a background pull of the contacts changed since its
last run. A number the copy does not know yet is still asked of contacts."""
from datetime import datetime, timedelta, timezone

from crm_common.errors import Timeout
from crm_common.timeutil import as_utc, parse_iso, to_iso, utcnow

SYNC_PAGE = 500
SYNC_LEASE_S = 120
SYNC_OVERLAP_S = 5   # changes committed while a pass ran are read again by the next
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# the sync's windows of updated_at: the first, the narrowest (Mongo keeps milliseconds),
# the widest (an empty stretch doubles the window up to this)
FIRST_WINDOW = timedelta(minutes=10)
MIN_WINDOW = timedelta(milliseconds=1)
MAX_WINDOW = timedelta(days=3650)
MAX_TIMEOUTS = 8  # contacts not answering this often in a row: the pass fails (retried later)

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
        for items in changed_pages(contacts, since, now):
            store.put_contact_phones_many([copy_of(item) for item in items])
            read += len(items)
            store.renew_phones_sync(utcnow() + timedelta(seconds=SYNC_LEASE_S))
    except Exception:
        store.save_phones_sync(state.get("mark"))  # the lease goes; the next pass retries
        raise
    # changes committed while this pass ran are read again by the next
    store.save_phones_sync(to_iso(now - timedelta(seconds=SYNC_OVERLAP_S)))
    return read


def changed_pages(contacts, start, end):
    """The contacts changed in [start, end), a page at a time, each asked for as a window of
    `updated_at` sized to hold about a page (an index range): the embedded database reads
    every document a query matches before it applies the limit, so open-ended "since"
    pages would cost the rest of the collection each (quadratic on a first pass). A window
    that held more than a page tells how dense the changes are: the next one starts at the
    last change read, as wide as the newest half of that page spread; an emptier one doubles;
    one that timed out is cut to 1/64th."""
    width, timeouts, ceiling = FIRST_WINDOW, 0, MAX_WINDOW
    while start < end:
        stop = min(start + width, end)
        try:
            answer = contacts.search_records("contact", since=to_iso(start),
                                             until=to_iso(stop), limit=SYNC_PAGE)
        except Timeout:
            # too many changes in the window (a first pass grows its window over the empty
            # years before the first contact, then meets them all): a far narrower one
            timeouts += 1
            if timeouts > MAX_TIMEOUTS or stop - start <= MIN_WINDOW:
                raise
            # (and no wider until changes are read: they lie within that window)
            width = ceiling = max((stop - start) / 64, MIN_WINDOW)
            continue
        timeouts = 0
        items = answer["items"]
        if items:
            ceiling = MAX_WINDOW
        if not answer.get("next_cursor"):
            if items:
                yield items
            start = stop
            if len(items) < SYNC_PAGE // 2:
                width = min(width * 2, ceiling)
            continue
        yield items
        middle, last = (_at(items[i].get("updated_at")) for i in (len(items) // 2, -1))
        if last > start:
            # as wide as the newest half of the page spread (the density where it ended)
            width, start = max(last - middle, MIN_WINDOW), last
            continue
        # more than a page changed within one instant (a bulk write): page through it
        instant, cursor = start + MIN_WINDOW, answer["next_cursor"]
        while cursor:
            answer = contacts.search_records("contact", since=to_iso(start),
                                             until=to_iso(instant), cursor=cursor,
                                             limit=SYNC_PAGE)
            if answer["items"]:
                yield answer["items"]
            cursor = answer.get("next_cursor")
        start, width = instant, MIN_WINDOW
