"""Typed custom fields (contracts/custom_fields.py), the part every owning service shares:
its definitions (`Definitions`, over the service's `custom_fields` collection), the admin
API over them (`CustomFieldAdmin`), the check of a write's `custom` values (`check_values`,
used by the API and imports), list filters and sorts on `custom.<key>`, and the OpenAPI
description of a company's fields.

Values are stored under the field's stable key; the label is presentation only, so a
rename touches no record. A retired field takes no new value and keeps the stored ones.
Keys with no definition keep the untyped behaviour of `custom` (crm_common.fields)."""
import re
from datetime import date

from pymongo import ASCENDING

from contracts import custom_fields as schemas
from crm_common.cursors import parse_sort
from crm_common.fields import DATE_PATTERN
from crm_common.errors import (EXPECTED, BadRequest, Conflict, Forbidden, NotFound,
                                ValidationFailed)
from crm_common.messaging.rpc import rpc
from crm_common.phones import normalize_phone
from crm_common.timeutil import as_utc, parse_iso, to_iso, utcnow
from crm_common.validation import load

MAX_TEXT = 500
MAX_LONG_TEXT = 2000
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
# a filter parameter: cf.<key> (equals) or cf.<key>.<op>
FILTER_PARAM = re.compile(r"^cf\.([a-z][a-z0-9_]{0,39})(?:\.(gte|lte|ne))?$")
# what can be filtered and sorted (a long text or a list is not sorted)
SORTABLE = ("text", "number", "money", "date", "datetime", "boolean", "select", "user", "url",
            "email", "phone")

field_in, field_patch = schemas.CustomFieldIn(), schemas.CustomFieldPatch()
field_out, field_query = schemas.CustomFieldOut(), schemas.CustomFieldQuery()


def field_id(entity, key):
    return f"{entity}:{key}"


def dump_field(doc):
    out = field_out.dump({**doc, "created_at": to_iso(doc.get("created_at")),
                          "updated_at": to_iso(doc.get("updated_at"))})
    out["id"] = doc["_id"]
    out.setdefault("options", [])
    out["retired"] = bool(doc.get("retired"))
    return out


class Definitions:
    """A service's field definitions (collection `custom_fields`, `_id` = entity:key)."""

    def __init__(self, collection):
        self.collection = collection

    def ensure_indexes(self):
        self.collection.create_index([("entity", ASCENDING), ("position", ASCENDING)])

    def of(self, entity):
        """{key: definition} of an entity, retired ones included."""
        return {d["key"]: d for d in self.collection.find({"entity": entity})
                .sort("position", ASCENDING)}

    def get(self, entity, key):
        return self.collection.find_one({"_id": field_id(entity, key)})

    def insert(self, doc):
        """False when the key is taken (an upsert: a duplicate never aborts a transaction)."""
        result = self.collection.update_one({"_id": doc["_id"]}, {"$setOnInsert": doc},
                                            upsert=True)
        return result.upserted_id is not None

    def update(self, entity, key, changes):
        self.collection.update_one({"_id": field_id(entity, key)},
                                   {"$set": changes, "$inc": {"version": 1}})
        return self.get(entity, key)

    def count(self, entity):
        return self.collection.count_documents({"entity": entity})


