"""The automation API, one source: rules (a trigger, conditions, actions, an optional delay),
their run log and dry run, segments and campaigns. The service validates with these (the
shapes), and services/automation/engine.py checks what a shape cannot say (field paths
against the event contracts, templates, loops) at save."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from contracts.events import EventData, Int, IsoTime, Object, actor_field, ref_field, summary_field
from crm_common.fields import PageOf, PageQuery, UtcDateTime

ID = validate.Length(1, 80)
TIME_TRIGGERS = ("in_stage", "no_contact", "date_field")
TRIGGER_TYPES = ("event",) + TIME_TRIGGERS
OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "not_contains",
       "empty", "not_empty")
ACTION_TYPES = ("notify_user", "create_task", "move_deal", "set_field", "add_tag",
                "assign_owner", "webhook", "send_message", "create_invoice")
CHANNELS = ("email", "sms", "telegram", "whatsapp")
RUN_STATES = ("scheduled", "running", "retry", "done", "failed", "skipped", "canceled",
              "stopped")
MAX_DELAY_MINUTES = 365 * 24 * 60   # a year; a longer wait is a mistake, refused at save
MAX_TRIGGER_DAYS = 3650
HHMM = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="Not a time HH:MM.")


class TriggerIn(Schema):
    type = fields.String(required=True, validate=validate.OneOf(TRIGGER_TYPES))
    event = fields.String(validate=validate.Length(3, 100), metadata={
        "description": "type=event: `<source>.<event type>` from docs/events.md "
                       "(GET /automation/triggers lists them with their fields)"})
    days = fields.Integer(validate=validate.Range(0, MAX_TRIGGER_DAYS), metadata={
        "description": "in_stage: days in the deal's stage; no_contact: days since the "
                       "contact's last touch; date_field: days before/after the date"})
    record = fields.String(validate=validate.OneOf(("contact", "deal")), metadata={
        "description": "date_field: whose date"})
    field = fields.String(validate=validate.Length(1, 100), metadata={
        "description": "date_field: a date field of the record (`birthday`, "
                       "`expected_close_date`, `custom.<name>`)"})
    when = fields.String(load_default="after", validate=validate.OneOf(("before", "after")))
    annual = fields.Boolean(load_default=False, metadata={
        "description": "date_field: every year on the date (a birthday)"})

    @validates_schema
    def coherent(self, data, **kwargs):
        kind = data.get("type")
        if kind == "event" and not data.get("event"):
            raise ValidationError("An event trigger names its event.", "event")
        if kind in TIME_TRIGGERS and data.get("days") is None:
            raise ValidationError("A time trigger needs days.", "days")
        if kind == "date_field" and not (data.get("record") and data.get("field")):
            raise ValidationError("A date trigger needs record and field.", "field")


class WorkingHours(Schema):
    start = fields.String(load_default="09:00", validate=HHMM)
    end = fields.String(load_default="18:00", validate=HHMM)
    days = fields.List(fields.Integer(validate=validate.Range(1, 7)), load_default=lambda: [1, 2, 3, 4, 5],
                       validate=validate.Length(1, 7), metadata={"description": "ISO weekdays"})


class DelayIn(Schema):
    minutes = fields.Integer(load_default=0, validate=validate.Range(0, MAX_DELAY_MINUTES),
                             metadata={"description": "at most a year"})
    working_hours = fields.Boolean(load_default=False, metadata={
        "description": "count only the rule's working hours, in the owner's time zone"})
    at = fields.String(allow_none=True, validate=HHMM, metadata={
        "description": "then wait for the next working day's HH:MM (owner's time zone)"})


class RuleIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    enabled = fields.Boolean(load_default=False, metadata={
        "description": "off by default: try a dry run first"})
    trigger = fields.Nested(TriggerIn, required=True)
    conditions = fields.Dict(allow_none=True, metadata={
        "description": '{"all": [...]} | {"any": [...]} | {"field", "op", "value"}; ops: '
                       + ", ".join(OPS)})
    actions = fields.List(fields.Dict(), required=True, validate=validate.Length(1, 20),
                          metadata={"description": "run in order; each {type, ...}: "
                                                   + ", ".join(ACTION_TYPES)})
    delay = fields.Nested(DelayIn, allow_none=True)
    working_hours = fields.Nested(WorkingHours, allow_none=True)
    timezone = fields.String(allow_none=True, validate=validate.Length(max=60), metadata={
        "description": "working hours' zone when the owner has none (default UTC)"})
    log_skips = fields.Boolean(load_default=True, metadata={
        "description": "log the occurrences whose conditions failed, with the reason"})


class RuleOut(Schema):
    id = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    trigger = fields.Dict()
    conditions = fields.Dict(allow_none=True)
    actions = fields.List(fields.Dict())
    delay = fields.Dict(allow_none=True)
    working_hours = fields.Dict(allow_none=True)
    timezone = fields.String(allow_none=True)
    log_skips = fields.Boolean()
    team = fields.String(allow_none=True, metadata={
        "description": "a manager's rule: acts only on records owned by that team"})
    created_by = fields.String(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    version = fields.Integer()


class RuleListQuery(PageQuery):
    enabled = fields.Boolean()


class RulePage(PageOf):
    items = fields.List(fields.Nested(RuleOut))


class ActionResult(Schema):
    type = fields.String()
    status = fields.String(metadata={"description": "done | skipped | retry | failed"})
    detail = fields.Dict(allow_none=True)
    attempts = fields.Integer()


class RunOut(Schema):
    id = fields.String(metadata={"description": "the run key: rule, record, occurrence"})
    rule_id = fields.String()
    record_type = fields.String(allow_none=True)
    record_id = fields.String(allow_none=True)
    occurrence = fields.String()
    state = fields.String(metadata={"description": " | ".join(RUN_STATES)})
    reason = fields.String(allow_none=True, metadata={
        "description": "why it did not fire: the failed condition, the loop limit..."})
    depth = fields.Integer(metadata={"description": "automation steps before it in its cause chain"})
    due_at = UtcDateTime(allow_none=True)
    actions = fields.List(fields.Nested(ActionResult))
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class RunListQuery(PageQuery):
    record_type = fields.String(validate=validate.OneOf(("contact", "deal", "task", "call")))
    record_id = fields.String(validate=ID)


class RunPage(PageOf):
    items = fields.List(fields.Nested(RunOut))


class DryRunIn(Schema):
    days = fields.Integer(load_default=30, validate=validate.Range(1, 30))
    limit = fields.Integer(load_default=200, validate=validate.Range(1, 1000))


class DryRunHit(Schema):
    record_type = fields.String()
    record_id = fields.String()
    occurrence = fields.String()
    at = fields.String(allow_none=True)
    would_fire = fields.Boolean()
    reason = fields.String(allow_none=True)


class DryRunOut(Schema):
    rule_id = fields.String()
    since = UtcDateTime()
    examined = fields.Integer()
    would_fire = fields.Integer()
    items = fields.List(fields.Nested(DryRunHit))


class TriggerInfo(Schema):
    event = fields.String()
    description = fields.String()
    fields_ = fields.List(fields.String(), data_key="fields")


class TriggerList(Schema):
    items = fields.List(fields.Nested(TriggerInfo))


class ClockIn(Schema):
    now = UtcDateTime()


# --- segments and campaigns -----------------------------------------------------------

class SegmentIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    filters = fields.Dict(required=True, metadata={
        "description": "the contacts list's filters (GET /contacts): tag, owner_id, source, "
                       "status, not_contacted_since, created_after, created_before, q"})
    allow_everyone = fields.Boolean(load_default=False, metadata={
        "description": "a segment with no filter matches every contact: refused unless set"})


class SegmentOut(Schema):
    id = fields.String()
    name = fields.String()
    filters = fields.Dict()
    allow_everyone = fields.Boolean()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class SegmentPage(PageOf):
    items = fields.List(fields.Nested(SegmentOut))


class SegmentCount(Schema):
    id = fields.String()
    count = fields.Integer()


class CampaignIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    segment_id = fields.String(required=True, validate=ID)
    channel = fields.String(required=True, validate=validate.OneOf(("email", "sms")))
    subject = fields.String(allow_none=True, validate=validate.Length(max=300))
    body = fields.String(required=True, validate=validate.Length(1, 20000))
    send_at = UtcDateTime(allow_none=True, metadata={"description": "null: when sent"})
    rate_per_minute = fields.Integer(allow_none=True, validate=validate.Range(1, 100000))


class CampaignCounts(Schema):
    queued = fields.Integer()
    delivered = fields.Integer()
    failed = fields.Integer()
    skipped = fields.Integer(metadata={"description": "no consent or no address at send time"})
    unsubscribed = fields.Integer()


class CampaignOut(Schema):
    id = fields.String()
    name = fields.String()
    segment_id = fields.String()
    channel = fields.String()
    subject = fields.String(allow_none=True)
    body = fields.String()
    send_at = UtcDateTime(allow_none=True)
    rate_per_minute = fields.Integer(allow_none=True)
    status = fields.String(metadata={"description": "draft | scheduled | sending | sent"})
    source = fields.String(metadata={"description": "the lead source name of its replies"})
    counts = fields.Nested(CampaignCounts)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class CampaignPage(PageOf):
    items = fields.List(fields.Nested(CampaignOut))


class CampaignSendIn(Schema):
    send_at = UtcDateTime(allow_none=True, metadata={"description": "null: now"})


class UnsubscribeOut(Schema):
    unsubscribed = fields.Boolean()
    channel = fields.String()


# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------

class RunAction(EventData):
    type = fields.String(required=True)
    status = fields.String(metadata={"description": "done | skipped | failed"})


class RuleFired(EventData):
    """A rule's actions ran for one (rule, record, occurrence); event_id is the run key."""
    rule_id = fields.String(required=True)
    rule_name = fields.String()
    run_id = fields.String(required=True)
    record_type = fields.String(allow_none=True)
    record_id = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "done | failed"})
    depth = Int(metadata={"description": "automation steps before it in its cause chain"})
    actions = Object(RunAction, many=True, metadata={"description": "what each action did"})
    summary = summary_field()
    ref = ref_field("automation_rule")


