"""The contacts API, one source: the service validates with these, the gateway validates
the same way before calling and generates the OpenAPI document from them."""
from marshmallow import (Schema, ValidationError, fields, pre_load, validate,
                         validates_schema)

from contracts.custom_fields import CustomFilters, custom_sort_field
from contracts.events import (Bool, EventData, Int, IsoTime, Object, actor_field, ref_field,
                             summary_field)
from crm_common import fields as crm_fields
from crm_common.fields import Pattern, STORED_KEY, WHITESPACE, UserId, timezone_field, cursor_field, CustomFields, PageOf, PageQuery, UtcDateTime, tags_field, sort_field

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


MESSENGER_CHANNELS = ("telegram", "whatsapp", "instagram", "vk", "viber", "facebook", "chat",
                      "other")


class MessengerIn(Schema):
    """A messenger identity: the user id the platform gives (e.g. Telegram's numeric id) or
    a @username; matched exactly (usernames case-insensitively)."""
    channel = fields.String(required=True, validate=validate.OneOf(MESSENGER_CHANNELS))
    handle = fields.String(required=True, validate=validate.Length(1, 100))


class EmailOut(Schema):
    email = fields.String()
    type = fields.String()


class PhoneOut(Schema):
    raw = fields.String()
    e164 = fields.String(allow_none=True)
    type = fields.String()
    valid = fields.Boolean()


class ContactIn(Schema):
    # a valid create for the OpenAPI document (gateway/openapi.py): no email or phone, so
    # sending it again is no duplicate (409)
    OPENAPI_EXAMPLES = ({"first_name": "Ada", "last_name": "Lovelace", "position": "Engineer",
                         "status": "lead", "tags": ["newsletter"]},)
    first_name = fields.String(validate=validate.Length(max=100))
    last_name = fields.String(validate=validate.Length(max=100))
    emails = fields.List(fields.Nested(EmailIn), validate=validate.Length(max=20))
    phones = fields.List(fields.Nested(PhoneIn), validate=validate.Length(max=20))
    company_id = fields.String(allow_none=True, validate=validate.Length(max=40))
    position = fields.String(allow_none=True, validate=validate.Length(max=100))
    owner_id = UserId(allow_none=True, validate=validate.Length(max=40))
    tags = tags_field()
    source = fields.String(allow_none=True, validate=validate.Length(max=50))
    status = fields.String(validate=validate.OneOf(CONTACT_STATUSES))
    do_not_contact = fields.Boolean()
    birthday = crm_fields.Date(allow_none=True)
    custom = CustomFields()
    messengers = fields.List(fields.Nested(MessengerIn), validate=validate.Length(max=20))

    @validates_schema
    def someone_to_reach(self, data, partial=False, **kwargs):
        if partial:
            return
        if not any(data.get(k) for k in ("first_name", "last_name", "emails", "phones",
                                         "messengers")):
            raise ValidationError("A contact needs a name, an email, a phone or a messenger.",
                                  "_schema")


class ContactOut(Schema):
    id = fields.String()
    first_name = fields.String(allow_none=True)  # null when never given
    last_name = fields.String(allow_none=True)
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
    messengers = fields.List(fields.Nested(MessengerIn))
    acquisition = fields.Dict(allow_none=True, metadata={
        "description": "how an inbound request brought this contact in: channel, form_id, "
                       "request_id, utm_source, utm_medium, utm_campaign, referrer"})


class ContactListQuery(CustomFilters, PageQuery):
    sort = custom_sort_field("created_at", "updated_at", "name")
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
    bought_product = fields.String(validate=validate.Length(1, 40), metadata={
        "description": "contacts that bought this product (the sales service's purchases: "
                       "a won deal's or paid invoice's lines)"})
    bought_from = crm_fields.Date(metadata={"description": "with bought_product: bought on or after this day (UTC)"})
    bought_to = crm_fields.Date(metadata={"description": "with bought_product: bought on or before this day (UTC)"})

    @validates_schema
    def bought_period(self, data, **kwargs):
        if (data.get("bought_from") or data.get("bought_to")) and not data.get("bought_product"):
            raise ValidationError("A purchase period needs bought_product.", "bought_product")
        if data.get("bought_from") and data.get("bought_to") and data["bought_from"] > data["bought_to"]:
            raise ValidationError("bought_from is after bought_to.", "bought_to")


