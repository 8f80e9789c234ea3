"""Merging duplicate contacts into one survivor, and finding probable duplicates.

Conflict rule of a merge (docs/import.md):
- emails, phones, messengers, tags: the union (survivor's first, then each source's in the order given);
- custom fields and single fields (names, position, company, owner, birthday, source):
  the survivor's non-empty value wins; an empty one is filled from the first source, in
  the order given, that has it;
- do_not_contact: true if any of them says so; last_contacted_at: the latest;
- status stays the survivor's;
- `keep` {field: contact id} overrides the single-field rule: that contact's value survives.
The sources are soft-deleted with `merged_into` (restorable with /contacts/{id}/restore);
the merge is recorded with the survivor's before-image.
"""
from crm_common.errors import ValidationFailed
from crm_common.messaging.events import envelope
from crm_common.timeutil import utcnow
from crm_common.validation import load
from contracts import contacts as schemas
from services.contacts.domain import search_fields
from services.contacts.operations import Contacts, dump_contact

SCALARS = ("first_name", "last_name", "position", "company_id", "company_name", "owner_id",
           "birthday", "source", "acquisition")
SCORES = {"email": 0.95, "phone": 0.9, "name_company": 0.7}

merge_in = schemas.MergeIn()
duplicates_query = schemas.DuplicatesQuery()


def merged_fields(survivor, sources, keep=None):
    """The survivor's new fields after absorbing `sources` (see the rule above); `keep`
    {field: contact id} names the contact whose value of a field survives as it is."""
    out = {}
    everyone = [survivor, *sources]
    for key in SCALARS:
        value = survivor.get(key)
        if key in (keep or {}):
            value = next(c for c in everyone if c["_id"] == keep[key]).get(key)
        elif value in (None, ""):
            value = next((s[key] for s in sources if s.get(key) not in (None, "")), value)
        out[key] = value
    if out["company_id"] != survivor.get("company_id"):  # name follows the company taken
        donor = next(s for s in sources if s.get("company_id") == out["company_id"])
        out["company_name"] = donor.get("company_name")
    out["emails"] = _union((c.get("emails") or [] for c in everyone), "email")
    out["phones"] = _union((c.get("phones") or [] for c in everyone), "e164")
    out["messengers"] = _union((c.get("messengers") or [] for c in everyone), "key")
    out["tags"] = sorted({t for c in everyone for t in c.get("tags") or []})
    custom = {}
    for contact in everyone:
        for key, value in (contact.get("custom") or {}).items():
            if custom.get(key) in (None, "") and value not in (None, ""):
                custom[key] = value
            custom.setdefault(key, value)
    out["custom"] = custom
    out["do_not_contact"] = any(c.get("do_not_contact") for c in everyone)
    touched = [c["last_contacted_at"] for c in everyone if c.get("last_contacted_at")]
    out["last_contacted_at"] = max(touched) if touched else None
    out["birthday_md"] = out["birthday"][5:10] if out.get("birthday") else None
    out["merged_from"] = list(survivor.get("merged_from") or []) + [s["_id"] for s in sources]
    return out


def _union(lists, key):
    seen, out = set(), []
    for items in lists:
        for item in items:
            if item.get(key) not in seen:
                seen.add(item.get(key))
                out.append(item)
    return out


