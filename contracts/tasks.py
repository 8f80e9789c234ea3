"""The tasks API, one source: the service validates with these, the gateway validates the
same way before calling and generates the OpenAPI document from them."""
from datetime import datetime, timezone

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from contracts.custom_fields import CustomFilters, custom_sort_field
from contracts.events import EventData, Int, IsoTime, Object, actor_field, ref_field, summary_field
from crm_common.fields import CustomFields, UserId, cursor_field, PageOf, PageQuery, UtcDateTime, sort_field

KINDS = ("call", "meeting", "email", "todo")
STATUSES = ("open", "done", "canceled")
PRIORITIES = ("low", "normal", "high", "urgent")
FREQUENCIES = ("daily", "weekly", "monthly")

ID = validate.Length(1, 40)
# dates a planner can mean; also keeps reminder/escalation arithmetic inside datetime's range.
# The document says years 1970-2999 (SANE_YEARS, with UtcDateTime's own bound); the range
# starts a day early so that a 1970 time with any offset is inside it
SANE_DATE = validate.Range(datetime(1969, 12, 31, tzinfo=timezone.utc),
                           datetime(9000, 1, 1, tzinfo=timezone.utc), error="Out of range.")
SANE_YEARS = {"pattern": r"^(19[7-9][0-9]|2[0-9][0-9][0-9])-"}
MAX_REMINDER_MINUTES = 7 * 24 * 60


def reminders_field():
    return fields.List(fields.Integer(validate=validate.Range(0, MAX_REMINDER_MINUTES)),
                       validate=validate.Length(max=10),
                       metadata={"description": "minutes before due_at, e.g. [15, 60]"})


class RecurrenceIn(Schema):
    freq = fields.String(required=True, validate=validate.OneOf(FREQUENCIES))
    interval = fields.Integer(load_default=1, validate=validate.Range(1, 365))
    until = UtcDateTime(allow_none=True, validate=SANE_DATE, metadata=SANE_YEARS)


class TaskIn(Schema):
    kind = fields.String(load_default="todo", validate=validate.OneOf(KINDS))
    title = fields.String(required=True, validate=validate.Length(1, 200))
    description = fields.String(allow_none=True, validate=validate.Length(max=10000))
    due_at = UtcDateTime(allow_none=True, validate=SANE_DATE, metadata=SANE_YEARS)
    end_at = UtcDateTime(allow_none=True, validate=SANE_DATE,
                         metadata={"description": "meetings: when it ends", **SANE_YEARS})
    assignee_id = UserId(allow_none=True, validate=ID,
                                metadata={"description": "default: the caller"})
    contact_id = fields.String(allow_none=True, validate=ID)
    deal_id = fields.String(allow_none=True, validate=ID)
    priority = fields.String(load_default="normal", validate=validate.OneOf(PRIORITIES))
    reminders = reminders_field()
    recurrence = fields.Nested(RecurrenceIn, allow_none=True)
    custom = CustomFields(metadata={"description": "custom fields by key (typed ones: /custom-fields?entity=task)"})

    @validates_schema
    def coherent(self, data, partial=False, **kwargs):
        if not partial:  # a PATCH is checked once merged with the stored task
            check_times(data)


def check_times(data):
    """end before start, or a repeat without a date, is refused (also on merged PATCHes)."""
    if data.get("end_at") and not data.get("due_at"):
        raise ValidationError("end_at needs due_at.", "end_at")
    if data.get("end_at") and data["end_at"] < data["due_at"]:
        raise ValidationError("end_at is before due_at.", "end_at")
    if data.get("recurrence") and not data.get("due_at"):
        raise ValidationError("A recurring task needs due_at.", "recurrence")


