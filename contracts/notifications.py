"""The notifications API, one source: the service validates with these, the gateway
validates the same way and builds OpenAPI from them."""
import re

from marshmallow import Schema, ValidationError, fields, validate, validates

from contracts.events import Bool, EventData, Int, IsoTime
from crm_common.fields import Pattern, timezone_field, cursor_field, PageOf, UtcDateTime, list_limit_field

# The vocabulary: channels, default routing, languages, and the events people and webhooks get.
PERSON_CHANNELS = ("inapp", "email", "sms", "telegram")
CHANNELS = PERSON_CHANNELS + ("webhook",)

# Defaults, changeable per user in preferences.
DEFAULT_CHANNELS = {
    "task_assigned": ["inapp", "email"],
    "task_due_soon": ["inapp"],
    "task_overdue": ["inapp", "email"],
    "task_escalated": ["inapp", "email"],
    "call_missed": ["inapp"],
    "deal_won": ["inapp", "email"],
    "deal_lost": ["inapp", "email"],
    "deal_assigned": ["inapp", "email"],
    "lead_routed": ["inapp", "email"],
    "import_finished": ["inapp", "email"],
    "birthday_list": ["inapp", "email"],
    "note_mentioned": ["inapp", "email"],
    "conversation_escalated": ["inapp", "email"],
    "rule_notice": ["inapp"],
    "invoice_overdue": ["inapp", "email"],
    "report_digest": ["email"],
}

LANGUAGES = ("en", "it")
DEFAULT_LANGUAGE = "en"

# Events a person may be told about (handled for people) ...
PERSON_EVENTS = {
    ("tasks", "task_assigned"), ("tasks", "task_due_soon"), ("tasks", "task_overdue"),
    ("tasks", "task_escalated"), ("telephony", "call_missed"), ("deals", "deal_won"),
    ("deals", "deal_lost"), ("deals", "deal_assigned"), ("contacts", "import_finished"),
    ("deals", "lead_routed"), ("notes", "note_mentioned"), ("sales", "invoice_overdue"),
    ("automation", "rule_notice"),
}
PERSON_EVENTS |= {("conversations", "conversation_escalated")}

# ... and every event a webhook may subscribe to (the catalog in docs/events.md).
WEBHOOK_EVENTS = {
    ("contacts", "contact_created"), ("contacts", "contact_updated"),
    ("contacts", "contact_deleted"), ("contacts", "contact_restored"),
    ("contacts", "contact_merged"), ("contacts", "company_created"),
    ("contacts", "company_updated"), ("contacts", "company_deleted"),
    ("contacts", "import_finished"), ("contacts", "lead_captured"),
    ("deals", "deal_created"), ("deals", "lead_routed"), ("deals", "deal_stage_changed"), ("deals", "deal_won"),
    ("deals", "deal_lost"), ("deals", "deal_assigned"),
    ("tasks", "task_created"), ("tasks", "task_assigned"), ("tasks", "task_due_soon"),
    ("tasks", "task_overdue"), ("tasks", "task_escalated"), ("tasks", "task_completed"),
    ("telephony", "call_started"), ("telephony", "call_answered"), ("telephony", "call_ended"),
    ("telephony", "call_missed"),
    ("notes", "note_created"), ("notes", "note_mentioned"), ("notes", "commitment_made"),
}
WEBHOOK_EVENTS |= {("conversations", t) for t in (
    "message_received", "message_sent", "message_failed", "conversation_assigned",
    "conversation_closed", "conversation_reopened", "conversation_escalated")}
WEBHOOK_EVENT_TYPES = sorted({t for _, t in WEBHOOK_EVENTS})

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
PREFERENCE_EVENTS = sorted(DEFAULT_CHANNELS)
DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")


class InboxQuery(Schema):
    limit = list_limit_field()
    cursor = cursor_field()
    unread = fields.Boolean(load_default=False)
    include_total = fields.Boolean(load_default=False)
    user_id = fields.String(validate=validate.Length(1, 40), metadata={
        "description": "admins only: another user's inbox"})


