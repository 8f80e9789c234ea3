"""The automation API, one source: rules (a trigger, conditions, actions, an optional delay),
their run log and dry run, segments and campaigns. The service validates with these (the
shapes, and the fields a rule's conditions name against the trigger's event contract), and
services/automation/engine.py checks what a shape cannot say (templates, loops, what each
action needs of its trigger) at save.

Actions and conditions are typed unions (`OneOf`): an action is one schema per `type`, a
condition one per `op` group or an `all` / `any` group of conditions; the OpenAPI document
writes them as oneOf (with a discriminator for actions), and a body that fits none is a
422 naming the reason at the gateway."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from contracts.contacts import ContactListQuery, ContactOut
from contracts.deals import DealOut
from contracts.events import (EventData, Int, IsoTime, Object, actor_field, ref_field, registry,
                              summary_field, wire_fields)
from contracts.sales import DATE, LANGUAGES
from contracts.tasks import KINDS, PRIORITIES, TaskOut, reminders_field
from contracts.telephony import CallOut
from crm_common.fields import Pattern, PageOf, PageQuery, UtcDateTime
from crm_common.validation import json_type_errors

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
MAX_CONDITIONS = 50
MAX_NESTING = 5
HHMM = Pattern(r"^([01]\d|2[0-3]):[0-5]\d$", error="Not a time HH:MM.")
TEMPLATE = validate.Length(1, 20000)
PATH = Pattern(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z0-9_]{1,64}){0,4}$",
                       error="A field path: names joined by dots (deal.amount, contact.custom.x).")


# --- what a rule may name (field paths from the event contracts) --------------------------

# the records an event may carry whole, with every key the API gives them
RECORD_SCHEMAS = {"deal": DealOut(), "contact": ContactOut(), "task": TaskOut(), "call": CallOut()}
# records reachable from another one through its copy of their id (in the engine's snapshots)
RELATED = {"deal": {"contact": "contact_id"}, "task": {"deal": "deal_id", "contact": "contact_id"}}
# its own events would let rules feed each other by construction; deliveries of
# notifications are that service's business; users come from the gateway's copy
NOT_TRIGGERS = ("automation", "notifications", "gateway")


def event_roots(source, kind):
    """{root name: schema, None (a plain value) or "any"} a condition on this event may
    start with; None when there is no such event."""
    schema = registry().get((source, kind))
    if schema is None:
        return None
    roots = {}
    for key, field in wire_fields(schema).items():
        roots[key] = RECORD_SCHEMAS.get(key) if isinstance(field, Object) else None
        if isinstance(field, (fields.Dict, Object)) and key not in RECORD_SCHEMAS:
            roots[key] = "any"
    record = record_kind_of_event(roots)
    for name in RELATED.get(record, {}):
        roots.setdefault(name, RECORD_SCHEMAS[name])
    return roots


def time_roots(record):
    roots = {record: RECORD_SCHEMAS[record]}
    for name in RELATED.get(record, {}):
        roots[name] = RECORD_SCHEMAS[name]
    return roots


def record_kind_of_event(roots):
    for kind in ("deal", "task", "call", "contact"):
        if kind in roots:
            return kind
    return None


FIELD_KINDS = ((fields.Boolean, "boolean"), (fields.Number, "number"), (fields.DateTime, "datetime"),
               (fields.Date, "date"), (fields.List, "list"), (fields.Dict, "object"),
               (fields.Nested, "object"), (fields.String, "text"))


def kind_of(field):
    """What a condition's value is compared with: number, text, boolean, date, datetime,
    list, object, or any (a root whose shape the contract leaves open)."""
    return next((kind for cls, kind in FIELD_KINDS if isinstance(field, cls)), "any")


def kinds_of(roots):
    """{field path: kind} of every field a condition on these roots may name."""
    out = {}
    for root, schema in roots.items():
        if schema is None or schema == "any":
            out[root] = "any"
            continue
        for key, field in wire_fields(schema).items():
            out[f"{root}.{key}"] = kind_of(field)
    return out


def check_path(path, roots):
    """None if `path` names a field these roots have, else why not."""
    parts = path.split(".")
    root = parts[0]
    if root not in roots:
        return f"unknown field {path!r}: the trigger's records have " + ", ".join(sorted(roots))
    schema = roots[root]
    if schema == "any" or (schema is None and len(parts) == 1):
        return None
    if schema is None:
        return f"unknown field {path!r}: {root} has no fields"
    if len(parts) == 1:
        return None
    by_key = wire_fields(schema)
    field = by_key.get(parts[1])
    if field is None:
        return f"unknown field {path!r}: {root} has no field {parts[1]!r}"
    if len(parts) > 2 and not isinstance(field, fields.Dict):
        return f"unknown field {path!r}: {root}.{parts[1]} has no sub-fields"
    return None


def trigger_roots(trigger):
    """(roots, None) of a trigger's records, or (None, why not): an event that is not in
    the contracts (or automation's own, notifications', the gateway's)."""
    if trigger["type"] == "event":
        source, _, kind = trigger["event"].partition(".")
        roots = event_roots(source, kind) if source not in NOT_TRIGGERS else None
        if roots is None:
            return None, (f"No such event: {trigger['event']!r} (GET /automation/triggers "
                          "lists them).")
        return roots, None
    record = {"in_stage": "deal", "no_contact": "contact"}.get(trigger["type"]) or trigger["record"]
    return time_roots(record), None


# --- typed unions -------------------------------------------------------------------------

class OneOf(fields.Field):
    """A JSON object that is one of several schemas: the variant named by the value of its
    `key` (`variants`: {value: schema class}), or, for a union without one key, the one
    `choose(value)` names. Loaded through that schema, with JSON's strict types; dumped as
    is. gateway/openapi.py writes it as oneOf (+ discriminator when `key` is set)."""

    default_error_messages = {"type": "Not an object."}

    def __init__(self, variants, key=None, choose=None, **kwargs):
        super().__init__(**kwargs)
        self._variants = variants  # or a function giving them (a union that nests itself)
        self.key = key
        self.choose = choose

    @property
    def variants(self):
        return self._variants() if callable(self._variants) else self._variants

    def variant_of(self, value):
        if self.choose is not None:
            return self.choose(value)
        kind = value.get(self.key)
        if not isinstance(kind, str) or kind not in self.variants:  # a list or object too
            raise ValidationError({self.key: ["One of: " + ", ".join(self.variants) + "."]})
        return kind

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise self.make_error("type")
        schema = self.variants[self.variant_of(value)]()
        errors = json_type_errors(schema, value)
        if errors:
            raise ValidationError(errors)
        return schema.load(value)

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class Scalar(fields.Field):
    """Text, a number or a boolean (JSON's own types, none converted)."""

    default_error_messages = {"invalid": "Text, a number or a boolean."}
    KINDS = (str, int, float, bool)
    DOC = {"oneOf": [{"type": "string", "maxLength": 2000}, {"type": "number"},
                     {"type": "boolean"}]}

    def __init__(self, **kwargs):
        kwargs["metadata"] = {**self.DOC, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, self.KINDS) or (isinstance(value, str) and len(value) > 2000):
            raise self.make_error("invalid")
        return value


class Comparable(Scalar):
    """A number, or text holding a date or time (ISO 8601) to compare with."""

    default_error_messages = {"invalid": "A number, or a date or time (ISO 8601)."}
    KINDS = (str, int, float)
    DOC = {"oneOf": [{"type": "string", "maxLength": 40}, {"type": "number"}]}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or (isinstance(value, str) and len(value) > 40):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class FieldValue(Scalar):
    """What set_field writes: text, a number, a boolean, a list of text, or null (clears)."""

    default_error_messages = {"invalid": "Text, a number, a boolean, a list of text or null."}
    DOC = {"anyOf": [{"type": "string", "maxLength": 2000}, {"type": "number"},
                     {"type": "boolean"},
                     {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 200}},
                     {"type": "object", "nullable": True, "enum": [None]}]}

    def __init__(self, **kwargs):
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            if len(value) > 100 or not all(isinstance(v, str) and len(v) <= 200 for v in value):
                raise self.make_error("invalid")
            return value
        return super()._deserialize(value, attr, data, **kwargs)


