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