class UserQuery(Schema):
    user_id = fields.String(validate=validate.Length(1, 40), metadata={
        "description": "admins only: act on another user's inbox or preferences"})


class NotificationOut(Schema):
    id = fields.String()
    user_id = fields.String()
    type = fields.String(metadata={"description": "the event behind it, e.g. task_assigned"})
    title = fields.String()
    body = fields.String()
    ref = fields.Dict(allow_none=True)
    event_id = fields.String()
    urgent = fields.Boolean()
    read_at = UtcDateTime(allow_none=True)
    created_at = UtcDateTime()


class NotificationPage(PageOf):
    items = fields.List(fields.Nested(NotificationOut))


class UnreadCount(Schema):
    unread = fields.Integer()


class ReadAllResult(Schema):
    marked = fields.Integer()


class QuietHours(Schema):
    start = fields.String(required=True, validate=Pattern(HHMM, error="Use HH:MM."))
    end = fields.String(required=True, validate=Pattern(HHMM, error="Use HH:MM."))


def _channel_list():
    return fields.List(fields.String(validate=validate.OneOf(PERSON_CHANNELS)),
                       validate=validate.Length(max=len(PERSON_CHANNELS)))


DIGEST_FREQUENCIES = ("off", "daily", "weekly")
DIGEST_REPORTS = ("sales", "forecast", "tasks", "calls", "funnel")


class Digest(Schema):
    """A scheduled digest of reports, in the user's time zone: what each covers is the day
    before (daily) or the 7 days before (weekly), with the caller's own visibility."""
    frequency = fields.String(load_default="off", validate=validate.OneOf(DIGEST_FREQUENCIES))
    hour = fields.Integer(load_default=8, validate=validate.Range(0, 23), metadata={
        "description": "local hour it is sent at (or within 6 hours after, if the platform "
                       "was down then)"})
    weekday = fields.Integer(load_default=0, validate=validate.Range(0, 6), metadata={
        "description": "weekly: 0 Monday ... 6 Sunday"})
    reports = fields.List(fields.String(validate=validate.OneOf(DIGEST_REPORTS)),
                          load_default=lambda: list(DIGEST_REPORTS),
                          validate=validate.Length(1, len(DIGEST_REPORTS)), metadata={
        "description": "won deals by owner, open forecast, tasks by assignee, calls by "
                       "agent, the funnel of each pipeline (stages, counts, conversion); a "
                       "custom role gets tasks, calls and funnel only (amounts may be hidden "
                       "from it)"})


class PreferencesIn(Schema):
    channels = fields.Dict(keys=fields.String(validate=validate.OneOf(PREFERENCE_EVENTS)),
                           values=_channel_list(), metadata={
        "description": "per event type, the channels to use (inapp, email, sms, telegram); "
                       "[] silences it; a type left out keeps its default"})
    quiet_hours = fields.Nested(QuietHours, allow_none=True, metadata={
        "description": "non-urgent messages wait until the end of this daily window"})
    timezone = timezone_field(allow_none=True)
    language = fields.String(allow_none=True, validate=validate.OneOf(LANGUAGES))
    birthday_greetings = fields.Boolean(metadata={
        "description": "no longer used: greetings to contacts are automation's rule "
                       "default-birthday-greeting, into which the owners who had this on were "
                       "copied once"})
    task_reminders = fields.List(fields.Integer(validate=validate.Range(0, 7 * 24 * 60)),
                                 validate=validate.Length(max=5), metadata={
        "description": "minutes before due_at: the reminders a new task of this user starts "
                       "with in the console (default [15]; a task's own reminders decide)"})
    digest = fields.Nested(Digest, metadata={
        "description": "a scheduled e-mail of reports (channels: `report_digest`)"})

    @validates("timezone")
    def known_zone(self, value, **kwargs):
        if value:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValidationError("Unknown time zone.")


class PreferencesOut(Schema):
    user_id = fields.String()
    channels = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    quiet_hours = fields.Nested(QuietHours, allow_none=True)
    timezone = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    birthday_greetings = fields.Boolean()
    task_reminders = fields.List(fields.Integer())
    digest = fields.Nested(Digest)
    updated_at = UtcDateTime(allow_none=True)