class RuleNotice(EventData):
    """A rule's notify_user action: tell this user (notifications delivers it)."""
    user_id = fields.String(required=True)
    rule_id = fields.String(required=True)
    title = fields.String(metadata={"description": "the rendered message"})
    record_type = fields.String(allow_none=True)
    record_id = fields.String(allow_none=True)
    summary = summary_field()
    ref = ref_field("automation_rule")


class CampaignEvent(EventData):
    campaign_id = fields.String(required=True)
    name = fields.String()
    channel = fields.String()
    actor_id = actor_field()
    counts = fields.Dict(metadata={"description": "queued, delivered, failed, skipped, unsubscribed"})


class CampaignStarted(CampaignEvent):
    """A campaign's recipients were queued."""
    send_at = IsoTime(allow_none=True)


class CampaignFinished(CampaignEvent):
    """Every queued message of a campaign was delivered, failed or skipped."""


class CampaignUnsubscribed(EventData):
    """A contact followed a campaign's unsubscribe link (honoured at once)."""
    campaign_id = fields.String(required=True)
    contact_id = fields.String(required=True)
    channel = fields.String()


EVENTS = {
    "rule_fired": RuleFired, "rule_notice": RuleNotice,
    "campaign_started": CampaignStarted, "campaign_finished": CampaignFinished,
    "campaign_unsubscribed": CampaignUnsubscribed,
}