class CustomFieldAdmin:
    """The admin API over one service's definitions. `entities` are the ones it owns;
    `value_index(entity, key)` (optional) indexes a new field's values for lists."""

    def __init__(self, definitions, caller, entities, value_index=None):
        self.definitions = definitions
        self.caller = caller
        self.entities = entities
        self.value_index = value_index

    def _admin(self):
        if self.caller.role not in (None, "admin"):
            raise Forbidden("Only admins define custom fields")

    def _entity(self, entity):
        if entity not in self.entities:
            raise ValidationFailed("Invalid input", {"fields": {"entity": [
                f"Not an entity of this service ({', '.join(self.entities)})."]}})
        return entity

    def list(self, params):
        q = load(field_query, params)
        self._entity(q["entity"])
        items = [dump_field(d) for d in self.definitions.of(q["entity"]).values()
                 if q["include_retired"] or not d.get("retired")]
        return {"items": items, "next_cursor": None}

    def get(self, entity, key):
        doc = self.definitions.get(self._entity(entity), key)
        if not doc:
            raise NotFound("Custom field not found", {"id": field_id(entity, key)})
        return dump_field(doc)

    def create(self, payload):
        self._admin()
        data = load(field_in, payload)
        entity = self._entity(data["entity"])
        count = self.definitions.count(entity)
        if count >= schemas.MAX_FIELDS:
            raise ValidationFailed("Too many custom fields",
                                   {"fields": {"key": [f"At most {schemas.MAX_FIELDS} per entity."]}})
        now = utcnow()
        doc = {"_id": field_id(entity, data["key"]), "entity": entity, "key": data["key"],
               "label": data["label"].strip(), "type": data["type"],
               "options": list(data.get("options") or []), "required": data["required"],
               "description": data.get("description"), "retired": False, "position": count,
               "created_at": now, "updated_at": now, "created_by": self.caller.user_id,
               "version": 1}
        if not self.definitions.insert(doc):
            raise Conflict("A field with this key exists (keys are never reused)",
                           {"id": doc["_id"]})
        if self.value_index and data["type"] in SORTABLE:
            self.value_index(entity, data["key"], data["type"])
        return dump_field(doc)

    def update(self, entity, key, payload):
        self._admin()
        data = load(field_patch, payload, partial=True)
        current = self.definitions.get(self._entity(entity), key)
        if not current:
            raise NotFound("Custom field not found", {"id": field_id(entity, key)})
        if "options" in data:
            if current["type"] not in schemas.CHOICE_TYPES:
                raise ValidationFailed("Invalid input", {"fields": {"options": [
                    "Only select fields have options."]}})
            if not data["options"] or len(set(data["options"])) != len(data["options"]):
                raise ValidationFailed("Invalid input", {"fields": {"options": [
                    "At least one option, each once."]}})
        changes = {k: v for k, v in data.items()}
        if "label" in changes:
            changes["label"] = changes["label"].strip()
        changes["updated_at"] = utcnow()
        return dump_field(self.definitions.update(entity, key, changes))


# --- values --------------------------------------------------------------------------------

def _invalid(errors):
    return ValidationFailed("Invalid custom field values", {"fields": {"custom": errors}})


def _value(definition, value, region):
    """The stored form of one value, or raises ValueError with the reason."""
    kind = definition["type"]
    if kind in ("text", "long_text"):
        limit = MAX_TEXT if kind == "text" else MAX_LONG_TEXT
        if not isinstance(value, str) or len(value) > limit:
            raise ValueError(f"Expected text of at most {limit} characters.")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("Expected a number.")
        return value
    if kind == "money":
        if (not isinstance(value, dict) or set(value) != {"amount", "currency"}
                or isinstance(value["amount"], bool) or not isinstance(value["amount"], int)
                or not isinstance(value["currency"], str)
                or value["currency"].upper() not in _currencies()):
            raise ValueError('Expected {"amount": integer minor units, "currency": ISO 4217}.')
        return {"amount": value["amount"], "currency": value["currency"].upper()}
    if kind == "date":
        try:
            return date.fromisoformat(value).isoformat() if isinstance(value, str) and len(value) == 10 else _raise()
        except ValueError:
            raise ValueError("Expected a date YYYY-MM-DD.")
    if kind == "datetime":
        try:
            parsed = parse_iso(value) if isinstance(value, str) and "T" in value else _raise()
        except (ValueError, TypeError):
            raise ValueError("Expected an ISO 8601 date-time with offset.")
        if parsed.tzinfo is None:
            raise ValueError("Expected an ISO 8601 date-time with offset.")
        # fixed width UTC text: sorts as time does
        return as_utc(parsed).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("Expected true or false.")
        return value
    if kind == "select":
        if value not in (definition.get("options") or []):
            raise ValueError(f"Not one of the options: {', '.join(definition.get('options') or [])}.")
        return value
    if kind == "multi_select":
        options = definition.get("options") or []
        if not isinstance(value, list) or any(v not in options for v in value):
            raise ValueError(f"Expected a list of options: {', '.join(options)}.")
        return list(dict.fromkeys(value))
    if kind == "user":
        if not isinstance(value, str) or not 1 <= len(value) <= 40:
            raise ValueError("Expected a user id.")
        return value
    if kind == "url":
        if not isinstance(value, str) or len(value) > 2000 or not URL.match(value):
            raise ValueError("Expected an http(s) URL.")
        return value
    if kind == "email":
        if not isinstance(value, str) or len(value) > 254 or not EMAIL.match(value):
            raise ValueError("Expected an e-mail address.")
        return value.strip().lower()
    if kind == "phone":
        phone = normalize_phone(value, region) if isinstance(value, str) else None
        if not phone or not phone["e164"] or not phone["valid"]:
            raise ValueError("Expected a phone number.")
        return phone["e164"]
    raise ValueError(f"Unknown field type {kind}.")


