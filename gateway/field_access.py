"""Field-level grants of custom roles (contracts/roles.py `fields`): `read` shows a field but
refuses writes to it, `hidden` also keeps it out of everything the caller receives. The one
place that applies them, for every route (gateway/api.py asks `guard` after authorizing),
the contacts export (`hidden_columns`) and the live stream (`redact_event`):

- a write (body key, or `custom.<key>` of its `custom`) naming a field the role may not
  change is 403 `details.fields` before any service is asked, so nothing changes; a merge
  or an import (which write fields the caller does not name) is refused while any contact
  field is read-only, or the deal fields it repoints (`contact_id`, `contacts`) are;
  fields written together count as one (`COUPLED`: the people on a deal and its primary
  `contact_id`), so a read-only `contact_id` also refuses `PUT /deals/{id}/contacts`;
- a list filter or sort on a hidden field is 403 (its values would show through the order),
  and so is a route whose answer is a hidden field (`FIELD_ROUTES`: a deal's people);
- answers lose hidden fields: a record, the `items` of a page, and the records nested in
  another answer (`NESTED`); search hits lose what shows a hidden field (a deal's amount in
  its subtitle, a highlighted email or phone); while deal amounts are hidden, report and
  target figures made of them (`MONEY`) are left out;
- a hidden field never makes a record match a search or a list's `q` (`search_access`:
  the index query matches only by the fields the caller reads).
Built-in roles and API keys have no field grants: their answers are untouched."""
import re

from crm_common.errors import Forbidden

WRITES = ("POST", "PATCH", "PUT", "DELETE")
RECORD_OBJECTS = ("contacts", "companies", "deals", "tasks")
KIND_OBJECT = {"contact": "contacts", "company": "companies", "deal": "deals", "task": "tasks"}
# records inside another object's answer: {object: {key: object of its records}}
NESTED = {"companies": {"people": "contacts"},
          "tasks": {"overdue": "tasks", "today": "tasks", "deals_without_next_step": "deals"}}
# report and target figures computed from deal amounts (contracts/deals.py)
MONEY = re.compile(r"amount|^avg_deal_size$|^share$|^cost_per_won_deal$")
MONEY_OBJECTS = ("reports", "targets", "sales-reports")
# a shown money text of a search card: "1,234.50 EUR"
MONEY_TEXT = re.compile(r"^-?[\d,]+\.\d\d(?: [A-Z]{3})?$")
# fields one write changes together: {object: {body key: the other fields it changes}}
COUPLED = {"deals": {"contacts": ("contact_id",), "contact_id": ("contacts",)}}
# routes whose whole answer is one field of a record: {route path: (object, its fields)}
FIELD_ROUTES = {"/api/v1/deals/{deal_id}/contacts": ("deals", ("contacts", "contact_id"))}
# what a contacts merge changes besides contact fields: the merged people's deals
MERGE_REPOINTS = {"deals": ("contact_id", "contacts")}
CUSTOM_PARAM = re.compile(r"^cf\.([a-z][a-z0-9_]{0,39})(?:\.(?:gte|lte|ne))?$")


def _names(identity, obj, levels):
    names = {name for name, access in (((identity or {}).get("fields") or {}).get(obj) or {}).items()
             if access in levels}
    coupled = COUPLED.get(obj, {})   # one field shown (or written) as two
    return names.union(*(coupled.get(n, ()) for n in names)) if coupled and names else names


def hidden(identity, obj):
    return _names(identity, obj, ("hidden",))


def read_only(identity, obj):
    return _names(identity, obj, ("read", "hidden"))


def is_hidden(names, field):
    """`field`: a standard name or custom.<key> (hidden also when all of `custom` is)."""
    return field in names or (field.startswith("custom.") and "custom" in names)


def strip(record, names, custom=None):
    """A copy of `record` without the `names` (custom.<key>: that key of `custom`, which
    a caller stripping many records passes once: `custom_of(names)`)."""
    if not names or not isinstance(record, dict):
        return record
    out = {k: v for k, v in record.items() if k not in names}
    custom = custom_of(names) if custom is None else custom
    if custom and isinstance(out.get("custom"), dict):
        out["custom"] = {k: v for k, v in out["custom"].items() if k not in custom}
    return out


def custom_of(names):
    return {n[7:] for n in names if n[:7] == "custom."}


def redact_records(identity, obj, answer):
    """A record, a page of them, or an answer nesting some, without the hidden fields."""
    names = hidden(identity, obj)
    nested = {key: found for key, inner in NESTED.get(obj, {}).items()
              if (found := hidden(identity, inner))}
    if not isinstance(answer, dict) or not (names or nested):
        return answer

    custom = custom_of(names)
    inner_custom = {key: custom_of(inner_names) for key, inner_names in nested.items()}

    def one(record):
        out = strip(record, names, custom) if "id" in record else dict(record)
        for key, inner_names in nested.items():
            if isinstance(out.get(key), list):
                out[key] = [strip(item, inner_names, inner_custom[key]) for item in out[key]]
        return out

    if isinstance(answer.get("items"), list):
        return {**answer, "items": [one(item) if isinstance(item, dict) else item
                                    for item in answer["items"]]}
    return one(answer)


def drop_money(answer):
    if isinstance(answer, dict):
        return {k: drop_money(v) for k, v in answer.items() if not MONEY.search(k)}
    if isinstance(answer, list):
        return [drop_money(v) for v in answer]
    return answer


