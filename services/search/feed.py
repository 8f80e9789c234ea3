"""Which records an event concerns, and how their current state reaches the index.

Most events carry the record as its owner's API gives it (`data.contact`, `data.deal`...,
with its `updated_at`): that state is written as it is, without asking the owner. Events
that name records without carrying them (a merge's merged contacts, a routed lead, an
import's batch: `contact_ids`) have those records fetched from their owner
(contracts/search.py `search_records`). Events may come late, twice, or out of order: the
index keeps the latest state it has seen of each record (index.py), and a record its
owner no longer has is removed.

Denormalised words follow their source inside the index:
- a deal is found by its contact's and company's names, emails and phones: when a contact
  or company is written, the deals that name it are described again;
- a company renamed renames it in its contacts (the contacts service does so and
  announces nothing per contact): they are fetched again;
- a merge moves the merged contacts' deals, tasks and calls to the survivor (their owners
  do the same on the same event, without announcing it);
- an answered call marks the earlier missed calls from its number called back (telephony
  does so without an event of theirs): they are fetched again.
- a real touch (a call, a completed call/meeting task: `data.contacted_at`) moves the
  contact's last_contacted_at forward, as the contacts service does without an event.
- what a contact bought (the sales service's `purchases_recorded`, and its purchases on a
  rebuild) is kept on the contact's index record (`purchases`), for the contacts list's
  filter "bought product X (in a period)".
An import announces each batch's contacts and companies (`import_progress`); its undo
deletes what it created, so its event has the index read those contacts again (it knows
them by their import). What still changes with no event (an undo's restored contacts) is
read by dependencies.py's slow catch-up of contacts and companies changed since its last
read."""
from dataclasses import dataclass, field

from services.search.documents import PEOPLE, describe, filter_term, micros

# the owning service of each type, and the order a rebuild reads them in (a deal is
# described with its contact and company, so those come first)
OWNERS = {"contact": "contacts", "company": "contacts", "deal": "deals", "task": "tasks",
          "call": "telephony", "note": "notes", "purchase": "sales"}
ORDER = ("contact", "company", "deal", "task", "call", "note")   # a note after its record
# and then what each contact bought (not a record: kept on the contact's, buy())
REBUILT = (*ORDER, "purchase")

# the events that change a searchable record: (source, type) -> (kind, where its id is)
RECORD_EVENTS = {
    ("contacts", "contact_created"): ("contact", ("contact", "id")),
    ("contacts", "contact_updated"): ("contact", ("contact", "id")),
    ("contacts", "contact_restored"): ("contact", ("contact", "id")),
    ("contacts", "contact_deleted"): ("contact", ("contact_id",)),
    ("contacts", "contact_merged"): ("contact", ("survivor_id",)),
    ("contacts", "company_created"): ("company", ("company", "id")),
    ("contacts", "company_updated"): ("company", ("company", "id")),
    ("contacts", "company_restored"): ("company", ("company", "id")),
    ("contacts", "company_deleted"): ("company", ("company_id",)),
    ("deals", "deal_created"): ("deal", ("deal", "id")),
    ("deals", "deal_updated"): ("deal", ("deal_id",)),
    ("deals", "deal_deleted"): ("deal", ("deal_id",)),
    ("deals", "deal_restored"): ("deal", ("deal_id",)),
    ("deals", "deal_stage_changed"): ("deal", ("deal", "id")),
    ("deals", "deal_won"): ("deal", ("deal", "id")),
    ("deals", "deal_lost"): ("deal", ("deal", "id")),
    ("deals", "deal_assigned"): ("deal", ("deal", "id")),
    ("deals", "lead_routed"): ("deal", ("deal_id",)),
    ("tasks", "task_created"): ("task", ("task", "id")),
    ("tasks", "task_assigned"): ("task", ("task", "id")),
    ("tasks", "task_updated"): ("task", ("task", "id")),
    ("tasks", "task_canceled"): ("task", ("task", "id")),
    ("tasks", "task_completed"): ("task", ("task", "id")),
    ("telephony", "call_started"): ("call", ("call", "id")),
    ("telephony", "call_answered"): ("call", ("call", "id")),
    ("telephony", "call_ended"): ("call", ("call", "id")),
    ("telephony", "call_missed"): ("call", ("call", "id")),
    ("telephony", "call_updated"): ("call", ("call", "id")),
    # a note event names its note (without its time): the note is read from its owner
    ("notes", "note_created"): ("note", ("note", "id")),
    ("notes", "note_updated"): ("note", ("note", "id")),
    ("notes", "note_deleted"): ("note", ("note", "id")),
}