def _raise():
    raise ValueError()


def _currencies():
    from contracts.currencies import ISO_4217
    return ISO_4217


def check_values(definitions, values, region="IT", users=None):
    """`values` (a write's `custom`, already checked as untyped JSON) in their stored form:
    every defined key validated by its type; a retired field refused; null clears. Keys
    without a definition pass as they are. `users(ids)`: the ids among `ids` of known,
    active users (None: user fields are checked for shape only). Raises ValidationFailed naming each
    wrong key."""
    if not values:
        return values
    out, errors = {}, {}
    for key, value in values.items():
        definition = definitions.get(key)
        if definition is None or value is None:
            if definition is not None and definition.get("retired"):
                errors[key] = ["This field is retired."]
            out[key] = value
            continue
        if definition.get("retired"):
            errors[key] = ["This field is retired: it takes no new values."]
            continue
        try:
            out[key] = _value(definition, value, region)
        except ValueError as error:
            errors[key] = [str(error) or "Invalid value."]
    if users is not None:
        wanted = [v for k, v in out.items() if definitions.get(k, {}).get("type") == "user"
                  and k not in errors and v is not None]
        known = users(wanted) if wanted else set()
        for key, value in out.items():
            if definitions.get(key, {}).get("type") == "user" and value is not None \
                    and value not in known:
                errors[key] = ["Unknown or disabled user."]
    if errors:
        raise _invalid(errors)
    return out


def is_empty(value):
    return value is None or value == "" or value == [] or value == {}


# --- lists: filters and sorts on custom.<key> ---------------------------------------------

def list_filters(definitions, params, region="IT"):
    """The custom-field conditions of a list's parameters (`cf.<key>=v`, `cf.<key>.gte=v`,
    `.lte`, `.ne`; `v` as text from the URL) as a Mongo query part on `custom.<key>`."""
    query = {}
    for name, raw in (params or {}).items():
        match = FILTER_PARAM.match(name)
        if not match:
            if str(name).startswith("cf."):  # no key is like it (the contract's pattern is wider)
                raise BadRequest(f"Not a custom field filter: {name}", {"parameter": name})
            continue
        key, op = match.group(1), match.group(2)
        definition = definitions.get(key)
        if definition is None:
            raise BadRequest(f"No custom field {key!r} to filter by", {"parameter": name})
        value = _url_value(definition, raw, region, name)
        path = f"custom.{key}" + (".amount" if definition["type"] == "money" else "")
        condition = query.setdefault(path, {})
        if op is None:
            query[path] = value
            continue
        if not isinstance(condition, dict):
            raise BadRequest("Combine an equality with nothing else", {"parameter": name})
        condition["$" + op] = value
    return query