class ContactPage(PageOf):
    items = fields.List(fields.Nested(ContactOut))


class LookupQuery(Schema):
    phone = fields.String(validate=validate.Length(3, 40),
                          metadata={"description": "exactly one of phone or email"})
    email = fields.String(validate=validate.Length(3, 254),
                          metadata={"description": "exactly one of phone or email"})

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
    cursor = cursor_field()
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
    owner_id = UserId(allow_none=True, validate=validate.Length(max=40))
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


class CompanyListQuery(CustomFilters, PageQuery):
    sort = custom_sort_field("created_at", "updated_at")
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
    default_owner_id = UserId(validate=validate.Length(1, 40))


class ImportStart(Schema):
    """What the gateway sends the contacts service (the file travels base64 encoded)."""
    filename = fields.String(required=True, validate=validate.Length(1, 255))
    content_b64 = fields.String(required=True)
    mapping = fields.Dict(keys=fields.String(validate=[validate.Length(max=200), STORED_KEY]),
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
    kept = fields.Integer(allow_none=True, metadata={
        "description": "undo: contacts left as they are because they were edited since"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    finished_at = UtcDateTime(allow_none=True)
    undone_at = UtcDateTime(allow_none=True)


class ImportListQuery(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    cursor = cursor_field()


class ImportPage(PageOf):
    items = fields.List(fields.Nested(ImportJob))


class ImportErrorsQuery(Schema):
    limit = fields.Integer(load_default=500, validate=validate.Range(1, 5000))
    cursor = cursor_field()


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


MERGE_CHOICES = ("first_name", "last_name", "position", "company_id", "owner_id", "birthday", "source")


class MergeIn(Schema):
    source_ids = fields.List(fields.String(validate=validate.Length(1, 40)), required=True,
                             validate=validate.Length(1, 50))
    keep = fields.Dict(keys=fields.String(validate=validate.OneOf(MERGE_CHOICES)),
                       values=fields.String(validate=validate.Length(1, 40)), metadata={
        "description": "field -> id of the contact (the survivor or a source) whose value "
                       "survives, empty values included; fields left out follow the conflict rule"})


class MergeOut(ContactOut):
    merged_ids = fields.List(fields.String())
    merge_id = fields.String()


# Inbound requests: web forms, messenger messages, Telegram updates (docs/leads.md)
INBOUND_CHANNELS = ("form", "telegram", "whatsapp", "instagram", "vk", "email", "sms", "chat",
                    "other")
MESSAGE_CHANNELS = INBOUND_CHANNELS[1:]
ROUTE_KINDS = ("web", "channel")
OWNER_RULES = ("fixed", "round_robin", "least_open_deals", "none")
# what a form field can fill; anything else stays in the stored request's fields
FORM_TARGETS = ("first_name", "last_name", "full_name", "email", "phone", "company", "position",
                "message", "telegram", "whatsapp", "instagram", "vk", "ignore")
REQUEST_STATUSES = ("received", "captured", "routed", "failed")
WEEKDAYS = (1, 2, 3, 4, 5, 6, 7)


HH_MM = Pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", error="Not a time HH:MM.")


class DayHours(Schema):
    day = fields.Integer(required=True, validate=validate.OneOf(WEEKDAYS))
    start = fields.String(required=True, validate=HH_MM)
    end = fields.String(required=True, validate=HH_MM)

    @validates_schema(skip_on_field_errors=True)
    def ordered(self, data, **kwargs):
        if data.get("start") and data.get("end") and data["start"] >= data["end"]:
            raise ValidationError("start must be before end.", "end")


class WorkingHours(Schema):
    start = fields.String(load_default="09:00", validate=HH_MM)
    end = fields.String(load_default="18:00", validate=HH_MM)
    days = fields.List(fields.Integer(validate=validate.OneOf(WEEKDAYS)), load_default=[1, 2, 3, 4, 5],
                       validate=validate.Length(1, 7), metadata={"description": "ISO weekdays, 1 = Monday"})
    day_hours = fields.List(fields.Nested(DayHours), validate=validate.Length(max=7), metadata={
        "description": "other hours on some of `days` ({day, start, end}, one per day); "
                       "the rest keep start and end"})
    timezone = timezone_field(load_default="UTC")

    @validates_schema
    def sane(self, data, **kwargs):
        from zoneinfo import ZoneInfo
        try:
            ZoneInfo(data.get("timezone", "UTC"))
        except Exception:  # noqa: BLE001 - any failure means an unknown zone
            raise ValidationError("Unknown time zone.", "timezone")
        if data.get("start", "09:00") >= data.get("end", "18:00"):
            raise ValidationError("start must be before end.", "end")
        named = [d["day"] for d in data.get("day_hours") or []]
        if len(set(named)) != len(named) or not set(named) <= set(data.get("days") or WEEKDAYS):
            raise ValidationError("One entry per working day (a day of `days`).", "day_hours")


class FirstTask(Schema):
    due_minutes = fields.Integer(load_default=15, validate=validate.Range(1, 60 * 24 * 14))
    kind = fields.String(load_default="call", validate=validate.OneOf(("call", "meeting", "email", "todo")))
    title = fields.String(allow_none=True, validate=validate.Length(max=200), metadata={
        "description": "default: 'First touch: <contact name>'"})
    working_hours = fields.Nested(WorkingHours, allow_none=True, load_default=None, metadata={
        "description": "count due_minutes only inside these hours; null = around the clock"})


class OwnerRule(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(OWNER_RULES))
    user_id = UserId(validate=validate.Length(1, 40), metadata={"description": "fixed"})
    team = fields.String(validate=validate.Length(1, 100),
                         metadata={"description": "round_robin / least_open_deals among its active members"})
    user_ids = fields.List(UserId(validate=validate.Length(1, 40)), validate=validate.Length(1, 100),
                           metadata={"description": "round_robin / least_open_deals among these users"})

    @validates_schema
    def complete(self, data, **kwargs):
        kind = data.get("kind")
        if kind == "fixed" and not data.get("user_id"):
            raise ValidationError("A fixed rule names user_id.", "user_id")
        if kind in ("round_robin", "least_open_deals") and bool(data.get("team")) == bool(data.get("user_ids")):
            raise ValidationError("Give exactly one of team or user_ids.", "team")


class LeadFormIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    kind = fields.String(load_default="web", validate=validate.OneOf(ROUTE_KINDS), metadata={
        "description": "web: a website form; channel: the settings of a messenger channel"})
    channel = fields.String(allow_none=True, validate=validate.OneOf(MESSAGE_CHANNELS), metadata={
        "description": "kind=channel: the channel whose messages this route takes by default"})
    fields_map = fields.Dict(data_key="fields", keys=fields.String(validate=[validate.Length(1, 100),
                                                                             STORED_KEY]),
                             values=fields.String(validate=validate.OneOf(FORM_TARGETS)),
                             load_default=dict, metadata={
                                 "description": "posted field -> contact field; unmapped standard names "
                                                "(name, email, phone, message, ...) are recognised"})
    pipeline_id = fields.String(allow_none=True, validate=validate.Length(1, 40))
    stage_id = fields.String(allow_none=True, validate=validate.Length(1, 40))
    owner_rule = fields.Nested(OwnerRule, load_default=lambda: {"kind": "none"})
    tags = tags_field()
    source = fields.String(allow_none=True, validate=validate.Length(1, 50), metadata={
        "description": "lead source name; default: website for forms, the channel otherwise"})
    allowed_origins = fields.List(fields.String(validate=Pattern(rf"^https?://[^/{WHITESPACE}]+$")),
                                  load_default=list, validate=validate.Length(max=50), metadata={
                                      "description": "browser origins allowed to post (CORS); "
                                                     "empty = server-to-server posts only"})
    honeypot_field = fields.String(load_default="company_website", validate=validate.Length(1, 100),
                                   metadata={"description": "a hidden field people leave empty"})
    first_task = fields.Nested(FirstTask, allow_none=True, load_default=lambda: FirstTask().load({}))
    telegram_secret_token = fields.String(allow_none=True, validate=Pattern(r"^[A-Za-z0-9_-]{1,256}$"),
                                          metadata={"description": "the secret_token given to "
                                                    "Telegram's setWebhook; required for Telegram"})
    redirect_url = fields.String(allow_none=True, validate=Pattern(rf"^https?://[^{WHITESPACE}]+$"),
                                 metadata={"description": "form-encoded posts are answered 303 to it"})
    rate_limit_per_minute = fields.Integer(allow_none=True, validate=validate.Range(1, 100000),
                                           metadata={"description": "posts per minute to this form "
                                                     "from everyone; null = the gateway default"})
    active = fields.Boolean(load_default=True)

    @validates_schema
    def channel_routes_name_their_channel(self, data, partial=False, **kwargs):
        if not partial and data.get("kind") == "channel" and not data.get("channel"):
            raise ValidationError("A channel route names its channel.", "channel")


class LeadFormOut(Schema):
    id = fields.String()
    key = fields.String(metadata={"description": "public: POST /forms/{key}/submissions, "
                                                 "/inbound/telegram/{key}"})
    name = fields.String()
    kind = fields.String()
    channel = fields.String(allow_none=True)
    fields_map = fields.Dict(data_key="fields")
    pipeline_id = fields.String(allow_none=True)
    stage_id = fields.String(allow_none=True)
    owner_rule = fields.Dict()
    tags = fields.List(fields.String())
    source = fields.String(allow_none=True)
    allowed_origins = fields.List(fields.String())
    honeypot_field = fields.String()
    first_task = fields.Dict(allow_none=True)
    has_telegram_secret = fields.Boolean()
    redirect_url = fields.String(allow_none=True)
    rate_limit_per_minute = fields.Integer(allow_none=True)
    active = fields.Boolean()
    submissions = fields.Integer(metadata={"description": "requests stored through this route"})
    spam = fields.Integer(metadata={"description": "posts caught by the honeypot"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class LeadFormListQuery(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    cursor = cursor_field()
    kind = fields.String(validate=validate.OneOf(ROUTE_KINDS))


class LeadFormPage(PageOf):
    items = fields.List(fields.Nested(LeadFormOut))


class SubmissionAnswer(Schema):
    id = fields.String(metadata={"description": "the stored request"})
    status = fields.String()


class MessageSender(Schema):
    handle = fields.String(allow_none=True, validate=validate.Length(1, 100), metadata={
        "description": "the sender's id or @username on the channel"})
    name = fields.String(allow_none=True, validate=validate.Length(max=200))
    phone = fields.String(allow_none=True, validate=validate.Length(3, 40))
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))


class InboundMessageIn(Schema):
    channel = fields.String(required=True, validate=validate.OneOf(MESSAGE_CHANNELS))
    sender = fields.Nested(MessageSender, required=True)
    text = fields.String(load_default="", validate=validate.Length(max=10000))
    occurred_at = UtcDateTime(allow_none=True)
    external_id = fields.String(allow_none=True, validate=validate.Length(1, 200), metadata={
        "description": "the message's id on the channel: a repeat is stored once"})
    route_key = fields.String(allow_none=True, validate=validate.Length(1, 64), metadata={
        "description": "the route (form of kind channel) to use; default: the channel's route"})
    utm_source = fields.String(allow_none=True, validate=validate.Length(max=200))
    utm_medium = fields.String(allow_none=True, validate=validate.Length(max=200))
    utm_campaign = fields.String(allow_none=True, validate=validate.Length(max=200))


class InboundRequestOut(Schema):
    id = fields.String()
    channel = fields.String()
    form_id = fields.String(allow_none=True)
    route_name = fields.String(allow_none=True)
    status = fields.String(metadata={"description": " | ".join(REQUEST_STATUSES)})
    received_at = UtcDateTime()
    payload = fields.Raw(metadata={"description": "the request as received"})
    meta = fields.Dict(metadata={"description": "ip, user_agent, origin, referrer"})
    extracted = fields.Dict(metadata={"description": "name, email, phone, handle, text found in it"})
    utm = fields.Dict()
    source = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    contact_created = fields.Boolean(allow_none=True)
    deal_id = fields.String(allow_none=True)
    deal_created = fields.Boolean(allow_none=True)
    owner_id = fields.String(allow_none=True)
    owner_reason = fields.String(allow_none=True)
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    updated_at = UtcDateTime()


class InboundRequestListQuery(Schema):
    """Newest first (keyset over received_at)."""
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    cursor = cursor_field()
    status = fields.String(validate=validate.OneOf(REQUEST_STATUSES))
    channel = fields.String(validate=validate.OneOf(INBOUND_CHANNELS))
    form_id = fields.String(validate=validate.Length(1, 40))
    contact_id = fields.String(validate=validate.Length(1, 40))


class InboundRequestPage(PageOf):
    items = fields.List(fields.Nested(InboundRequestOut))


# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------

class ContactCopy(EventData):
    """The contact as the API returns it (ContactOut): every key of it is sent."""
    id = fields.String(required=True)
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    company_id = fields.String(allow_none=True)
    deleted_at = IsoTime(allow_none=True)


class CompanyCopy(EventData):
    """The company as the API returns it (CompanyOut): every key of it is sent."""
    id = fields.String(required=True)
    name = fields.String(allow_none=True)
    deleted_at = IsoTime(allow_none=True)


def _contact(description="the contact as the API returns it (ContactOut)"):
    return Object(ContactCopy, required=True, metadata={"description": description})


def _company():
    return Object(CompanyCopy, required=True, metadata={
        "description": "the company as the API returns it (CompanyOut)"})


class ContactCreated(EventData):
    """A contact was created (by the API, an import or an inbound request)."""
    contact = _contact()


class ContactUpdated(EventData):
    """A contact was changed."""
    contact = _contact()
    changed = fields.List(fields.String(), required=True, metadata={
        "description": "the names of the fields that changed"})
    reason = fields.String(allow_none=True, metadata={
        "description": "sent when a routed lead gave an owner-less contact its owner: the "
                       "lead's owner_reason (deals.lead_routed)"})


class ContactDeleted(EventData):
    """A contact was deleted (soft: it can be restored)."""
    contact_id = fields.String(required=True)
    contact = Object(ContactCopy, metadata={
        "description": "the deleted contact as the API returns it (ContactOut)"})


class ContactRestored(EventData):
    """A deleted contact was restored."""
    contact = _contact()


class ContactMerged(EventData):
    """Duplicates were merged into a survivor: records of the merged contacts now belong
    to the survivor (the merged contacts are deleted)."""
    survivor_id = fields.String(required=True, metadata={"description": "the contact kept"})
    merged_ids = fields.List(fields.String(), required=True, metadata={
        "description": "the contacts merged into it"})
    contact = Object(ContactCopy, metadata={"description": "the survivor after the merge (ContactOut)"})
    contact_id = fields.String(metadata={"description": "the survivor, for its timeline"})
    owner_id = fields.String(allow_none=True, metadata={"description": "the survivor's owner"})
    actor_id = actor_field()
    merge_id = fields.String(metadata={"description": "the merge record"})


class CompanyCreated(EventData):
    """A company was created."""
    company = _company()


class CompanyUpdated(EventData):
    """A company was changed."""
    company = _company()


class CompanyDeleted(EventData):
    """A company was deleted (soft)."""
    company_id = fields.String(required=True)
    company = Object(CompanyCopy, metadata={
        "description": "the deleted company as the API returns it (CompanyOut)"})


class CompanyRestored(EventData):
    """A deleted company was restored."""
    company = _company()


class EventCounts(EventData):
    rows = Int()
    created = Int()
    updated = Int()
    skipped = Int()
    failed = Int()


class ImportEvent(EventData):
    import_id = fields.String(required=True)
    started_by = fields.String(required=True, allow_none=True, metadata={
        "description": "the user who started it"})
    status = fields.String(allow_none=True, metadata={"description": " | ".join(IMPORT_STATUSES)})
    dry_run = Bool(allow_none=True, metadata={"description": "true: nothing was written"})
    counts = Object(EventCounts, allow_none=True, metadata={
        "description": "rows, created, updated, skipped, failed so far (docs/import.md)"})
    actor_id = actor_field()


class ImportProgress(ImportEvent):
    """A batch of an import's rows was committed."""
    contact_ids = fields.List(fields.String(), metadata={
        "description": "the contacts this batch created or changed"})
    company_ids = fields.List(fields.String(), metadata={
        "description": "the companies this batch created"})


class ImportFinished(ImportEvent):
    """An import ended: done, or failed (status)."""


class ImportUndone(ImportEvent):
    """An import was undone."""
    restored = Int(metadata={"description": "contacts put back as they were before the import"})
    deleted = Int(metadata={"description": "contacts it had created, deleted"})
    kept = Int(metadata={"description": "contacts left as they are because they were edited since"})


class Utm(EventData):
    source = fields.String(allow_none=True)
    medium = fields.String(allow_none=True)
    campaign = fields.String(allow_none=True)


class ResolvedOwnerRule(EventData):
    kind = fields.String(required=True, metadata={"description": " | ".join(OWNER_RULES)})
    user_ids = fields.List(fields.String(), metadata={
        "description": "the candidates (a team resolved to its members)"})
    team = fields.String(allow_none=True)


class LeadCaptured(EventData):
    """An inbound request matched or created its contact (docs/leads.md); event_id is
    `lead:<request_id>`, the same on every redelivery."""
    request_id = fields.String(required=True)
    contact_id = fields.String(required=True)
    received_at = IsoTime(metadata={"description": "when the request came in"})
    channel = fields.String(metadata={"description": " | ".join(INBOUND_CHANNELS)})
    contact_created = Bool(metadata={"description": "false: an existing contact matched"})
    contact_owner_id = fields.String(allow_none=True)
    contact_name = fields.String(allow_none=True)
    form_id = fields.String(allow_none=True)
    route_name = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "the lead source (utm_source, the form's "
                                                    "or the channel)"})
    utm = Object(Utm, metadata={"description": "{source, medium, campaign}"})
    referrer = fields.String(allow_none=True)
    pipeline_id = fields.String(allow_none=True, metadata={"description": "the route's pipeline"})
    stage_id = fields.String(allow_none=True, metadata={"description": "the route's stage"})
    owner_rule = Object(ResolvedOwnerRule, allow_none=True, metadata={
        "description": "the route's owner rule {kind, user_ids, team}"})
    first_task = fields.Dict(allow_none=True, metadata={
        "description": "the route's first task (FirstTask): {due_minutes, kind, title, "
                       "working_hours}"})
    deal_title = fields.String(allow_none=True)
    summary = summary_field()
    text = fields.String(allow_none=True, metadata={"description": "the message, cut to 1,000 characters"})
    ref = ref_field("inbound_request")


EVENTS = {
    "contact_created": ContactCreated, "contact_updated": ContactUpdated,
    "contact_deleted": ContactDeleted, "contact_restored": ContactRestored,
    "contact_merged": ContactMerged,
    "company_created": CompanyCreated, "company_updated": CompanyUpdated,
    "company_deleted": CompanyDeleted, "company_restored": CompanyRestored,
    "import_progress": ImportProgress, "import_finished": ImportFinished,
    "import_undone": ImportUndone,
    "lead_captured": LeadCaptured,
}
