"""Which stream event an envelope from the bus becomes, and who may see it.

The rule is the API's (crm_common.context.Caller.owner_filter, the cells of
gateway/permissions.py): a record reaches a stream when one of its person fields names
someone of the caller's `person_ids()` (admin: everyone; manager: themselves and their
team; agent: themselves). Per kind:

- contacts: `owner_id`; a contact with no owner is everyone's (contacts:read);
- companies: shared reference data, everyone's;
- deals: `owner_id`; tasks: `assignee_id` or `created_by`; calls: the agent(s) or the
  contact's owner; imports: who started it;
- `notification`: the recipient only (an inbox is `self`, even for an admin);
- `call_ringing`: an inbound call's `call_started`, for its agent(s) and the contact's owner.

A delete event names only the record's id: its people are those this process last saw on
it (`Owners`), else admins only.
"""
from collections import OrderedDict

EVERYONE = "*"

# (source, type) -> the record kind it is about; the key in `data` holding the record
RECORDS = {
    "contacts": {"contact_created": "contact", "contact_updated": "contact",
                 "contact_restored": "contact", "contact_deleted": "contact",
                 "contact_merged": "contact", "company_created": "company",
                 "company_updated": "company", "company_restored": "company",
                 "company_deleted": "company", "import_progress": "import",
                 "import_finished": "import", "import_undone": "import",
                 "lead_captured": "contact"},
    "deals": {"deal_created": "deal", "deal_updated": "deal", "deal_assigned": "deal",
              "deal_stage_changed": "deal", "deal_won": "deal", "deal_lost": "deal",
              "deal_deleted": "deal", "deal_restored": "deal", "lead_routed": "deal"},
    "tasks": {"task_created": "task", "task_updated": "task", "task_assigned": "task",
              "task_completed": "task", "task_canceled": "task", "task_due_soon": "task",
              "task_overdue": "task", "task_escalated": "task"},
    "telephony": {"call_started": "call", "call_answered": "call", "call_ended": "call",
                  "call_missed": "call"},
    "notifications": {"notification_created": "notification"},
}
# conversations: the assignee or the contact's owner (services/conversations/README.md)
RECORDS["conversations"] = {t: "conversation" for t in (
    "message_received", "message_sent", "message_failed", "conversation_assigned",
    "conversation_closed", "conversation_reopened", "conversation_escalated")}
SOURCES = tuple(RECORDS)
# a stream event's name -> the kind of record it is about (custom roles read per kind)
KIND_OF = {name: kind for kinds in RECORDS.values() for name, kind in kinds.items()}
KIND_OF["call_ringing"] = "call"
# the object of a custom role's grants each kind is read under (contracts/roles.py)
OBJECT_OF = {"contact": "contacts", "company": "companies", "deal": "deals", "task": "tasks",
             "call": "calls", "import": "imports"}

PERSON_FIELDS = {"contact": ("owner_id",), "deal": ("owner_id",),
                 "task": ("assignee_id", "created_by"),
                 "call": ("agent_id", "owner_id", "agent_ids"),
                 "import": ("started_by",), "notification": ("user_id",)}
PERSON_FIELDS["conversation"] = ("assignee_id", "owner_id")


class Owners:
    """record id -> the people last seen on it, bounded (LRU), for delete events."""

    def __init__(self, size=100000):
        self.size = size
        self._ids = OrderedDict()

    def remember(self, record_id, people):
        if not record_id:
            return
        self._ids[record_id] = people
        self._ids.move_to_end(record_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def get(self, record_id):
        return self._ids.get(record_id)


def _people(data, record, fields):
    found = set()
    for holder in (record or {}, data):
        for name in fields:
            value = holder.get(name)
            if isinstance(value, list):
                found.update(v for v in value if isinstance(v, str))
            elif isinstance(value, str) and value:
                found.add(value)
    return found


def classify(envelope, owners):
    """[(stream event name, audience)] for one envelope from the bus. audience: EVERYONE,
    or a frozenset of user ids whose watchers see it (admins see every non-personal
    event), or ("self", user_id) for what only that user sees."""
    source, kind = envelope.get("source"), envelope.get("type")
    data = envelope.get("data") or {}
    record_kind = RECORDS.get(source, {}).get(kind)
    if record_kind is None:
        return []
    if record_kind == "notification":
        user_id = data.get("user_id")
        return [("notification", ("self", user_id))] if user_id else []
    if record_kind == "company":
        return [(kind, EVERYONE)]
    record = data.get(record_kind) if isinstance(data.get(record_kind), dict) else {}
    record_id = (record.get("id") or data.get(f"{record_kind}_id")
                 or (data.get("import_id") if record_kind == "import" else None)
                 or data.get("survivor_id"))
    people = _people(data, record, PERSON_FIELDS[record_kind])
    if kind.endswith("_deleted") and not people:
        people = set(owners.get(record_id) or ())
    else:
        owners.remember(record_id, frozenset(people))
    if record_kind == "contact" and not people and not kind.endswith("_deleted"):
        audience = EVERYONE  # a contact with no owner: everyone reads it
    else:
        audience = frozenset(people)
    out = [(kind, audience)]
    if kind == "call_started" and (data.get("direction") or record.get("direction")) == "inbound":
        out.insert(0, ("call_ringing", audience))
    return out