# --- actions: one schema per type ---------------------------------------------------------

class NotifyUserAction(Schema):
    """Tell a user (notifications delivers it)."""
    type = fields.String(required=True, validate=validate.Equal("notify_user"))
    user_id = fields.String(validate=ID, metadata={"description": "default: the record's owner"})
    message = fields.String(required=True, validate=TEMPLATE, metadata={"description": "a template"})


class CreateTaskAction(Schema):
    """Create a task (tasks), once per run."""
    type = fields.String(required=True, validate=validate.Equal("create_task"))
    title = fields.String(required=True, validate=validate.Length(1, 500),
                          metadata={"description": "a template"})
    description = fields.String(validate=TEMPLATE, metadata={"description": "a template"})
    kind = fields.String(validate=validate.OneOf(KINDS))
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    due_in_minutes = fields.Integer(validate=validate.Range(0, MAX_DELAY_MINUTES),
                                    metadata={"description": "default 0; at most a year"})
    assignee_id = fields.String(validate=ID, metadata={"description": "default: the record's owner"})
    reminders = reminders_field()
    due_from = fields.String(validate=validate.OneOf(("event", "run")), metadata={
        "description": "count due_in_minutes from the event's time or the run's (default)"})
    stage_rule = fields.Boolean(metadata={
        "description": "a /task-rules rule's task: its source names the rule and the event"})