class DigestSent(Schema):
    period = fields.String(metadata={"description": "what it covers: from/to (ISO)"})
    reports = fields.List(fields.String())
    channels = fields.List(fields.String())


class WebhookIn(Schema):
    # a receiver on this machine: accepted where loopback is allowed (dev and test stacks,
    # CRM_WEBHOOK_ALLOW_LOOPBACK=1); production refuses private and loopback addresses
    OPENAPI_EXAMPLES = ({"url": "http://127.0.0.1:9/crm-hooks",
                         "events": ["deal_won", "company_created"],
                         "description": "Won deals to the ERP"},)
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                     validate=validate.Length(max=2000))
    events = fields.List(fields.String(validate=validate.OneOf(WEBHOOK_EVENT_TYPES)),
                         required=True, validate=validate.Length(1, len(WEBHOOK_EVENT_TYPES)))
    secret = fields.String(validate=validate.Length(16, 200), load_only=True, metadata={
        "description": "HMAC key; generated when omitted; returned only by the create call"})
    description = fields.String(allow_none=True, validate=validate.Length(max=200))
    active = fields.Boolean()


class WebhookOut(Schema):
    id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    description = fields.String(allow_none=True)
    active = fields.Boolean()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class WebhookCreated(WebhookOut):
    secret = fields.String(metadata={"description": "shown only here, keep it"})


class WebhookListQuery(Schema):
    limit = list_limit_field()
    cursor = cursor_field()


class WebhookPage(PageOf):
    items = fields.List(fields.Nested(WebhookOut))


class DeliveryOut(Schema):
    id = fields.String()
    webhook_id = fields.String(allow_none=True)
    channel = fields.String()
    recipient = fields.String()
    event_id = fields.String()
    event_type = fields.String()
    status = fields.String(metadata={"description": "pending | sending | delivered | failed"})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    response = fields.String(allow_none=True)
    next_attempt_at = UtcDateTime(allow_none=True)
    delivered_at = UtcDateTime(allow_none=True)
    failed_at = UtcDateTime(allow_none=True)
    redeliveries = fields.Integer()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class DeliveryQuery(Schema):
    limit = list_limit_field()
    cursor = cursor_field()
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))


class DeliveryPage(PageOf):
    items = fields.List(fields.Nested(DeliveryOut))




# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------

class DeliveryEvent(EventData):
    """What both delivery outcomes carry; one per delivery when it is final."""
    notification_id = fields.String(required=True, metadata={"description": "the delivery"})
    channel = fields.String(required=True, metadata={"description": " | ".join(CHANNELS[1:])})
    recipient = fields.String(required=True, metadata={
        "description": '"user:<id>", "contact:<id>" or "webhook:<id>"'})
    event_type = fields.String(required=True, metadata={"description": "the event that caused it"})
    event_id = fields.String(required=True, metadata={"description": "the event that caused it"})
    attempts = Int(allow_none=True, metadata={"description": "sends tried"})
    webhook_id = fields.String(metadata={"description": "sent for webhook deliveries"})


class NotificationDelivered(DeliveryEvent):
    """A message was delivered (email, sms, telegram, webhook)."""


class NotificationFailed(DeliveryEvent):
    """A message could not be delivered and will not be tried again."""
    reason = fields.String(allow_none=True, metadata={"description": "the last error"})


class NotificationCreated(EventData):
    """An in-app notification was put in a user's inbox (the live stream's `notification`);
    event_id is `inbox:<event_id>:<user_id>`, the same on every redelivery."""
    user_id = fields.String(required=True, metadata={"description": "whose inbox"})
    notification = fields.Dict(required=True, metadata={
        "description": "the entry as GET /notifications returns it (NotificationOut)"})
    urgent = Bool(metadata={"description": "shown at once (a toast), not only counted"})
    created_at = IsoTime()


EVENTS = {"notification_created": NotificationCreated,
          "notification_delivered": NotificationDelivered,
          "notification_failed": NotificationFailed}
