"""The contacts API, one source: the service validates with these, the gateway validates
the same way before calling and generates the OpenAPI document from them."""
from marshmallow import (Schema, ValidationError, fields, pre_load, validate,
                         validates_schema)

from crm_common.fields import CustomFields, PageOf, PageQuery, UtcDateTime, tags_field

CONTACT_STATUSES = ("lead", "prospect", "customer", "churned", "inactive")
CHANNEL_TYPES = ("work", "home", "mobile", "other")


class EmailIn(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    type = fields.String(load_default="work", validate=validate.OneOf(CHANNEL_TYPES))

    @pre_load
    def accept_plain_string(self, data, **kwargs):
        return {"email": data} if isinstance(data, str) else data


class PhoneIn(Schema):
    number = fields.String(required=True, validate=validate.Length(3, 40))
    type = fields.String(load_default="mobile", validate=validate.OneOf(CHANNEL_TYPES))

    @pre_load
    def accept_plain_string(self, data, **kwargs):
        return {"number": data} if isinstance(data, str) else data


class EmailOut(Schema):
    email = fields.String()
    type = fields.String()


class PhoneOut(Schema):
    raw = fields.String()
    e164 = fields.String(allow_none=True)
    type = fields.String()
    valid = fields.Boolean()


class ContactIn(Schema):
    first_name = fields.String(validate=validate.Length(max=100))
    last_name = fields.String(validate=validate.Length(max=100))
    emails = fields.List(fields.Nested(EmailIn), validate=validate.Length(max=20))
    phones = fields.List(fields.Nested(PhoneIn), validate=validate.Length(max=20))
    company_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    position = fields.String(allow_none=True, validate=validate.Length(max=100))
    owner_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    tags = tags_field()
    source = fields.String(allow_none=True, validate=validate.Length(max=50))
    status = fields.String(validate=validate.OneOf(CONTACT_STATUSES))
    do_not_contact = fields.Boolean()
    birthday = fields.Date(allow_none=True)
    custom = CustomFields()

    @validates_schema
    def someone_to_reach(self, data, partial=False, **kwargs):
        if partial:
            return
        if not any(data.get(k) for k in ("first_name", "last_name", "emails", "phones")):
            raise ValidationError("A contact needs a name, an email or a phone.", "_schema")


class ContactOut(Schema):
    id = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    emails = fields.List(fields.Nested(EmailOut))
    phones = fields.List(fields.Nested(PhoneOut))
    company_id = fields.String(allow_none=True)
    company_name = fields.String(allow_none=True)
    position = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    source = fields.String(allow_none=True)
    status = fields.String()
    do_not_contact = fields.Boolean()
    birthday = fields.String(allow_none=True)
    custom = fields.Dict()
    last_contacted_at = UtcDateTime(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    deleted_at = UtcDateTime(allow_none=True)
    created_by = fields.String(allow_none=True)
    possible_duplicates = fields.List(fields.String())


class ContactListQuery(PageQuery):
    q = fields.String(validate=validate.Length(1, 100))
    tag = fields.String(validate=validate.Length(1, 50))
    owner_id = fields.String(validate=validate.Length(1, 40))
    company_id = fields.String(validate=validate.Length(1, 40))
    source = fields.String(validate=validate.Length(1, 50))
    status = fields.String(validate=validate.OneOf(CONTACT_STATUSES))
    not_contacted_since = UtcDateTime()
    created_after = UtcDateTime()
    created_before = UtcDateTime()
    include_deleted = fields.Boolean(load_default=False)


class ContactPage(PageOf):
    items = fields.List(fields.Nested(ContactOut))


class LookupQuery(Schema):
    phone = fields.String(validate=validate.Length(3, 40))
    email = fields.String(validate=validate.Length(3, 254))

    @validates_schema
    def one_of(self, data, **kwargs):
        if bool(data.get("phone")) == bool(data.get("email")):
            raise ValidationError("Give exactly one of phone or email.", "_schema")


class LookupResult(Schema):
    items = fields.List(fields.Nested(ContactOut))


class CreateQuery(Schema):
    force = fields.Boolean(load_default=False)


class TimelineEntry(Schema):
    id = fields.String()
    contact_id = fields.String()
    occurred_at = UtcDateTime()
    kind = fields.String(metadata={"description": "e.g. contact_created, call, deal_won, task_completed"})
    summary = fields.String()
    actor_id = fields.String(allow_none=True)
    ref = fields.Dict(metadata={"description": '{"service", "type", "id"} of the record behind the entry'})
    data = fields.Dict()


class TimelineQuery(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    cursor = fields.String(validate=validate.Length(max=500))
    kind = fields.String(validate=validate.Length(1, 50))


class TimelinePage(PageOf):
    items = fields.List(fields.Nested(TimelineEntry))


class AddressIn(Schema):
    street = fields.String(validate=validate.Length(max=200))
    city = fields.String(validate=validate.Length(max=100))
    region = fields.String(validate=validate.Length(max=100))
    postal_code = fields.String(validate=validate.Length(max=20))
    country = fields.String(validate=validate.Length(2, 2), metadata={"description": "ISO 3166 alpha-2"})


class CompanyIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    domain = fields.String(allow_none=True, validate=validate.Length(max=253))
    industry = fields.String(allow_none=True, validate=validate.Length(max=100))
    emails = fields.List(fields.Nested(EmailIn), validate=validate.Length(max=20))
    phones = fields.List(fields.Nested(PhoneIn), validate=validate.Length(max=20))
    address = fields.Nested(AddressIn, allow_none=True)
    owner_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    tags = tags_field()
    custom = CustomFields()
    notes = fields.String(allow_none=True, validate=validate.Length(max=10000))


class CompanyOut(Schema):
    id = fields.String()
    name = fields.String()
    domain = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    emails = fields.List(fields.Nested(EmailOut))
    phones = fields.List(fields.Nested(PhoneOut))
    address = fields.Dict(allow_none=True)
    owner_id = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    custom = fields.Dict()
    notes = fields.String(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    deleted_at = UtcDateTime(allow_none=True)


class CompanyWithPeople(CompanyOut):
    people = fields.List(fields.Nested(ContactOut))
    people_next_cursor = fields.String(allow_none=True)


class CompanyListQuery(PageQuery):
    q = fields.String(validate=validate.Length(1, 100))
    tag = fields.String(validate=validate.Length(1, 50))
    owner_id = fields.String(validate=validate.Length(1, 40))
    include_deleted = fields.Boolean(load_default=False)


class CompanyPage(PageOf):
    items = fields.List(fields.Nested(CompanyOut))


# Import, export, duplicates and merge (docs/import.md)
ON_DUPLICATE = ("skip", "update", "create")
IMPORT_STATUSES = ("pending", "running", "done", "failed", "undo_pending", "undoing", "undone")


class ImportOptions(Schema):
    """Options of POST /imports, sent as multipart form fields (or query parameters)
    beside the `file` part."""
    on_duplicate = fields.String(load_default="skip", validate=validate.OneOf(ON_DUPLICATE),
                                 metadata={"description": "skip | update (fill empty fields, "
                                           "add new phones/emails, never delete) | create"})
    dry_run = fields.Boolean(load_default=False, metadata={
        "description": "validate and count what would happen, write nothing"})
    mapping = fields.String(validate=validate.Length(max=20000), metadata={
        "description": 'JSON object {"column header": "target"}; targets: first_name, '
                       "last_name, full_name, email, email:<type>, phone, phone:<type>, "
                       "company, position, tags, owner_email, owner_id, source, status, "
                       "birthday, do_not_contact, custom, custom.<key>, ignore"})
    default_owner_id = fields.String(validate=validate.Length(1, 40))


class ImportStart(Schema):
    """What the gateway sends the contacts service (the file travels base64 encoded)."""
    filename = fields.String(required=True, validate=validate.Length(1, 255))
    content_b64 = fields.String(required=True)
    mapping = fields.Dict(keys=fields.String(validate=validate.Length(max=200)),
                          values=fields.String(validate=validate.Length(max=80)),
                          load_default=dict)
    on_duplicate = fields.String(load_default="skip", validate=validate.OneOf(ON_DUPLICATE))
    dry_run = fields.Boolean(load_default=False)
    default_owner_id = fields.String(allow_none=True, validate=validate.Length(max=40))


class ImportCounts(Schema):
    rows = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    skipped = fields.Integer()
    failed = fields.Integer()


class ImportRowError(Schema):
    row = fields.Integer(metadata={"description": "row number as the spreadsheet shows it "
                                                  "(the header is row 1)"})
    column = fields.String(allow_none=True)
    field = fields.String(allow_none=True)
    reason = fields.String()
    value = fields.String(allow_none=True)


class ImportJob(Schema):
    id = fields.String()
    status = fields.String(metadata={"description": " | ".join(IMPORT_STATUSES)})
    dry_run = fields.Boolean()
    on_duplicate = fields.String()
    filename = fields.String()
    size = fields.Integer()
    format = fields.String(metadata={"description": "csv | xlsx"})
    encoding = fields.String(allow_none=True)
    delimiter = fields.String(allow_none=True)
    columns = fields.List(fields.String())
    mapping = fields.List(fields.Dict(), metadata={"description": '[{"column", "target"}]'})
    counts = fields.Nested(ImportCounts)
    rows_done = fields.Integer()
    errors_count = fields.Integer(allow_none=True)
    errors = fields.List(fields.Nested(ImportRowError),
                         metadata={"description": "the first 100 row errors"})
    companies_created = fields.Integer(allow_none=True)
    started_by = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    restored = fields.Integer(allow_none=True)
    deleted = fields.Integer(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    finished_at = UtcDateTime(allow_none=True)
    undone_at = UtcDateTime(allow_none=True)


class ImportListQuery(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    cursor = fields.String(validate=validate.Length(max=500))


class ImportPage(PageOf):
    items = fields.List(fields.Nested(ImportJob))


class ImportErrorsQuery(Schema):
    limit = fields.Integer(load_default=500, validate=validate.Range(1, 5000))
    cursor = fields.String(validate=validate.Length(max=200))


class ImportErrorPage(PageOf):
    items = fields.List(fields.Nested(ImportRowError))


class ExportQuery(ContactListQuery):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "xlsx")))


class DuplicatesQuery(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    min_score = fields.Float(load_default=0.0, validate=validate.Range(0, 1))


class DuplicateGroup(Schema):
    score = fields.Float(metadata={"description": "0..1; same email 0.95, same phone 0.9, "
                                                  "same name and company 0.7, combined"})
    reasons = fields.List(fields.String(), metadata={"description": "email | phone | "
                                                     "name_company"})
    keys = fields.List(fields.String())
    contact_ids = fields.List(fields.String())
    contacts = fields.List(fields.Dict())


class DuplicateGroups(Schema):
    items = fields.List(fields.Nested(DuplicateGroup))


class MergeIn(Schema):
    source_ids = fields.List(fields.String(validate=validate.Length(1, 40)), required=True,
                             validate=validate.Length(1, 50))


class MergeOut(ContactOut):
    merged_ids = fields.List(fields.String())
    merge_id = fields.String()