class MoveDealAction(Schema):
    """Move the deal to a stage (nothing when it is there)."""
    type = fields.String(required=True, validate=validate.Equal("move_deal"))
    stage_id = fields.String(required=True, validate=ID)


class SetFieldAction(Schema):
    """Set a field of the contact or deal (nothing when it holds the value)."""
    type = fields.String(required=True, validate=validate.Equal("set_field"))
    record = fields.String(validate=validate.OneOf(("contact", "deal")),
                           metadata={"description": "default: the trigger's deal, else contact"})
    field = fields.String(required=True, validate=PATH, metadata={
        "description": "deal: title, amount, source, expected_close_date, notes, custom.<name>; "
                       "contact: position, source, status, do_not_contact, birthday, "
                       "first_name, last_name, custom.<name>"})
    value = FieldValue(metadata={"description": "text is a template"})


class AddTagAction(Schema):
    """Tag the contact or deal."""
    type = fields.String(required=True, validate=validate.Equal("add_tag"))
    record = fields.String(validate=validate.OneOf(("contact", "deal")))
    tag = fields.String(required=True, validate=validate.Length(1, 50))


class AssignOwnerAction(Schema):
    """Give the contact or deal an owner among user_ids."""
    type = fields.String(required=True, validate=validate.Equal("assign_owner"))
    record = fields.String(validate=validate.OneOf(("contact", "deal")))
    strategy = fields.String(validate=validate.OneOf(("round_robin", "least_loaded")), metadata={
        "description": "default round_robin; least_loaded: fewest open deals / contacts"})
    user_ids = fields.List(fields.String(validate=ID), required=True,
                           validate=validate.Length(1, 100))


class WebhookAction(Schema):
    """POST the occurrence as JSON (Idempotency-Key, X-CRM-Signature when secret)."""
    type = fields.String(required=True, validate=validate.Equal("webhook"))
    url = fields.String(required=True, validate=[
        validate.Length(max=2000), Pattern(r"^https?://", error="An http(s) URL.")])
    secret = fields.String(validate=validate.Length(1, 200))


class SendMessageAction(Schema):
    """A message to the client through conversations (consent checked there)."""
    type = fields.String(required=True, validate=validate.Equal("send_message"))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    subject = fields.String(allow_none=True, validate=validate.Length(max=300),
                            metadata={"description": "e-mail; a template"})
    body = fields.String(required=True, validate=TEMPLATE, metadata={"description": "a template"})


class InvoiceOptions(Schema):
    language = fields.String(validate=validate.OneOf(LANGUAGES))
    due_date = fields.String(validate=DATE, metadata={"description": "YYYY-MM-DD"})
    notes = fields.String(allow_none=True, validate=validate.Length(max=2000))