def _url_value(definition, raw, region, name):
    kind = definition["type"]
    try:
        if kind in ("number", "money"):
            number = float(raw)
            return int(number) if number.is_integer() else number
        if kind == "boolean":
            if raw.lower() not in ("true", "false"):
                raise ValueError("Expected true or false.")
            return raw.lower() == "true"
        if kind == "multi_select":
            return _value({**definition, "type": "select"}, raw, region)
        return _value(definition, raw, region)
    except (ValueError, TypeError) as error:
        raise BadRequest(f"Bad value for {name}: {error or 'invalid'}", {"parameter": name})


def sort_path(definitions, sort):
    """`cf.<key>` / `-cf.<key>` -> ("custom.<key>[.amount]", descending) or None when the
    sort is not a custom one."""
    if not sort or not sort.lstrip("-").startswith("cf."):
        return None
    key = sort.lstrip("-")[3:]
    definition = definitions.get(key)
    if definition is None or definition["type"] not in SORTABLE:
        raise BadRequest(f"Cannot sort by {sort.lstrip('-')!r}",
                         {"sortable": [f"cf.{k}" for k, d in definitions.items()
                                       if d["type"] in SORTABLE]})
    path = f"custom.{key}" + (".amount" if definition["type"] == "money" else "")
    return path, sort.startswith("-")


def has_value(path):
    """Sorting by a custom field lists the records that have a value for it (keyset pages
    cannot step over nulls)."""
    return {path: {"$exists": True, "$ne": None}}


# --- the OpenAPI document -------------------------------------------------------------------

JSON_TYPES = {
    "text": {"type": "string", "maxLength": MAX_TEXT},
    "long_text": {"type": "string", "maxLength": MAX_LONG_TEXT},
    "number": {"type": "number"},
    "money": {"type": "object", "required": ["amount", "currency"], "properties": {
        "amount": {"type": "integer", "description": "minor units"},
        "currency": {"type": "string", "minLength": 3, "maxLength": 3}}},
    "date": {"type": "string", "format": "date", "pattern": DATE_PATTERN},
    "datetime": {"type": "string", "format": "date-time"},
    "boolean": {"type": "boolean"},
    "user": {"type": "string", "description": "a user id"},
    "url": {"type": "string", "format": "uri"},
    "email": {"type": "string", "format": "email"},
    "phone": {"type": "string", "description": "stored as E.164"},
}


def json_schema(definition):
    kind = definition["type"]
    if kind == "select":
        schema = {"type": "string", "enum": list(definition.get("options") or [])}
    elif kind == "multi_select":
        schema = {"type": "array", "items": {"type": "string",
                                             "enum": list(definition.get("options") or [])}}
    else:
        schema = dict(JSON_TYPES[kind])
    schema = {**schema, "nullable": True, "title": definition["label"],
              "x-crm-field-type": kind}
    if definition.get("description"):
        schema["description"] = definition["description"]
    if definition.get("retired"):
        schema["readOnly"] = True
        schema["deprecated"] = True
    return schema


# --- imports: spreadsheet cells to typed values, columns matched by label ------------------

TRUE_WORDS, FALSE_WORDS = {"true", "yes", "y", "1", "si", "sì", "x"}, {"false", "no", "n", "0", ""}
_MONEY = re.compile(r"^\s*(?:([A-Za-z]{3})\s*)?(-?\d+(?:[.,]\d{1,2})?)\s*(?:([A-Za-z]{3}))?\s*$")


def _fold(text):
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def from_cell(definition, value):
    """A spreadsheet cell (text, or a number from XLSX) as the JSON value of its type; what
    cannot be read is left as it is, for check_values to refuse with the reason."""
    kind = definition["type"]
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str):
        return text
    if kind == "number":
        try:
            number = float(text.replace(",", "."))
            return int(number) if number.is_integer() else number
        except ValueError:
            return text
    if kind == "boolean":
        word = text.lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else text
    if kind == "money":
        match = _MONEY.match(text)
        if match and (match.group(1) or match.group(3)):
            major = match.group(2).replace(",", ".")
            units, _, cents = major.partition(".")
            sign = -1 if units.startswith("-") else 1
            amount = int(units.lstrip("-") or 0) * 100 + int((cents + "00")[:2])
            return {"amount": sign * amount, "currency": (match.group(1) or match.group(3)).upper()}
        return text
    if kind == "multi_select":
        return [part.strip() for part in re.split(r"[;,]", text) if part.strip()]
    return text or None


