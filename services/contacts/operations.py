"""What the contacts service does, apart from how it is called. Each write returns the
events to announce; the entrypoint dispatches them only after the write succeeded."""
import itertools
from datetime import timedelta

from crm_common import custom_fields
from crm_common.errors import Conflict, Forbidden, NotFound, Unavailable, ValidationFailed
from crm_common.messaging.events import envelope
from crm_common.fields import with_every_key
from crm_common.phones import normalize_phone
from crm_common.cursors import encode_cursor, invalid_cursor, parse_sort, sign_token, verify_token
from crm_common.timeutil import parse_iso, utcnow
from crm_common.validation import load
from contracts import contacts as schemas
from services.contacts.domain import (normalize_emails, normalize_messengers, normalize_phones,
                                      search_fields)

contact_in = schemas.ContactIn()
contact_out = schemas.ContactOut()
company_in = schemas.CompanyIn()
company_out = schemas.CompanyOut()
timeline_out = schemas.TimelineEntry()
contact_list_query = schemas.ContactListQuery()
company_list_query = schemas.CompanyListQuery()
timeline_query = schemas.TimelineQuery()
lookup_query = schemas.LookupQuery()

CONTACT_SORTS = {"created_at": "created_at", "updated_at": "updated_at", "name": "sort_name"}
COMPANY_SORTS = {"created_at": "created_at", "updated_at": "updated_at"}
SERVICE = "contacts"
MAX_BUYERS = 10_000   # the fallback's `bought_product` filter is an `_id $in` of these


def dump_contact(doc):
    return with_every_key(contact_out, contact_out.dump(doc), doc["_id"], empty_dicts=True)


def dump_company(doc):
    return with_every_key(company_out, company_out.dump(doc), doc["_id"], empty_dicts=True)


def _event(event_type, data):
    return envelope(SERVICE, event_type, data)


def foreign_entry(event):
    """Another service's event as (its timeline entry, the touch it makes or None); None
    when it names no contact. Idempotent on (event id, contact) by the entry's dedupe_key."""
    data = event["data"]
    contact_id = data.get("contact_id")
    if not contact_id:
        return None
    ref = data.get("ref") or {}
    entry = {
        "contact_id": contact_id, "kind": event["type"],
        "occurred_at": parse_iso(event["occurred_at"]),
        "summary": data.get("summary") or event["type"].replace("_", " "),
        "actor_id": data.get("actor_id"),
        "ref": {"service": event["source"], "type": ref.get("type"), "id": ref.get("id")},
        "data": {k: v for k, v in data.items() if k not in ("contact_id", "summary", "ref")},
        "dedupe_key": f"{event['event_id']}:{contact_id}"}
    return entry, parse_iso(data["contacted_at"]) if data.get("contacted_at") else None