OTHER_EVENTS = {("contacts", "import_undone"), ("contacts", "import_progress"),
                ("sales", "purchases_recorded")}
# events whose record (in `data`) is a deleted one
DELETING = {"contact_deleted", "company_deleted", "deal_deleted"}


def event_types_of(source):
    return sorted(t for s, t in {*RECORD_EVENTS, *OTHER_EVENTS} if s == source)


SOURCES = sorted({s for s, _ in (*RECORD_EVENTS, *OTHER_EVENTS)})


def _dig(data, path):
    for step in path:
        if not isinstance(data, dict):
            return None
        data = data.get(step)
    return data if isinstance(data, str) and data else None


def body_record(kind, event_type, data):
    """The record an event carries (its owner's API form), or None when it names one only."""
    record = data.get(kind)
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record.get(
            "updated_at"):
        return None
    return dict(record, deleted=event_type in DELETING or bool(record.get("deleted_at")))


@dataclass
class Work:
    records: list = field(default_factory=list)    # [(kind, record)] carried by the event
    fetch: list = field(default_factory=list)      # [(kind, id)] to read from their owners
    touched: tuple = None                           # (contact id, contacted_at)
    merged: tuple = None                            # (survivor_id, [merged ids])
    import_undone: str = None                       # the contacts it created are read again
    bought: tuple = None                            # (contact id, [(product id, day)])


def work_of(event):
    """What an event asks of the index."""
    source, event_type = event.get("source"), event.get("type")
    data = event.get("data") or {}
    known = RECORD_EVENTS.get((source, event_type))
    work = Work()
    if (source, event_type) == ("contacts", "import_undone"):
        # what it restored is a change of now (read by dependencies.sync); what it created
        # is gone without a trace: the index knows them by their import
        work.import_undone = _dig(data, ("import_id",))
    if (source, event_type) == ("contacts", "import_progress"):
        for kind, name in (("contact", "contact_ids"), ("company", "company_ids")):
            work.fetch += [(kind, i) for i in data.get(name) or [] if isinstance(i, str) and i]
    if (source, event_type) == ("sales", "purchases_recorded") and _dig(data, ("contact_id",)):
        work.bought = (data["contact_id"], [
            (i["product_id"], i["purchased_at"][:10]) for i in data.get("items") or []
            if isinstance(i, dict) and _dig(i, ("product_id",)) and _dig(i, ("purchased_at",))])
    contacted = _dig(data, ("contacted_at",))
    if contacted and _dig(data, ("contact_id",)):
        work.touched = (data["contact_id"], contacted)
    if known is None:
        return work
    kind, path = known
    record_id = _dig(data, path)
    carried = body_record(kind, event_type, data)
    if carried is not None and carried["id"] == record_id:
        work.records.append((kind, carried))
    elif record_id:
        work.fetch.append((kind, record_id))
    if event_type == "contact_merged":
        merged = [i for i in data.get("merged_ids") or [] if isinstance(i, str) and i != record_id]
        work.fetch += [("contact", i) for i in merged]
        if record_id and merged:
            work.merged = (record_id, merged)
    return work


def related(index, kind, record):
    """The records whose words a record of `kind` also carries (from the index); a note's
    record, whose people see it."""
    if kind == "note":
        return {"parent": index.record(record.get("record_type"), record.get("record_id"))}
    if kind != "deal":
        return None
    out = {}
    for name in ("contact", "company"):
        ref = record.get(f"{name}_id")
        if ref:
            out[name] = index.record(name, ref)
    return out


def write(index, kind, record, force=False, carried=False):
    """One owner's record into the index (unless it holds a later state); True if written.
    A contact keeps the latest last_contacted_at the index knows (it only moves forward,
    and touches come without an event of the contact); one `carried` by an event (its API
    form) keeps the import it came from, which that form leaves out."""
    if kind == "contact":
        held = index.record(kind, record["id"])
        if held:
            record = dict(record)
            if carried and held.get("import_id") and "import_id" not in record:
                record["import_id"] = held["import_id"]
            if held.get("purchases") and "purchases" not in record:   # buy(): not the owner's
                record["purchases"] = held["purchases"]
            if micros(held.get("last_contacted_at")) > micros(record.get("last_contacted_at")):
                record["last_contacted_at"] = held["last_contacted_at"]
    return index.write(describe(kind, record, related(index, kind, record)), record, force)