def import_values(definitions, values, region="IT", users=None):
    """A row's custom values: columns named by a field's key or label (any case, spaces or
    punctuation) go to that field, converted from their cells and checked. Returns
    (values, errors {key: reason}); a row with errors is refused whole."""
    by_name = {}
    for key, definition in definitions.items():
        by_name[_fold(key)] = key
        by_name.setdefault(_fold(definition["label"]), key)
    typed = {}
    for name, value in (values or {}).items():
        key = name if name in definitions else by_name.get(_fold(name), name)
        definition = definitions.get(key)
        typed[key] = from_cell(definition, value) if definition else value
    try:
        return check_values(definitions, typed, region, users), {}
    except ValidationFailed as error:
        return typed, {k: v[0] for k, v in error.details["fields"]["custom"].items()}


# --- the minimal data set and the completeness report ---------------------------------------

minimal_in, minimal_out = schemas.MinimalIn(), schemas.MinimalOut()
completeness_query = schemas.CompletenessQuery()


class Minimal:
    """The company's minimal data set of an entity: standard fields (stored beside the
    definitions, `_id` = minimal:<entity>) plus the custom fields defined required."""

    def __init__(self, definitions, caller, entities):
        self.definitions = definitions
        self.caller = caller
        self.entities = entities

    def _entity(self, entity):
        if entity not in self.entities:
            raise NotFound("No such entity here", {"entity": entity})
        return entity

    def fields(self, entity):
        doc = self.definitions.collection.find_one({"_id": f"minimal:{entity}"}) or {}
        custom = [k for k, d in self.definitions.of(entity).items()
                  if d.get("required") and not d.get("retired")]
        standard = list(doc.get("standard") or [])
        return {"entity": entity, "standard": standard, "custom": custom,
                "fields": standard + [f"custom.{k}" for k in custom]}

    def get(self, entity):
        return self.fields(self._entity(entity))

    def set(self, entity, payload):
        if self.caller.role not in (None, "admin"):
            raise Forbidden("Only admins set the minimal data set")
        self._entity(entity)
        data = load(minimal_in, payload)
        allowed = schemas.STANDARD_FIELDS[entity]
        unknown = [f for f in data["standard"] if f not in allowed]
        if unknown:
            raise ValidationFailed("Invalid input", {"fields": {"standard": [
                f"Not standard fields of a {entity}: {', '.join(unknown)} "
                f"(allowed: {', '.join(allowed)})."]}})
        self.definitions.collection.update_one(
            {"_id": f"minimal:{entity}"},
            {"$set": {"standard": list(dict.fromkeys(data["standard"])), "updated_at": utcnow()}},
            upsert=True)
        return self.fields(entity)

    def report(self, params, records, person_field="owner_id"):
        """Per person: how many of their records (those the caller sees: `records(fields,
        owner_id)` yields them with the needed fields) have the whole minimal set."""
        q = load(completeness_query, params)
        wanted = self.fields(self._entity(q["entity"]))["fields"]
        rows = {}
        for doc in records(q["entity"], wanted, q.get("owner_id")):
            person = doc.get(person_field)
            row = rows.setdefault(person, {"owner_id": person, "records": 0, "complete": 0,
                                           "missing": {f: 0 for f in wanted}})
            row["records"] += 1
            lacking = [f for f in wanted if _lacks(doc, f)]
            for name in lacking:
                row["missing"][name] += 1
            if not lacking:
                row["complete"] += 1
        items = sorted(rows.values(), key=lambda r: (r["owner_id"] is None, r["owner_id"] or ""))
        for row in items:
            row["share"] = round(row["complete"] / row["records"], 4) if row["records"] else None
        return {"entity": q["entity"], "fields": wanted, "items": items}