class Contacts:
    def __init__(self, store, caller, buyers=None):
        self.store = store
        self.caller = caller
        self.region = store.settings.default_region
        self.buyers = buyers   # sales.product_buyers (the `bought_product` filter)

    def _filter(self, query_in):
        """The list's MongoDB query. `bought_product`: the buyers' ids from the sales
        service (the index answers this filter; this is its fallback, so it is bounded)."""
        if query_in.get("bought_product"):
            query_in = dict(query_in, buyer_ids=self._buyer_ids(query_in))
        return self.store.contact_filter(query_in, self.region, self._visible())

    def _buyer_ids(self, query_in):
        low, high = query_in.get("bought_from"), query_in.get("bought_to")
        params = {"limit": 500}
        if low:
            params["from"] = f"{low.isoformat()}T00:00:00Z"
        if high:
            params["to"] = f"{(high + timedelta(days=1)).isoformat()}T00:00:00Z"
        ids = []
        while True:
            page = self.buyers(query_in["bought_product"], params)
            ids += page["items"]
            if not page.get("next_cursor"):
                return ids
            if len(ids) >= MAX_BUYERS:
                raise Unavailable("Too many buyers to list while the search index is rebuilt; "
                                  "try again shortly", {"bought_product": query_in["bought_product"]})
            params["cursor"] = page["next_cursor"]

    # contacts
    def create(self, payload, force=False, internal=None):
        """`internal`: fields the service itself sets (e.g. an inbound lead's acquisition),
        not part of the API's input."""
        data = load(contact_in, payload)
        doc = {**self._contact_fields(data), **(internal or {})}
        # a user's new contact is theirs unless the request names another owner (or null)
        if "owner_id" not in doc and self.caller.user_id:
            doc["owner_id"] = self.caller.user_id
        if self._owners() is not None:
            self._check_owner(doc.get("owner_id"))
        doc.setdefault("status", "lead")
        doc.setdefault("do_not_contact", False)
        now = utcnow()
        doc.update({"created_at": now, "updated_at": now, "deleted_at": None,
                    "last_contacted_at": None, "created_by": self.caller.user_id,
                    "version": 1})
        doc.update(search_fields(doc))
        duplicates = [d["_id"] for d in self.store.find_by_keys(doc["email_keys"], doc["phone_keys"])]
        if duplicates and not force:
            raise Conflict("A contact with this email or phone already exists",
                           {"existing_ids": duplicates})
        doc["possible_duplicates"] = duplicates
        self.store.insert_contact(doc)
        result = dump_contact(doc)
        self._timeline(doc["_id"], "contact_created", "Contact created", f"created:{doc['_id']}")
        return result, [_event("contact_created", {"contact": result})]

    def get(self, contact_id, include_deleted=False):
        doc = self.store.get_contact(contact_id, include_deleted)
        if not doc or not self._can_see(doc):
            raise NotFound("Contact not found", {"id": contact_id})
        return dump_contact(doc)

    def update(self, contact_id, payload):
        data = load(contact_in, payload, partial=True)
        current = self._editable(self.store.get_contact(contact_id), contact_id)
        if "owner_id" in data:
            self._check_owner(data["owner_id"])
        changes = self._contact_fields(data)
        merged = {**current, **changes}
        changes.update(search_fields(merged))
        changes["updated_at"] = utcnow()
        doc = self.store.update_contact(contact_id, changes)
        if not doc:
            raise NotFound("Contact not found", {"id": contact_id})
        changed = sorted(k for k in data if current.get(k) != doc.get(k))
        result = dump_contact(doc)
        self._timeline(contact_id, "contact_updated", "Contact updated", None,
                       {"fields": changed})
        return result, [_event("contact_updated", {"contact": result, "changed": changed})]

    def delete(self, contact_id):
        self._editable(self.store.get_contact(contact_id), contact_id)
        doc = self.store.soft_delete_contact(contact_id, utcnow())
        if not doc:
            raise NotFound("Contact not found", {"id": contact_id})
        result = dump_contact(doc)
        return result, [_event("contact_deleted", {"contact_id": contact_id, "contact": result})]

    def restore(self, contact_id):
        self._editable(self.store.get_contact(contact_id, include_deleted=True), contact_id)
        doc = self.store.restore_contact(contact_id, utcnow())
        if not doc:
            if self.store.get_contact(contact_id, include_deleted=True):
                return self.get(contact_id), []  # not deleted: restoring changes nothing
            raise NotFound("Contact not found", {"id": contact_id})
        result = dump_contact(doc)
        return result, [_event("contact_restored", {"contact": result})]

    def list(self, params):
        query_in = load(contact_list_query, params)
        custom_sort = self._custom_list(query_in)
        if custom_sort:
            sort_field, direction = custom_sort
        else:
            field, direction = parse_sort(query_in.get("sort"), CONTACT_SORTS, "-created_at")
            sort_field = CONTACT_SORTS[field]
        query = self._filter(query_in)
        docs, next_cursor = self.store.page_contacts(query, sort_field, direction,
                                                     query_in["limit"], query_in.get("cursor"))
        out = {"items": [dump_contact(d) for d in docs], "next_cursor": next_cursor}
        if query_in["include_total"]:
            out["total"] = self.store.count_contacts(query)
        return out

    def export_page(self, params, token, sessions, limit=500, ids_only=False):
        """The export's next `limit` contacts. The first call opens one sorted cursor and
        keeps it in this process (`sessions`); the token names it and the last contact
        given, so a call that lands on another replica, or after the cursor expired,
        reopens it right after that contact (a keyset restart) and loses nothing.
        `ids_only`: the contacts' ids only (`{"ids": [...]}`), read with a projection of
        the id and the sort key (a campaign's recipients: tens of thousands a call)."""
        query_in = load(contact_list_query, {k: v for k, v in params.items()
                                             if k not in ("limit", "cursor", "include_total")})
        field, direction = parse_sort(query_in.get("sort"), CONTACT_SORTS, "-created_at")
        sort_field = CONTACT_SORTS[field]
        state = decode_export_token(token) if token else {}
        session = sessions.take(state.get("s"), self.caller.user_id)
        if session is None:
            query = self._filter(query_in)
            session = sessions.open(self.store.export_cursor(
                query, sort_field, direction, after=state.get("c"), ids_only=ids_only,
                batch_size=5000 if ids_only else 500), self.caller.user_id)
        docs = list(itertools.islice(session.cursor, limit))
        out = ({"ids": [d["_id"] for d in docs]} if ids_only
               else {"items": [dump_contact(d) for d in docs]})
        if len(docs) < limit:
            sessions.close(session)
            return {**out, "next_cursor": None}
        sessions.keep(session)
        position = encode_cursor(sort_field, direction, docs[-1])
        return {**out, "next_cursor": encode_export_token({"s": session.id, "c": position})}

    def explain_list(self, params):
        query_in = load(contact_list_query, params)
        field, _ = parse_sort(query_in.get("sort"), CONTACT_SORTS, "-created_at")
        return self.store.explain_page(self._filter(query_in), CONTACT_SORTS[field])

    def lookup(self, params):
        query_in = load(lookup_query, params)
        field, keys = self._lookup_keys(query_in)
        # at most a few exact-key matches: visibility is checked on them (one indexed
        # predicate keeps the lookup an index probe, see store.lookup)
        return {"items": [dump_contact(d) for d in self.store.lookup(field, keys)
                          if self._can_see(d)]}

    def lookup_emails(self, emails):
        """{address: [contacts]} for many addresses at once (a mailbox sync's batch of
        senders): one indexed query per 50 addresses."""
        if not isinstance(emails, list) or len(emails) > 1000 or \
                not all(isinstance(e, str) and 3 <= len(e) <= 254 for e in emails):
            raise ValidationFailed("Invalid input", {"fields": {
                "emails": ["A list of at most 1000 addresses."]}})
        wanted = {e.strip().lower() for e in emails}
        found = {e: [] for e in wanted}
        for doc in self.store.lookup_many("email_keys", sorted(wanted)):
            if not self._can_see(doc):
                continue
            item = dump_contact(doc)
            for entry in item.get("emails") or []:
                address = (entry.get("email") or "").strip().lower()
                if address in found:
                    found[address].append(item)
        return found

    def explain_lookup(self, params):
        field, keys = self._lookup_keys(load(lookup_query, params))
        return self.store.explain_lookup(field, keys)

    def birthdays(self, month_day, cursor=None, limit=500):
        """Live contacts whose birthday is on `month_day` ("MM-DD"), a keyset page."""
        docs, next_cursor = self.store.page_birthdays(month_day, limit, cursor)
        return {"items": [dump_contact(d) for d in docs], "next_cursor": next_cursor}

    def timeline(self, contact_id, params):
        query_in = load(timeline_query, params)
        doc = self.store.get_contact(contact_id)  # a deleted contact's: found once restored
        if not doc or not self._can_see(doc):
            raise NotFound("Contact not found", {"id": contact_id})
        query = {"contact_id": contact_id}
        if query_in.get("kind"):
            query["kind"] = query_in["kind"]
        docs, next_cursor = self.store.page_timeline(query, query_in["limit"], query_in.get("cursor"))
        items = []
        for doc in docs:
            item = timeline_out.dump(doc)
            item["id"] = doc["_id"]
            items.append(item)
        return {"items": items, "next_cursor": next_cursor}

    def record_foreign_event(self, event):
        """An event of another service on the timeline of the contact it names: a group of
        one (record_foreign_events), so both paths store and touch alike."""
        self.record_foreign_events([foreign_entry(event)])

    def record_foreign_events(self, found):
        """A group commit's events (foreign_entry of each, None for one naming no contact):
        their entries in one insert (a redelivered one is a duplicate key, left out) and
        `last_contacted_at` moved once per contact, to its latest touch -> one None each."""
        entries = [f[0] for f in found if f is not None]
        self.store.add_timeline_many(entries)
        touched = {}
        for entry, when in filter(None, found):
            if when and (entry["contact_id"] not in touched or when > touched[entry["contact_id"]]):
                touched[entry["contact_id"]] = when
        self.store.touch_contacted_many(touched)
        return [None] * len(found)

    # companies
    def create_company(self, payload):
        data = load(company_in, payload)
        doc = self._company_fields(data)
        now = utcnow()
        doc.update({"created_at": now, "updated_at": now, "deleted_at": None,
                    "created_by": self.caller.user_id})
        self.store.insert_company(doc)
        result = dump_company(doc)
        return result, [_event("company_created", {"company": result})]

    def get_company(self, company_id, people_limit=100, people_cursor=None):
        doc = self.store.get_company(company_id)
        if not doc:
            raise NotFound("Company not found", {"id": company_id})
        result = dump_company(doc)
        people, next_cursor = self.store.page_company_people(company_id, self._visible(),
                                                             people_limit, people_cursor)
        result["people"] = [dump_contact(p) for p in people]
        result["people_next_cursor"] = next_cursor
        return result

    def update_company(self, company_id, payload):
        data = load(company_in, payload, partial=True)
        current = self.store.get_company(company_id)
        if not current:
            raise NotFound("Company not found", {"id": company_id})
        changes = self._company_fields(data)
        changes["updated_at"] = utcnow()
        doc = self.store.update_company(company_id, changes)
        if not doc:
            raise NotFound("Company not found", {"id": company_id})
        if "name" in data:
            self.store.set_company_name(company_id, doc["name"])
        result = dump_company(doc)
        return result, [_event("company_updated", {"company": result})]

    def delete_company(self, company_id):
        doc = self.store.update_company(company_id, {"deleted_at": utcnow(), "updated_at": utcnow()})
        if not doc:
            raise NotFound("Company not found", {"id": company_id})
        result = dump_company(doc)
        return result, [_event("company_deleted", {"company_id": company_id, "company": result})]

    def restore_company(self, company_id):
        if not self.store.get_company(company_id, include_deleted=True):
            raise NotFound("Company not found", {"id": company_id})
        doc = self.store.update_company(company_id, {"deleted_at": None, "updated_at": utcnow()},
                                        include_deleted=True)
        return dump_company(doc), [_event("company_restored", {"company": dump_company(doc)})]

    def list_companies(self, params):
        query_in = load(company_list_query, params)
        custom_sort = self._custom_list(query_in, "company")
        if custom_sort:
            sort_field, direction = custom_sort
        else:
            field, direction = parse_sort(query_in.get("sort"), COMPANY_SORTS, "-created_at")
            sort_field = COMPANY_SORTS[field]
        query = self.store.company_filter(query_in)
        docs, next_cursor = self.store.page_companies(query, sort_field, direction,
                                                      query_in["limit"], query_in.get("cursor"))
        out = {"items": [dump_company(d) for d in docs], "next_cursor": next_cursor}
        if query_in["include_total"]:
            out["total"] = self.store.count_companies(query)
        return out

    # helpers
    # typed custom fields (crm_common.custom_fields): checked on every write
    def typed_custom(self, entity, values):
        return custom_fields.check_values(self.store.custom_fields.of(entity), values,
                                          self.region, self.store.active_user_ids)

    def completeness_records(self, entity, fields, owner_id):
        return self.store.completeness_records(entity, custom_fields.projection(fields),
                                               owner_id, self._visible())

    def _custom_list(self, query_in, entity="contact"):
        """Puts the typed custom-field filters (`cf.<key>...`) into `query_in` as
        `custom_query`; answers (path, direction) for a `sort=cf.<key>`, else None."""
        query_in["custom_query"], custom_sort = custom_fields.list_query(
            lambda: self.store.custom_fields.of(entity), query_in, self.region)
        return custom_sort

    def _contact_fields(self, data):
        doc = dict(data)
        if "custom" in data:
            doc["custom"] = self.typed_custom("contact", data["custom"])
        if "emails" in data:
            doc["emails"] = normalize_emails(data["emails"])
        if "phones" in data:
            doc["phones"] = normalize_phones(data["phones"], self.region)
        if "birthday" in data:
            doc["birthday"] = data["birthday"].isoformat() if data["birthday"] else None
            # "MM-DD", indexed: the notifications service's daily birthday list
            doc["birthday_md"] = doc["birthday"][5:10] if doc["birthday"] else None
        if "messengers" in data:
            doc["messengers"] = normalize_messengers(data["messengers"])
        if "tags" in data:
            doc["tags"] = sorted(set(data["tags"]))
        for key in ("first_name", "last_name"):
            if key in data:
                doc[key] = (data[key] or "").strip()
        if data.get("company_id"):
            company = self.store.get_company(data["company_id"])
            if not company:
                raise ValidationFailed("Invalid input",
                                       {"fields": {"company_id": ["Unknown company."]}})
            doc["company_name"] = company["name"]
        elif "company_id" in data:
            doc["company_name"] = None
        return doc

    def _company_fields(self, data):
        doc = dict(data)
        if "custom" in data:
            doc["custom"] = self.typed_custom("company", data["custom"])
        if "emails" in data:
            doc["emails"] = normalize_emails(data["emails"])
        if "phones" in data:
            doc["phones"] = normalize_phones(data["phones"], self.region)
        if "tags" in data:
            doc["tags"] = sorted(set(data["tags"]))
        return doc


    # Visibility (docs/auth.md): admins, API keys and services acting on their own see every
    # contact; a manager those owned by themselves or their team; an agent their own. A
    # contact with no owner is shared: everyone reads it, a manager or an admin changes it.
    # Hidden contacts answer 404; visible ones the caller may not change answer 403.
    def _owners(self):
        """The owner ids this caller may act for; None = anyone (admin or system)."""
        return self.caller.person_ids()

    def _visible(self):
        """The owner_id values of the contacts this caller sees; None = every contact."""
        owners = self._owners()
        return None if owners is None else owners + [None]

    def _can_see(self, doc):
        owners = self._owners()
        return owners is None or doc.get("owner_id") in owners + [None]

    def _editable(self, doc, contact_id):
        if not doc or not self._can_see(doc):
            raise NotFound("Contact not found", {"id": contact_id})
        owners = self._owners()
        if owners is not None and doc.get("owner_id") not in (
                owners + [None] if self.caller.role == "manager" else owners):
            raise Forbidden("Only the owner, their manager or an admin can change this contact",
                            {"id": contact_id, "owner_id": doc.get("owner_id")})
        return doc

    def _check_owner(self, owner_id):
        self.caller.check_assign(owner_id, "owner_id")

    def _lookup_keys(self, query_in):
        if query_in.get("email"):
            return "email_keys", [query_in["email"].strip().lower()]
        parsed = normalize_phone(query_in["phone"], self.region)
        if not parsed["e164"]:
            raise ValidationFailed("Invalid input", {"fields": {"phone": ["Not a phone number."]}})
        return "phone_keys", [parsed["e164"]]

    def _timeline(self, contact_id, kind, summary, dedupe_key, data=None):
        self.store.add_timeline({"contact_id": contact_id, "kind": kind, "summary": summary,
                                 "actor_id": self.caller.user_id,
                                 "ref": {"service": SERVICE, "type": "contact", "id": contact_id},
                                 "data": data or {}, "dedupe_key": dedupe_key})


def encode_export_token(state):
    return sign_token(state)


def decode_export_token(token):
    """{"s": session id, "c": keyset cursor}, signed like every cursor (crm_common.cursors)."""
    state = verify_token(token)
    if not all(isinstance(state.get(k), (str, type(None))) for k in ("s", "c")):
        raise invalid_cursor("Not a cursor of this list.")
    return state