class TaskOut(Schema):
    id = fields.String()
    kind = fields.String()
    title = fields.String()
    description = fields.String(allow_none=True)
    due_at = UtcDateTime(allow_none=True)
    end_at = UtcDateTime(allow_none=True)
    assignee_id = fields.String(allow_none=True)
    creator_id = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True)
    call_id = fields.String(allow_none=True)
    priority = fields.String()
    status = fields.String()
    result = fields.String(allow_none=True)
    reminders = fields.List(fields.Integer())
    custom = fields.Dict()
    recurrence = fields.Nested(RecurrenceIn, allow_none=True)
    series_id = fields.String(allow_none=True)
    source = fields.Dict(allow_none=True, metadata={
        "description": "what created it: {type: api|call_missed|stage_rule|recurrence, id}"})
    overdue = fields.Boolean()
    completed_at = UtcDateTime(allow_none=True)
    canceled_at = UtcDateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    next_task_id = fields.String(allow_none=True, metadata={
        "description": "on completing a recurring task: its next occurrence"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class TaskListQuery(CustomFilters, PageQuery):
    sort = custom_sort_field("due_at", "created_at")
    assignee_id = fields.String(validate=ID)
    status = fields.String(validate=validate.OneOf(STATUSES))
    kind = fields.String(validate=validate.OneOf(KINDS))
    contact_id = fields.String(validate=ID)
    deal_id = fields.String(validate=ID)
    due_before = UtcDateTime()
    due_after = UtcDateTime()
    overdue = fields.Boolean()


class TaskPage(PageOf):
    items = fields.List(fields.Nested(TaskOut))


class CompleteIn(Schema):
    result = fields.String(allow_none=True, validate=validate.Length(max=5000))


class CancelQuery(Schema):
    reason = fields.String(validate=validate.Length(max=200))


class CalendarQuery(Schema):
    from_ = UtcDateTime(required=True, data_key="from")
    to = UtcDateTime(required=True, metadata={"description": "after `from`"})
    assignee_id = fields.String(validate=ID, metadata={"description": "default: the caller"})
    include_done = fields.Boolean(load_default=True)
    limit = fields.Integer(load_default=500, validate=validate.Range(1, 1000))
    cursor = cursor_field()

    @validates_schema
    def ordered(self, data, **kwargs):
        if data.get("from_") and data.get("to") and data["to"] <= data["from_"]:
            raise ValidationError("to must be after from.", "to")


class AgendaQuery(Schema):
    assignee_id = fields.String(validate=ID, metadata={"description": "default: the caller"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))


class DealRef(Schema):
    id = fields.String()
    title = fields.String(allow_none=True)
    stage_id = fields.String(allow_none=True)
    pipeline_id = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    amount = fields.Integer(allow_none=True)
    currency = fields.String(allow_none=True)


class AgendaOut(Schema):
    assignee_id = fields.String()
    date = fields.String(metadata={"description": "the user's today (their time zone)"})
    overdue = fields.List(fields.Nested(TaskOut))
    today = fields.List(fields.Nested(TaskOut))
    deals_without_next_step = fields.List(fields.Nested(DealRef), allow_none=True, metadata={
        "description": "open deals of the user with no open task; null if deals is unavailable"})
    deals_unavailable = fields.Boolean()


class TaskRuleIn(Schema):
    pipeline_id = fields.String(required=True, validate=ID)
    stage_id = fields.String(required=True, validate=ID)
    title = fields.String(required=True, validate=validate.Length(1, 200))
    description = fields.String(allow_none=True, validate=validate.Length(max=10000))
    kind = fields.String(load_default="todo", validate=validate.OneOf(KINDS))
    priority = fields.String(load_default="normal", validate=validate.OneOf(PRIORITIES))
    due_in_minutes = fields.Integer(load_default=24 * 60, validate=validate.Range(0, 365 * 24 * 60))
    reminders = reminders_field()
    assignee_id = UserId(allow_none=True, validate=ID, metadata={
        "description": "a fixed user; default (null): the deal's owner"})
    active = fields.Boolean(load_default=True)


class TaskRuleOut(Schema):
    id = fields.String()
    pipeline_id = fields.String()
    stage_id = fields.String()
    title = fields.String()
    description = fields.String(allow_none=True)
    kind = fields.String()
    priority = fields.String()
    due_in_minutes = fields.Integer()
    reminders = fields.List(fields.Integer())
    assignee_id = fields.String(allow_none=True)
    active = fields.Boolean()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class TaskRuleListQuery(PageQuery):
    pipeline_id = fields.String(validate=ID)
    stage_id = fields.String(validate=ID)


class TaskRulePage(PageOf):
    items = fields.List(fields.Nested(TaskRuleOut))


REPORT_GROUPS = ("assignee", "day", "week", "month")


class TaskReportQuery(Schema):
    group_by = fields.String(load_default="assignee", validate=validate.OneOf(REPORT_GROUPS))
    period = fields.String(validate=validate.OneOf(("day", "week", "month")), metadata={
        "description": "with group_by=assignee: one row per assignee and period"})
    from_ = UtcDateTime(data_key="from", metadata={"description": "due_at from (inclusive)"})
    to = UtcDateTime(metadata={"description": "due_at to (exclusive)"})
    assignee_id = fields.String(validate=ID)


class TaskReportRow(Schema):
    assignee_id = fields.String(allow_none=True)
    period = fields.String(allow_none=True)
    total = fields.Integer()
    open = fields.Integer()
    done = fields.Integer()
    canceled = fields.Integer()
    overdue = fields.Integer(metadata={"description": "open and past due now"})
    done_on_time = fields.Integer()
    done_late = fields.Integer()
    on_time_rate = fields.Float(allow_none=True, metadata={
        "description": "done_on_time / done (tasks with a due date); null when none done"})


class TaskReport(Schema):
    group_by = fields.String()
    period = fields.String(allow_none=True)
    items = fields.List(fields.Nested(TaskReportRow))


class ClockIn(Schema):
    now = UtcDateTime()
    advance_seconds = fields.Float()


# --- Events (docs/events.md; the machinery is contracts/events.py) ------------------------

class TaskCopy(EventData):
    """The task as the API returns it (TaskOut): every key of it is sent."""
    id = fields.String(required=True)
    kind = fields.String(metadata={"description": " | ".join(KINDS)})
    title = fields.String()
    status = fields.String(metadata={"description": " | ".join(STATUSES)})
    due_at = IsoTime(allow_none=True)
    assignee_id = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True)
    call_id = fields.String(allow_none=True)


class TaskEvent(EventData):
    task = Object(TaskCopy, required=True, metadata={
        "description": "the task as the API returns it (TaskOut)"})
    assignee_id = fields.String(allow_none=True, metadata={"description": "the task's assignee"})
    ref = ref_field("task")


class TaskCreated(TaskEvent):
    """A task was created (by the API, a missed call, a stage rule, a routed lead or the
    next occurrence of a recurring task)."""
    contact_id = fields.String(allow_none=True)
    actor_id = actor_field()
    summary = summary_field()


class TaskAssigned(TaskEvent):
    """A task was given to someone other than its creator (at creation or later)."""
    assignee_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the new assignee (told)"})
    assigned_by = fields.String(allow_none=True)
    summary = summary_field()


class TaskUpdated(TaskEvent):
    """An open task was changed."""
    actor_id = actor_field()
    changed = fields.List(fields.String(), metadata={"description": "the fields given"})


class TaskCanceled(TaskEvent):
    """A task was canceled."""
    reason = fields.String(allow_none=True, metadata={
        "description": "`answered_call` when an answered call closed a callback task"})


class TaskCompleted(TaskEvent):
    """A task was done."""
    contact_id = fields.String(allow_none=True)
    deal_id = fields.String(allow_none=True)
    result = fields.String(allow_none=True, metadata={"description": "what came of it"})
    summary = summary_field()
    actor_id = actor_field()
    contacted_at = IsoTime(metadata={
        "description": "sent for call and meeting tasks with a contact: a real touch"})


class TaskNotice(TaskEvent):
    """What the timer's notices share; event_id is the notice key (the same if re-sent)."""
    assignee_id = fields.String(required=True, allow_none=True, metadata={
        "description": "the task's assignee"})
    contact_id = fields.String(allow_none=True)
    due_at = IsoTime(metadata={"description": "the deadline it is about"})
    summary = summary_field()


class TaskDueSoon(TaskNotice):
    """A reminder: the task is due in offset_minutes (the assignee is told)."""
    offset_minutes = Int(required=True, metadata={"description": "one of the task's reminders"})


class TaskOverdue(TaskNotice):
    """The task's deadline passed and it is still open (the assignee is told)."""


class TaskEscalated(TaskNotice):
    """Still open grace_minutes after its deadline: the assignee's manager is told."""
    manager_id = fields.String(allow_none=True, metadata={
        "description": "the assignee's manager (else taken from the user copies)"})
    grace_minutes = Int()


EVENTS = {
    "task_created": TaskCreated, "task_assigned": TaskAssigned, "task_updated": TaskUpdated,
    "task_canceled": TaskCanceled, "task_completed": TaskCompleted,
    "task_due_soon": TaskDueSoon, "task_overdue": TaskOverdue, "task_escalated": TaskEscalated,
}