def redact_hit(identity, hit):
    """A search hit without what would show a hidden field of its record."""
    obj = KIND_OBJECT.get(hit.get("type"))
    names = hidden(identity, obj) if obj else set()
    if not names:
        return hit
    hit = dict(hit)
    light = hit.get("highlight") or {}
    if (light.get("field") == "email" and "emails" in names) or (
            light.get("field") == "phone" and "phones" in names):
        hit["highlight"] = None
    if obj == "deals" and "amount" in names and hit.get("subtitle"):
        parts = hit["subtitle"].split(" · ")
        kept = [p for p in parts if not MONEY_TEXT.match(p)]
        if len(kept) != len(parts):
            hit["subtitle"] = " · ".join(kept) or None
            if light.get("field") == "subtitle":
                hit["highlight"] = None
    return hit


class Guard:
    """What a custom role's field grants change on one route."""

    def __init__(self, identity, route, obj):
        self.identity, self.route, self.obj = identity, route, obj

    def check(self, params, body):
        """403 before the route runs: writes to read-only fields, filters on hidden ones."""
        identity, obj = self.identity, self.obj
        if self.route.method in WRITES:
            merge = self.route.path.endswith("/merge")
            contacts_locked = read_only(identity, "contacts")
            if contacts_locked and (obj == "imports" or merge):
                raise Forbidden("Your role may not change some contact fields, which this "
                                "writes", {"fields": sorted(contacts_locked)})
            repointed = sorted(f"{other}.{name}" for other, names in MERGE_REPOINTS.items()
                               for name in read_only(identity, other) if name in names)
            if merge and repointed:
                raise Forbidden("Your role may not change the contacts of deals, which a "
                                "merge repoints", {"fields": repointed})
            locked = read_only(identity, obj) if obj in RECORD_OBJECTS else set()
            named = [f"custom.{k}" if key == "custom" else key
                     for key, value in (body or {}).items()
                     for k in (value if key == "custom" and isinstance(value, dict) else [None])]
            refused = sorted({n for n in named if is_hidden(locked, n)})
            if refused:
                raise Forbidden("Your role may not change these fields", {"fields": refused})
        shown = FIELD_ROUTES.get(self.route.path)
        refused = sorted(set(shown[1]) & hidden(identity, shown[0])) if shown else []
        if refused:   # reading it, or writing it (whose answer shows it)
            raise Forbidden("Your role may not see these fields", {"fields": refused})
        names = hidden(identity, obj) if obj in RECORD_OBJECTS else set()
        if names and params:
            asked = []
            for key, value in params.items():
                custom = CUSTOM_PARAM.match(str(key))
                asked.append(f"custom.{custom.group(1)}" if custom else str(key))
                if key == "sort" and value:
                    sort = str(value).lstrip("-")
                    asked.append(f"custom.{sort[3:]}" if sort.startswith("cf.") else sort)
            refused = sorted({n for n in asked if is_hidden(names, n)})
            if refused:
                raise Forbidden("Your role may not see these fields", {"fields": refused})

    def redact(self, answer):
        if self.obj == "search" and isinstance(answer, dict) and isinstance(
                answer.get("items"), list):
            return {**answer, "items": [redact_hit(self.identity, h) for h in answer["items"]]}
        if self.obj in MONEY_OBJECTS:
            return drop_money(answer) if "amount" in hidden(self.identity, "deals") else answer
        return redact_records(self.identity, self.obj, answer)


def guard(identity, route, permission):
    """The route's Guard when the caller's role has field grants, else None."""
    if not (identity or {}).get("fields") or permission is None:
        return None
    return Guard(identity, route, permission.name.partition(":")[0])


# a search type's hidden fields besides its own object's: a deal is found by its contact's
# and company's words, under the grants of those (and not at all while its contact_id /
# contacts or company_id is hidden)
RELATED = {"deal": (("contact", "contacts", ("contact_id", "contacts")),
                    ("company", "companies", ("company_id",)))}


def search_access(identity, types, custom_keys_of):
    """{search type: {"hidden": [field], "custom_keys": [key]}} for the search service's
    index query (services/search/query.py readable_query) of the types whose hidden fields
    must not make a record match, or None (no hidden field). `custom_keys_of(type)`: the
    type's custom field keys, asked only while some (not all) of them are hidden."""
    if not (identity or {}).get("fields"):
        return None
    out = {}
    for kind in types:
        obj = KIND_OBJECT.get(kind)
        if obj is None:
            continue
        names = set(hidden(identity, obj))
        for prefix, other, links in RELATED.get(kind, ()):
            names |= {f"{prefix}.{n}" for n in hidden(identity, other)}
            if names & set(links):
                names.add(prefix)
        if not names:
            continue
        partial = "custom" not in names and any(n.startswith("custom.") for n in names)
        out[kind] = {"hidden": sorted(names),
                     "custom_keys": sorted(custom_keys_of(kind)) if partial else None}
    return out or None


def hidden_columns(identity, obj):
    """Export columns to leave out: hidden standard fields and custom keys."""
    names = hidden(identity, obj)
    return names, ({n[7:] for n in names if n.startswith("custom.")}, "custom" in names)


def redact_event(fields_of, kind, payload):
    """A stream event's envelope without the hidden fields of its record (`fields_of`: the
    listener's field grants; `kind`: the record kind the event is about)."""
    obj = KIND_OBJECT.get(kind)
    names = {n for n, a in ((fields_of or {}).get(obj) or {}).items() if a == "hidden"}
    data = payload.get("data") if isinstance(payload, dict) else None
    if not names or not isinstance(data, dict):
        return payload
    data = strip(data, names)   # e.g. deal_won's own amount
    if isinstance(data.get(kind), dict):
        data[kind] = strip(data[kind], names)
    return {**payload, "data": data}