class CreateInvoiceAction(Schema):
    """An invoice of the deal's lines (sales), sent when `send`."""
    type = fields.String(required=True, validate=validate.Equal("create_invoice"))
    options = fields.Nested(InvoiceOptions, allow_none=True)
    send = fields.Boolean()


ACTIONS = {"notify_user": NotifyUserAction, "create_task": CreateTaskAction,
           "move_deal": MoveDealAction, "set_field": SetFieldAction, "add_tag": AddTagAction,
           "assign_owner": AssignOwnerAction, "webhook": WebhookAction,
           "send_message": SendMessageAction, "create_invoice": CreateInvoiceAction}
assert tuple(ACTIONS) == ACTION_TYPES


def action_field(**kwargs):
    return OneOf(ACTIONS, key="type", **kwargs)


# --- conditions: a group, or one test per operator ----------------------------------------

def condition_field(**kwargs):
    """A condition: a group ({"all": [...]} / {"any": [...]}) or a test {field, op, value}."""
    return ConditionTree(lambda: CONDITIONS, choose=lambda value: _condition_variant(value), **kwargs)


def nesting_depth(value, limit=MAX_NESTING + 1):
    """How many groups deep a condition tree goes (a test alone: 0), counted without
    recursion and no further than `limit`."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest >= limit or not isinstance(node, dict):
            continue
        for group in ("all", "any"):
            if isinstance(node.get(group), list):
                stack.extend((child, depth + 1) for child in node[group][:MAX_CONDITIONS + 1])
    return deepest


class ConditionTree(OneOf):
    """The conditions' union, refused (422) past MAX_NESTING groups before it is loaded: a
    body nested a thousand deep is a reason, not a RecursionError."""

    def _deserialize(self, value, attr, data, **kwargs):
        if nesting_depth(value) > MAX_NESTING:
            raise ValidationError(f"Conditions nest at most {MAX_NESTING} groups deep.")
        return super()._deserialize(value, attr, data, **kwargs)


class AllConditions(Schema):
    """Every condition holds."""
    all = fields.List(condition_field(), required=True, validate=validate.Length(1, MAX_CONDITIONS))


class AnyConditions(Schema):
    """At least one condition holds."""
    any = fields.List(condition_field(), required=True, validate=validate.Length(1, MAX_CONDITIONS))


class _Test(Schema):
    field = fields.String(required=True, validate=PATH)


class EqualsCondition(_Test):
    """The field equals (eq) or differs from (ne) the value."""
    op = fields.String(required=True, validate=validate.OneOf(("eq", "ne")))
    value = Scalar(required=True)


class InCondition(_Test):
    """The field is (in) or is not (not_in) one of the values."""
    op = fields.String(required=True, validate=validate.OneOf(("in", "not_in")))
    value = fields.List(Scalar(), required=True, validate=validate.Length(1, 500))


class CompareCondition(_Test):
    """The field compared with a number, a date or a time."""
    op = fields.String(required=True, validate=validate.OneOf(("gt", "gte", "lt", "lte")))
    value = Comparable(required=True)


class ContainsCondition(_Test):
    """A list field holds the value, or a text field the text (case-insensitive)."""
    op = fields.String(required=True, validate=validate.OneOf(("contains", "not_contains")))
    value = Scalar(required=True)


class EmptyCondition(_Test):
    """The field is (not) null, empty text, an empty list or object."""
    op = fields.String(required=True, validate=validate.OneOf(("empty", "not_empty")))


TESTS = {"eq": EqualsCondition, "ne": EqualsCondition, "in": InCondition,
         "not_in": InCondition, "gt": CompareCondition, "gte": CompareCondition,
         "lt": CompareCondition, "lte": CompareCondition, "contains": ContainsCondition,
         "not_contains": ContainsCondition, "empty": EmptyCondition,
         "not_empty": EmptyCondition}
assert tuple(TESTS) == OPS
CONDITIONS = {"all": AllConditions, "any": AnyConditions, "equals": EqualsCondition,
              "in": InCondition, "compare": CompareCondition, "contains": ContainsCondition,
              "empty": EmptyCondition}
_VARIANT_OF_OP = {op: next(k for k, v in CONDITIONS.items() if v is schema)
                  for op, schema in TESTS.items()}


def _condition_variant(value):
    for group in ("all", "any"):
        if group in value:
            return group
    op = value.get("op")
    if not isinstance(op, str) or op not in TESTS:
        raise ValidationError({"op": ["One of: " + ", ".join(OPS) + " (or a group: all, any)."]})
    return _VARIANT_OF_OP[op]


def condition_paths(node, where="conditions"):
    """(where, field path) of every test in a (loaded) condition tree."""
    if not isinstance(node, dict):
        return
    for group in ("all", "any"):
        if isinstance(node.get(group), list):
            for i, child in enumerate(node[group]):
                yield from condition_paths(child, f"{where}.{group}.{i}")
            return
    if isinstance(node.get("field"), str):
        yield f"{where}.field", node["field"]


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
    conditions = condition_field(allow_none=True, metadata={
        "description": "a test {field, op, value} or a group {all: [...]} / {any: [...]} "
                       f"(at most {MAX_NESTING} deep, {MAX_CONDITIONS} tests); a field is a "
                       "path the trigger has (GET /automation/triggers)"})
    actions = fields.List(action_field(), required=True, validate=validate.Length(1, 20),
                          metadata={"description": "run in order"})
    delay = fields.Nested(DelayIn, allow_none=True)
    working_hours = fields.Nested(WorkingHours, allow_none=True)
    timezone = fields.String(allow_none=True, validate=validate.Length(max=60), metadata={
        "description": "working hours' zone when the owner has none (default UTC)"})
    log_skips = fields.Boolean(load_default=True, metadata={
        "description": "log the occurrences whose conditions failed, with the reason"})

    @validates_schema(skip_on_field_errors=True)
    def names_what_the_trigger_has(self, data, **kwargs):
        """The event is one of the contracts', and every field named (a date trigger's, the
        conditions') is one its records have. A PATCH without its trigger: the service."""
        if "trigger" not in data:
            return
        roots, why = trigger_roots(data["trigger"])
        if roots is None:
            raise ValidationError(why, "trigger.event")
        errors = {}
        if data["trigger"]["type"] == "date_field":
            problem = check_path(f"{data['trigger']['record']}.{data['trigger']['field']}", roots)
            if problem:
                errors["trigger.field"] = [problem]
        for where, path in condition_paths(data.get("conditions")):
            problem = check_path(path, roots)
            if problem:
                errors[where] = [problem]
        if errors:
            raise ValidationError(errors)