def buy(index, contact_id, items):
    """What a contact bought ([(product id, "YYYY-MM-DD")], from the sales service) added
    to its index record (kept at its version); False when the index does not hold it."""
    record = index.record("contact", contact_id)
    if record is None:
        return False
    purchases = {k: list(v) for k, v in (record.get("purchases") or {}).items()}
    for product_id, day in items:
        days = purchases.setdefault(product_id, [])
        if day not in days:
            days.append(day)
    if purchases != record.get("purchases"):
        write(index, "contact", dict(record, purchases=purchases), force=True)
    return True


def touch(index, contact_id, when):
    """A real touch: the contact's last_contacted_at moves forward (kept at its version)."""
    record = index.record("contact", contact_id)
    if record is not None and micros(record.get("last_contacted_at")) < micros(when):
        write(index, "contact", dict(record, last_contacted_at=when), force=True)


def apply(index, kind, record_id, record, carried=False):
    """An owner's answer for one record (None: it has no such record), or the record an
    event `carried`. Returns the records to fetch again because of it."""
    if record is None:
        index.remove(kind, record_id)
        return []
    if carried:
        held = index.held(f"{kind}:{record_id}")
        stamp = (micros(record.get("updated_at")), int(record.get("version") or 0))
        if held is not None and held[0] == stamp and held[2] != record:
            # two states of one instant (a call's events within a millisecond, handled
            # out of order): the owner's current state says which is the last
            return [(kind, record_id)]
    before = index.record(kind, record_id) if kind in NOTED else None
    if not write(index, kind, record, carried=carried):
        return []
    follow = []
    if kind in ("contact", "company"):
        for key in index.keys_with("deal", f"{kind}_id={record_id}"):
            redescribe(index, key)
    if kind in NOTED and (before is None or _seen_by(kind, before) != _seen_by(kind, record)):
        for key in index.keys_with("note", f"record={kind}:{record_id}"):
            redescribe(index, key)   # who sees its notes follows the record
    if kind == "company":
        # the owner copies a new name to the company's people without an event of theirs:
        # read again those the index holds with another name (none after an import, whose
        # contacts carry the name of the companies it creates)
        for key in index.keys_with("contact", f"company_id={record_id}"):
            held = index.record("contact", key.split(":", 1)[1])
            if held is None or held.get("company_name") != record.get("name"):
                follow.append(("contact", key.split(":", 1)[1]))
    if kind == "call" and record.get("outcome") == "answered" and record.get("number"):
        follow += called_back(index, record)
    return follow


NOTED = ("contact", "company", "deal", "task")   # records notes are on


def _seen_by(kind, record):
    return (sorted(str(record.get(p)) for p in PEOPLE[kind]), bool(record.get("deleted")))


def called_back(index, call):
    """The missed calls from this call's number not called back yet: telephony marks them
    called back when a call with that number is answered, without an event of theirs."""
    out = []
    for key in index.keys_with("call", filter_term("number", call["number"])):
        held = index.record("call", key.split(":", 1)[1])
        if held and held["id"] != call["id"] and held.get("missed") and not held.get("called_back"):
            out.append(("call", held["id"]))
    return out


def redescribe(index, key):
    """A record described again from what the index holds (its related records changed)."""
    kind, record_id = key.split(":", 1)
    record = index.record(kind, record_id)
    if record is not None:
        write(index, kind, record, force=True)


def repoint(index, survivor_id, merged_ids):
    """What the owners of deals, tasks and calls do on contact_merged, done to the index's
    copies: their contact is the survivor now (kept at their own version, so the owner's
    next state of them still wins)."""
    for kind in ("deal", "task", "call"):
        for merged_id in merged_ids:
            for key in index.keys_with(kind, f"contact_id={merged_id}"):
                record = index.record(kind, key.split(":", 1)[1])
                if record is not None:
                    write(index, kind, dict(record, contact_id=survivor_id), force=True)