class Merges:
    def __init__(self, store, import_store, caller):
        self.contacts = Contacts(store, caller)
        self.store = store
        self.bulk = import_store
        self.caller = caller

    def merge(self, survivor_id, payload):
        data = load(merge_in, payload)
        source_ids = list(dict.fromkeys(data["source_ids"]))
        if survivor_id in source_ids:
            raise ValidationFailed("A contact cannot be merged into itself",
                                   {"fields": {"source_ids": ["Contains the survivor's id."]}})
        survivor = self.contacts._editable(self.store.get_contact(survivor_id), survivor_id)
        found = {d["_id"]: d for d in self.bulk.live_contacts(source_ids, {})}
        missing = [i for i in source_ids if i not in found]
        if missing:
            raise ValidationFailed("Unknown or deleted source contacts",
                                   {"fields": {"source_ids": missing}})
        keep = data.get("keep") or {}
        strangers = {k: [v] for k, v in keep.items() if v != survivor_id and v not in found}
        if strangers:
            raise ValidationFailed("keep names a contact that is not part of the merge",
                                   {"fields": {"keep": strangers}})
        sources = [self.contacts._editable(found[i], i) for i in source_ids]
        changes = merged_fields(survivor, sources, keep)
        now = utcnow()
        changes.update(search_fields({**survivor, **changes}))
        changes["updated_at"] = now
        record = {"survivor_id": survivor_id, "merged_ids": source_ids, "at": now,
                  "by": self.caller.user_id, "survivor_before": survivor}
        doc = self.bulk.merge(survivor_id, survivor.get("version"), changes, source_ids, record)
        if doc is None:
            from crm_common.errors import Conflict
            raise Conflict("The survivor changed during the merge; try again",
                           {"id": survivor_id})
        result = dump_contact(doc)
        result["merged_ids"] = source_ids
        result["merge_id"] = record["_id"]
        self.contacts._timeline(survivor_id, "contact_merged",
                                f"Merged {len(source_ids)} duplicate(s) into this contact",
                                f"merged:{record['_id']}", {"merged_ids": source_ids})
        event = envelope("contacts", "contact_merged", {
            "survivor_id": survivor_id, "merged_ids": source_ids, "contact": dump_contact(doc),
            "contact_id": survivor_id, "owner_id": doc.get("owner_id"),
            "actor_id": self.caller.user_id, "merge_id": record["_id"]})
        return result, [event]

    def duplicates(self, params):
        query_in = load(duplicates_query, params)
        visible = self.contacts._visible()
        scan = query_in["limit"] * 20
        edges = []  # (reason, key, ids)
        for reason, field in (("email", "email_keys"), ("phone", "phone_keys")):
            for group in self.bulk.duplicate_groups(field, visible, scan):
                if field == "phone_keys" and not str(group["_id"]).startswith("+"):
                    continue  # national digits repeat the E.164 key (and may clash across countries)
                edges.append((reason, str(group["_id"]), sorted(group["ids"])))
        for group in self.bulk.name_company_groups(visible, scan):
            key = f"{group['_id']['n']}|{group['_id'].get('c') or ''}"
            edges.append(("name_company", key, sorted(group["ids"])))
        groups = _connected(edges)
        items = []
        for ids, reasons, keys in groups:
            miss = 1.0
            for reason in reasons:
                miss *= 1 - SCORES[reason]
            score = round(1 - miss, 4)
            if score >= query_in["min_score"]:
                items.append({"score": score, "reasons": sorted(reasons), "keys": sorted(keys),
                              "contact_ids": sorted(ids)})
        items.sort(key=lambda g: (-g["score"], g["contact_ids"]))
        items = items[:query_in["limit"]]
        brief = self.bulk.contacts_brief({i for g in items for i in g["contact_ids"]})
        for group in items:
            group["contacts"] = [_brief(brief[i]) for i in group["contact_ids"] if i in brief]
        return {"items": items}


def _brief(doc):
    return {"id": doc["_id"], "first_name": doc.get("first_name"),
            "last_name": doc.get("last_name"),
            "emails": [e["email"] for e in doc.get("emails") or []],
            "phones": [p.get("e164") for p in doc.get("phones") or []],
            "company_name": doc.get("company_name"), "owner_id": doc.get("owner_id")}


def _connected(edges):
    """Groups of contacts linked by any shared key (union-find), with their reasons."""
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for _, _, ids in edges:
        for other in ids[1:]:
            parent[find(other)] = find(ids[0])
    groups = {}
    for reason, key, ids in edges:
        root = find(ids[0])
        entry = groups.setdefault(root, [set(), set(), set()])
        entry[0].update(ids)
        entry[1].add(reason)
        entry[2].add(f"{reason}:{key}")
    return list(groups.values())