class RuleOut(Schema):
    id = fields.String()
    name = fields.String()
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    trigger = fields.Nested(TriggerIn)
    conditions = condition_field(allow_none=True)
    actions = fields.List(action_field())
    delay = fields.Nested(DelayIn, allow_none=True)
    working_hours = fields.Nested(WorkingHours, allow_none=True)
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
    types = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.OneOf(
        ("number", "text", "boolean", "date", "datetime", "list", "object", "any"))), metadata={
        "description": "each field's kind: a rule editor keeps a typed value as text for "
                       "a text field and as a number for a number field"})


class TriggerList(Schema):
    items = fields.List(fields.Nested(TriggerInfo))


class ClockIn(Schema):
    now = UtcDateTime()


# --- segments and campaigns -----------------------------------------------------------

class SegmentFilters(ContactListQuery):
    """The contacts list's filters (GET /contacts), each with its type; not its paging."""
    OPENAPI_EXTRA = {"dependencies": {"bought_from": ["bought_product"],
                                      "bought_to": ["bought_product"]}}

    class Meta:
        exclude = ("limit", "cursor", "sort", "include_total", "include_deleted")


class SegmentIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    filters = fields.Nested(SegmentFilters, required=True, metadata={
        "description": "stored as given, evaluated when counted or sent"})
    allow_everyone = fields.Boolean(load_default=False, metadata={
        "description": "a segment with no filter matches every contact: refused unless set"})


class SegmentOut(Schema):
    id = fields.String()
    name = fields.String()
    filters = fields.Dict(metadata={"description": "as given (SegmentFilters)"})
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
    status = fields.String(metadata={"description": "draft | scheduled | queuing | sending | sent | failed"})
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