def _lacks(doc, name):
    value = doc
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return is_empty(value) or (name == "amount" and value == 0)


def projection(fields, person_field="owner_id"):
    """What a completeness read needs of each record."""
    out = {person_field: 1}
    for name in fields:
        out[name] = 1
    return out


def to_cell(definition, value):
    """A stored value as an export cell the import reads back (from_cell)."""
    if value is None:
        return ""
    kind = definition["type"]
    if kind == "money" and isinstance(value, dict):
        amount = value.get("amount") or 0
        sign = "-" if amount < 0 else ""
        return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d} {value.get('currency') or ''}".strip()
    if kind == "multi_select" and isinstance(value, list):
        return "; ".join(value)
    if kind == "boolean":
        return "yes" if value else "no"
    return value


def list_query(definitions_of, query_in, region="IT"):
    """A list's typed custom-field part from its loaded parameters (contracts'
    CustomFilters): (Mongo conditions on custom.<key>, (path, 1|-1) for a `sort=cf.<key>`
    or None). `definitions_of()` reads the definitions, only when the list uses them."""
    wanted = query_in.get("custom_filters") or {}
    custom_sort = (query_in.get("sort") or "").lstrip("-").startswith("cf.")
    if not wanted and not custom_sort:
        return {}, None
    definitions = definitions_of()
    conditions = list_filters(definitions, wanted, region)
    if not custom_sort:
        return conditions, None
    path, descending = sort_path(definitions, query_in["sort"])
    if path not in conditions:
        conditions.update(has_value(path))
    return conditions, (path, -1 if descending else 1)


def list_order(definitions_of, query_in, sorts, default, region="IT"):
    """(custom-field conditions, sort field, direction) of a list: list_query's, and its
    own `sorts` (API name -> stored field) when the sort is not a custom field's."""
    conditions, custom_sort = list_query(definitions_of, query_in, region)
    if custom_sort:
        return (conditions, *custom_sort)
    field, direction = parse_sort(query_in.get("sort"), sorts, default)
    return conditions, sorts[field], direction


class CustomFieldEntrypoints:
    """The custom-field and minimal-data RPCs of a service that owns entities (contacts,
    deals, tasks), like HealthEntrypoints. A service names its entities and what the
    completeness report reads: CUSTOM_ENTITIES, `custom_index` (the store's value indexer,
    or None) and `completeness_source()` -> (records function, owner field)."""
    CUSTOM_ENTITIES = ()

    @property
    def custom_index(self):
        return None

    @property
    def custom_field_admin(self):
        return CustomFieldAdmin(self.store.custom_fields, self.caller, self.CUSTOM_ENTITIES,
                                self.custom_index)

    @property
    def minimal(self):
        return Minimal(self.store.custom_fields, self.caller, self.CUSTOM_ENTITIES)

    @rpc(expected_exceptions=EXPECTED)
    def list_custom_fields(self, params):
        return self.custom_field_admin.list(params)

    @rpc(expected_exceptions=EXPECTED)
    def get_custom_field(self, entity, key):
        return self.custom_field_admin.get(entity, key)

    @rpc(expected_exceptions=EXPECTED)
    def create_custom_field(self, payload):
        return self.custom_field_admin.create(payload)

    @rpc(expected_exceptions=EXPECTED)
    def update_custom_field(self, entity, key, payload):
        return self.custom_field_admin.update(entity, key, payload)

    @rpc(expected_exceptions=EXPECTED)
    def get_minimal_fields(self, entity):
        return self.minimal.get(entity)

    @rpc(expected_exceptions=EXPECTED)
    def set_minimal_fields(self, entity, payload):
        return self.minimal.set(entity, payload)

    @rpc(expected_exceptions=EXPECTED)
    def completeness_report(self, params):
        return self.minimal.report(params, *self.completeness_source())
