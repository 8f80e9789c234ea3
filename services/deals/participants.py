"""Several contacts on a deal, each with a role (decision maker, accountant, lawyer...), one
of them primary: the primary one is the deal's `contact_id`, so everything that follows a
deal's contact (timeline, reports, search) keeps working. `participant_ids` (indexed) lists
them all, for the contact card's deals."""
from crm_common.errors import Conflict, NotFound
from crm_common.timeutil import utcnow
from crm_common.validation import load
from contracts import deals as schemas
from services.deals.domain import people_of
from services.deals.operations import MOVE_ATTEMPTS, _event, invalid

contacts_in = schemas.DealContactsIn()
contact_deals_query = schemas.ContactDealsQuery()
CONTACT_DEALS_LIMIT = 200


class DealContacts:
    def __init__(self, deals):
        self.deals = deals  # operations.Deals: store, caller, contacts RPC, dumps
        self.store = deals.store

    def get(self, deal_id):
        doc = self.deals._current(deal_id)
        return {"deal_id": deal_id, "contacts": people_of(doc)}

    def replace(self, deal_id, payload):
        data = load(contacts_in, payload)
        people = [{"contact_id": p["contact_id"], "role": (p.get("role") or "").strip() or None,
                   "primary": bool(p.get("primary"))} for p in data["contacts"]]
        current = self.deals._current(deal_id)
        known = {p["contact_id"] for p in people_of(current)}
        for person in people:  # new people must exist and be visible to the caller
            if person["contact_id"] in known:
                continue
            try:
                self.deals.contacts.get_contact(person["contact_id"])
            except NotFound:
                raise invalid("contacts", f"Unknown contact {person['contact_id']}.")
        primary = next((p["contact_id"] for p in people if p["primary"]), None)
        changes = {"contacts": people, "participant_ids": [p["contact_id"] for p in people],
                   "contact_id": primary}
        for attempt in range(MOVE_ATTEMPTS):
            if attempt:
                current = self.deals._current(deal_id)
            write = {**changes, "updated_at": utcnow()}
            if self.store.change_deal(current, write, self.deals._visible()):
                doc = {**current, **write, "version": current["version"] + 1}
                break
        else:
            raise Conflict("The deal keeps changing; try again", {"id": deal_id})
        result = self.deals.dump_deal(doc, self.store.get_pipeline(doc["pipeline_id"]))
        changed = ["contacts"] + (["contact_id"] if current.get("contact_id") != primary else [])
        events = [_event("deal_updated", {
            "deal": result, "deal_id": deal_id, "owner_id": doc.get("owner_id"),
            "contact_id": primary, "changed": changed, "actor_id": self.deals.caller.user_id,
            "ref": {"type": "deal", "id": deal_id}})]
        return {"deal_id": deal_id, "contacts": people}, events

    def of_contact(self, contact_id, params):
        """The deals a contact takes part in, that the caller sees, with its role on each; a
        contact the caller cannot see, or deleted, is not found (as its own page is)."""
        q = load(contact_deals_query, params or {})
        self.deals.contacts.get_contact(contact_id)
        visible = self.deals.caller.person_ids()
        docs = [d for d in self.store.deals_of_participant(contact_id, CONTACT_DEALS_LIMIT)
                if d.get("deleted_at") is None
                and (visible is None or d.get("owner_id") in visible)
                and (not q.get("status") or d.get("status") == q["status"])]
        items = []
        for doc, out in zip(docs, self.deals._dump_many(docs)):
            me = next((p for p in people_of(doc) if p["contact_id"] == contact_id), None)
            if me is None:  # a stale copy (the deal moved on): not a participant any more
                continue
            items.append({**out, "role": me.get("role"), "primary": bool(me.get("primary"))})
        return {"contact_id": contact_id, "items": items}
