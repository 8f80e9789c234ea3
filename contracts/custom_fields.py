"""Typed custom fields, one API for every entity: admins define them per entity (contact,
company, deal, task); the service that owns the entity keeps the definitions and validates
every write against them (crm_common/custom_fields.py). A field is stored under its stable
`key` in the record's `custom` object; its label can change and a retired field keeps its
values."""
from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from crm_common.fields import Pattern, PageOf

ENTITIES = ("contact", "company", "deal", "task")
# the service that owns each entity and keeps its fields
OWNERS = {"contact": "contacts", "company": "contacts", "deal": "deals", "task": "tasks"}
TYPES = ("text", "long_text", "number", "money", "date", "datetime", "boolean", "select",
         "multi_select", "user", "url", "email", "phone")
CHOICE_TYPES = ("select", "multi_select")
MAX_FIELDS = 50
KEY = Pattern(r"^[a-z][a-z0-9_]{0,39}$",
                      error="Lowercase letters, digits and _, starting with a letter (max 40).")
_OPTIONS = fields.List(fields.String(validate=validate.Length(1, 100)),
                       validate=validate.Length(max=200),
                       metadata={"description": "select / multi_select: the allowed values"})


class CustomFieldIn(Schema):
    entity = fields.String(required=True, validate=validate.OneOf(ENTITIES))
    key = fields.String(required=True, validate=KEY, metadata={
        "description": "stable: values are stored under it (custom.<key>); never changes"})
    label = fields.String(required=True, validate=validate.Length(1, 100))
    type = fields.String(required=True, validate=validate.OneOf(TYPES))
    options = _OPTIONS
    required = fields.Boolean(load_default=False, metadata={
        "description": "part of the minimal data set (completeness report); writes are not "
                       "refused for it (stage rules are: required fields per stage)"})
    description = fields.String(allow_none=True, validate=validate.Length(max=500))

    @validates_schema
    def options_fit(self, data, partial=False, **kwargs):
        if partial:
            return
        options = data.get("options") or []
        if data.get("type") in CHOICE_TYPES and not options:
            raise ValidationError("A select field needs options.", "options")
        if data.get("type") not in CHOICE_TYPES and options:
            raise ValidationError("Only select fields have options.", "options")
        if len(set(options)) != len(options):
            raise ValidationError("Each option once.", "options")


class CustomFieldPatch(Schema):
    label = fields.String(validate=validate.Length(1, 100))
    options = _OPTIONS
    required = fields.Boolean()
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    retired = fields.Boolean(metadata={
        "description": "a retired field takes no new values; stored values are kept and shown"})


class CustomFieldOut(Schema):
    id = fields.String(metadata={"description": "<entity>:<key>"})
    entity = fields.String()
    key = fields.String()
    label = fields.String()
    type = fields.String()
    options = fields.List(fields.String())
    required = fields.Boolean()
    description = fields.String(allow_none=True)
    retired = fields.Boolean()
    created_at = fields.String()
    updated_at = fields.String()


class CustomFieldQuery(Schema):
    entity = fields.String(required=True, validate=validate.OneOf(ENTITIES))
    include_retired = fields.Boolean(load_default=True)


class CustomFieldPage(PageOf):
    items = fields.List(fields.Nested(CustomFieldOut))


# --- the minimal data set per entity and the completeness report --------------------------

STANDARD_FIELDS = {
    "contact": ("first_name", "last_name", "emails", "phones", "position", "company_id",
                "birthday", "source", "tags"),
    "company": ("name", "domain", "industry", "emails", "phones", "address"),
    "deal": ("amount", "expected_close_date", "source", "contact_id", "company_id", "notes"),
    "task": ("due_at", "description", "contact_id", "deal_id"),
}


class MinimalIn(Schema):
    standard = fields.List(fields.String(validate=validate.Length(1, 40)), required=True,
                           validate=validate.Length(max=20), metadata={
        "description": "standard fields every record should have (the custom ones are those "
                       "defined with required=true)"})


class MinimalOut(Schema):
    entity = fields.String()
    standard = fields.List(fields.String())
    custom = fields.List(fields.String(), metadata={"description": "keys of required custom fields"})
    fields_ = fields.List(fields.String(), data_key="fields", metadata={
        "description": "the whole set as the report names them (custom ones as custom.<key>)"})


class CompletenessQuery(Schema):
    entity = fields.String(required=True, validate=validate.OneOf(ENTITIES))
    owner_id = fields.String(validate=validate.Length(1, 40))


class CompletenessRow(Schema):
    owner_id = fields.String(allow_none=True)
    records = fields.Integer()
    complete = fields.Integer(metadata={"description": "records with every minimal field filled"})
    share = fields.Float(allow_none=True, metadata={"description": "complete / records"})
    missing = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "per field, how many records lack it"})


class CompletenessReport(Schema):
    entity = fields.String()
    fields_ = fields.List(fields.String(), data_key="fields")
    items = fields.List(fields.Nested(CompletenessRow))


# --- lists: filters and sorts on typed custom fields --------------------------------------

def custom_sort_field(*names):
    """`?sort=` of a list that also sorts by its typed custom fields (`cf.<key>`)."""
    return fields.String(validate=Pattern(
        r"^-?(" + "|".join(names) + r"|cf\.[a-z][a-z0-9_]{0,39})$",
        error="Sort by " + ", ".join(names) + " or cf.<custom field key> (- for descending)."))


class CustomFilters(Schema):
    """What a list filtered by typed custom fields accepts besides its own parameters."""
    custom_filters = fields.Dict(keys=fields.String(validate=Pattern(
        r"^cf\.[A-Za-z_][A-Za-z0-9_]{0,63}(\.(gte|lte|ne))?$")), values=fields.String(), metadata={
        "description": "typed custom fields: `cf.<key>=value` (equals), `cf.<key>.gte=`, "
                       "`.lte=`, `.ne=` as query parameters (gathered here)"})

    @pre_load
    def gather_custom_filters(self, data, **kwargs):
        """`cf.<key>[.op]` parameters into custom_filters (checked against the definitions
        by the owning service: crm_common.custom_fields.list_filters)."""
        if not isinstance(data, dict) or not any(str(k).startswith("cf.") for k in data):
            return data
        data = dict(data)
        gathered = dict(data.pop("custom_filters", None) or {})
        for key in [k for k in data if str(k).startswith("cf.")]:
            gathered[key] = data.pop(key)
        data["custom_filters"] = gathered
        return data
