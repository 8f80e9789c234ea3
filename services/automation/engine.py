"""Pure rule logic, no I/O (unit-tested and benchmarked alone): what a rule may name (field
paths from the event contracts), conditions and their evaluation with the reason of a
failure, templates, the record an event is about, delays in working hours, self-loops."""
import functools
import re
from datetime import date, datetime, time, timedelta, timezone

from contracts import automation as schemas
from contracts.automation import (NOT_TRIGGERS, RECORD_SCHEMAS, RELATED, check_path,  # noqa: F401
                                  event_roots, kinds_of, record_kind_of_event, time_roots)
from contracts.events import registry
from crm_common import templating
from crm_common.errors import ValidationFailed
from crm_common.timeutil import parse_iso, to_iso
from crm_common.workhours import due_in_working_hours, zone

# what each action's own write announces: a rule triggered by one of these that also does
# that action re-triggers itself unless its conditions tell the two apart
ACTION_EVENTS = {
    "move_deal": {"deals.deal_stage_changed", "deals.deal_won", "deals.deal_lost",
                  "deals.deal_updated"},
    "set_field": {"deals.deal_updated", "contacts.contact_updated"},
    "add_tag": {"deals.deal_updated", "contacts.contact_updated"},
    "assign_owner": {"deals.deal_assigned", "deals.deal_updated", "contacts.contact_updated"},
    "create_task": {"tasks.task_created", "tasks.task_assigned"},
}
MAX_CONDITIONS = schemas.MAX_CONDITIONS
MAX_NESTING = schemas.MAX_NESTING


def invalid(field, message):
    return ValidationFailed("Invalid rule", {"fields": {field: [message]}})


# --- what a rule may name -----------------------------------------------------------------

def event_types():
    """[(`source.type`, description, {field path: kind})] of every event a rule may trigger
    on."""
    out = []
    for (source, kind), schema in sorted(registry().items()):
        if source in NOT_TRIGGERS:
            continue
        doc = (type(schema).__doc__ or "").strip().split("\n")[0]
        out.append((f"{source}.{kind}", doc, dict(sorted(kinds_of(event_roots(source, kind)).items()))))
    return out


def roots_of_trigger(trigger):
    roots, why = schemas.trigger_roots(trigger)
    if roots is None:
        raise invalid("trigger.event", why)
    return roots


def record_kind_of_trigger(trigger):
    if trigger["type"] == "event":
        return _record_kind_of_event_type(trigger["event"])
    return {"in_stage": "deal", "no_contact": "contact"}.get(trigger["type"]) or trigger["record"]


@functools.lru_cache(maxsize=None)
def _record_kind_of_event_type(name):
    """Per event type, once (the contracts do not change while running): asked for every
    rule an event meets."""
    return record_kind_of_event(roots_of_trigger({"type": "event", "event": name}))


# --- conditions ---------------------------------------------------------------------------

def check_conditions(node, roots, where="conditions", depth=0, counter=None):
    """Raises ValidationFailed naming the first bad node."""
    counter = counter if counter is not None else [0]
    if node is None:
        return
    if not isinstance(node, dict):
        raise invalid(where, "A condition is an object.")
    if depth > MAX_NESTING:
        raise invalid(where, f"Conditions nest at most {MAX_NESTING} levels.")
    groups = [k for k in ("all", "any") if k in node]
    if groups:
        if len(node) != 1 or not isinstance(node[groups[0]], list) or not node[groups[0]]:
            raise invalid(where, 'A group is {"all": [...]} or {"any": [...]}, not empty.')
        for i, child in enumerate(node[groups[0]]):
            check_conditions(child, roots, f"{where}.{groups[0]}.{i}", depth + 1, counter)
        return
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise invalid(where, f"At most {MAX_CONDITIONS} conditions.")
    extra = set(node) - {"field", "op", "value"}
    if extra or not isinstance(node.get("field"), str) or node.get("op") not in schemas.OPS:
        raise invalid(where, "A condition is {field, op, value}; op one of " + ", ".join(schemas.OPS))
    problem = check_path(node["field"], roots)
    if problem:
        raise invalid(f"{where}.field", problem)
    op, value = node["op"], node.get("value")
    if op in ("in", "not_in") and not isinstance(value, list):
        raise invalid(f"{where}.value", f"{op} needs a list.")
    if op in ("gt", "gte", "lt", "lte") and not isinstance(value, (int, float, str)):
        raise invalid(f"{where}.value", f"{op} needs a number, a date or a time.")
    if op not in ("empty", "not_empty") and "value" not in node:
        raise invalid(f"{where}.value", f"{op} needs a value.")


def get_path(ctx, path):
    value = ctx
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _comparable(a, b):
    """Numbers with numbers; ISO dates/times as instants when both parse."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        try:
            return _instant(a), _instant(b)
        except ValueError:
            return a, b
    return None


def _instant(text):
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return datetime.combine(date.fromisoformat(text), time(0), tzinfo=timezone.utc)
    return parse_iso(text)


def test(node, ctx):
    op, actual, value = node["op"], get_path(ctx, node["field"]), node.get("value")
    if op == "eq":
        return actual == value
    if op == "ne":
        return actual != value
    if op == "in":
        return actual in value
    if op == "not_in":
        return actual not in value
    if op == "empty":
        return actual in (None, "", [], {})
    if op == "not_empty":
        return actual not in (None, "", [], {})
    if op in ("contains", "not_contains"):
        if isinstance(actual, list):
            found = value in actual
        elif isinstance(actual, str) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            # a number typed into "title contains 123" (an API client's JSON) still means the text
            found = str(value).lower() in actual.lower()
        else:
            found = False
        return found if op == "contains" else not found
    pair = _comparable(actual, value)
    if pair is None:
        return False
    a, b = pair
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def evaluate(node, ctx, where=""):
    """(True, None) or (False, why): the first failed condition, with the value seen and,
    inside groups, its path in the tree (`all.1.any.0: deal.amount gt 10 failed (is 5)`:
    the first test of the second condition's `any` group), which the run log shows."""
    if not node:
        return True, None
    at = f"{where}: " if where else ""
    if "all" in node:
        for i, child in enumerate(node["all"]):
            ok, why = evaluate(child, ctx, f"{where}.all.{i}".lstrip("."))
            if not ok:
                return False, why
        return True, None
    if "any" in node:
        whys = []
        for i, child in enumerate(node["any"]):
            ok, why = evaluate(child, ctx, f"{where}.any.{i}".lstrip("."))
            if ok:
                return True, None
            whys.append(why)
        return False, f"{at}none of: " + "; ".join(whys)
    if test(node, ctx):
        return True, None
    seen = get_path(ctx, node["field"])
    shown = f" {node['value']!r}" if "value" in node else ""
    return False, f"{at}{node['field']} {node['op']}{shown} failed (is {seen!r})"


def pinned_values(node, path):
    """The values an `all` of conditions pins `path` to (eq / in), or None if free."""
    if not node:
        return None
    if "field" in node:
        if node["field"] == path and node["op"] == "eq":
            return {node.get("value")}
        if node["field"] == path and node["op"] == "in":
            return set(node.get("value") or [])
        return None
    if "all" in node:
        found = None
        for child in node["all"]:
            values = pinned_values(child, path)
            if values is not None:
                found = values if found is None else found & values
        return found
    return None  # an `any` pins nothing for sure


def index_key(node):
    """(path, values) of a top-level eq / in condition that must hold, so the rules of an
    event type are looked up by that value instead of each evaluated; None if none."""
    if not node:
        return None
    children = node.get("all") if "all" in node else [node] if "field" in node else []
    for child in children:
        if "field" in child and child["op"] in ("eq", "in"):
            values = pinned_values(child, child["field"])
            if values and all(isinstance(v, (str, int, float, bool)) for v in values):
                return child["field"], values
    return None


def check_self_loop(rule):
    """A rule whose own action announces the event it triggers on, with nothing in its
    conditions to tell that event apart, would fire on itself for ever: refused."""
    trigger = rule["trigger"]
    if trigger["type"] != "event":
        return
    for i, action in enumerate(rule["actions"]):
        if trigger["event"] not in ACTION_EVENTS.get(action["type"], ()):
            continue
        if action["type"] == "move_deal" and trigger["event"] == "deals.deal_stage_changed":
            pinned = (pinned_values(rule.get("conditions"), "to_stage_id")
                      or pinned_values(rule.get("conditions"), "deal.stage_id"))
            if pinned is not None and action.get("stage_id") not in pinned:
                continue  # entering its target stage does not match the rule again
        if action["type"] == "create_task" and trigger["event"].startswith("tasks."):
            if pinned_values(rule.get("conditions"), "task.kind") or \
                    pinned_values(rule.get("conditions"), "task.title"):
                continue
        raise invalid(f"actions.{i}", f"A loop: this action announces {trigger['event']}, "
                                      "the rule's own trigger, and the conditions do not "
                                      "exclude what it does.")


# --- actions ------------------------------------------------------------------------------

ACTION_FIELDS = {
    "notify_user": {"user_id", "message"},
    # due_from "event": counted from the event's time (stage rules), else from the run;
    # stage_rule: the task's source names the rule and the event, as /task-rules' tasks
    "create_task": {"title", "description", "kind", "priority", "due_in_minutes",
                    "assignee_id", "reminders", "due_from", "stage_rule"},
    "move_deal": {"stage_id"},
    "set_field": {"record", "field", "value"},
    "add_tag": {"record", "tag"},
    "assign_owner": {"record", "strategy", "user_ids"},
    "webhook": {"url", "secret"},
    "send_message": {"channel", "subject", "body"},
    "create_invoice": {"options", "send"},
}
SETTABLE = {"deal": {"title", "amount", "source", "expected_close_date", "notes", "custom"},
            "contact": {"position", "source", "status", "do_not_contact", "birthday", "custom",
                        "first_name", "last_name"}}


def check_actions(actions, roots, record):
    for i, action in enumerate(actions):
        where = f"actions.{i}"
        kind = action.get("type") if isinstance(action, dict) else None
        if kind not in schemas.ACTION_TYPES:
            raise invalid(f"{where}.type", "One of " + ", ".join(schemas.ACTION_TYPES))
        extra = set(action) - ACTION_FIELDS[kind] - {"type"}
        if extra:
            raise invalid(where, f"Unknown keys for {kind}: {', '.join(sorted(extra))}")
        need = {"move_deal": ("stage_id",), "set_field": ("field",), "add_tag": ("tag",),
                "webhook": ("url",), "send_message": ("channel", "body"),
                "create_task": ("title",), "notify_user": ("message",),
                "assign_owner": ("user_ids",)}.get(kind, ())
        for key in need:
            if action.get(key) in (None, "", []):
                raise invalid(f"{where}.{key}", f"{kind} needs {key}.")
        target = action.get("record") or record
        if kind in ("move_deal", "create_invoice") and "deal" not in roots:
            raise invalid(where, f"{kind} needs a trigger about a deal.")
        if kind == "send_message":
            if action["channel"] not in schemas.CHANNELS:
                raise invalid(f"{where}.channel", "One of " + ", ".join(schemas.CHANNELS))
            if "contact" not in roots and "contact_id" not in roots:
                raise invalid(where, "send_message needs a trigger with a contact.")
        if kind in ("set_field", "add_tag", "assign_owner"):
            if target not in SETTABLE or target not in roots:
                raise invalid(f"{where}.record", "contact or deal, one the trigger has.")
        if kind == "set_field":
            name = action["field"].split(".")[0]
            if name not in SETTABLE[target]:
                raise invalid(f"{where}.field", f"{target} fields that may be set: "
                                                + ", ".join(sorted(SETTABLE[target])))
        if kind == "assign_owner":
            if action.get("strategy", "round_robin") not in ("round_robin", "least_loaded"):
                raise invalid(f"{where}.strategy", "round_robin or least_loaded")
            if not isinstance(action["user_ids"], list) or len(action["user_ids"]) > 100:
                raise invalid(f"{where}.user_ids", "A list of at most 100 users.")
        if kind == "webhook" and not re.match(r"^https?://", str(action["url"])):
            raise invalid(f"{where}.url", "An http(s) URL.")
        if kind == "create_task":
            minutes = action.get("due_in_minutes", 0)
            if not isinstance(minutes, int) or not 0 <= minutes <= schemas.MAX_DELAY_MINUTES:
                raise invalid(f"{where}.due_in_minutes", "0 to a year of minutes.")
        for key in ("message", "title", "description", "subject", "body"):
            if isinstance(action.get(key), str):
                check_template(action[key], roots, f"{where}.{key}")


# --- templates ----------------------------------------------------------------------------

def check_template(source, roots, where):
    """A syntax error, or a placeholder the trigger's records do not have, is refused."""
    allowed = set(roots) | {"event", "rule", "unsubscribe_url", "campaign_source", "utm_query"}
    found = templating.problem(source, allowed, lambda path: check_path(path, roots)
                               if path.partition(".")[0] in roots else None)
    if found:
        raise invalid(where, found[1])


def render(source, ctx):
    """Strict: a value missing at run time raises (the action fails, logged)."""
    return templating.STRICT.from_string(source).render(**ctx)


# --- events and records -------------------------------------------------------------------

def records_of(data):
    """{kind: record copy} an event carries whole, and {kind: id} it names."""
    whole = {k: data[k] for k in RECORD_SCHEMAS if isinstance(data.get(k), dict)}
    ids = {k: v["id"] for k, v in whole.items() if v.get("id")}
    for kind in RECORD_SCHEMAS:
        if data.get(f"{kind}_id") and kind not in ids:
            ids[kind] = data[f"{kind}_id"]
    ref = data.get("ref") or {}
    if ref.get("type") in RECORD_SCHEMAS and ref.get("id") and ref["type"] not in ids:
        ids[ref["type"]] = ref["id"]
    return whole, ids


def subject_of(data, trigger_kind):
    """(record type, record id) the occurrence is about."""
    _, ids = records_of(data)
    if trigger_kind and ids.get(trigger_kind):
        return trigger_kind, ids[trigger_kind]
    for kind in ("deal", "contact", "task", "call"):
        if ids.get(kind):
            return kind, ids[kind]
    return None, None


def owner_of(ctx):
    for kind in ("deal", "contact", "task", "call"):
        record = ctx.get(kind)
        if isinstance(record, dict):
            owner = record.get("owner_id") or record.get("assignee_id") or record.get("agent_id")
            if owner:
                return owner
    return ctx.get("owner_id") or ctx.get("assignee_id")


# --- delays -------------------------------------------------------------------------------

def due_time(start, delay, hours, tz_name):
    """When a delayed run is due: `minutes` (of working time when asked), then, with `at`,
    the next working day's HH:MM; all in the owner's zone."""
    if not delay:
        return start
    hours = dict(hours or {"start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5]},
                 timezone=tz_name)
    minutes = delay.get("minutes") or 0
    due = due_in_working_hours(start, minutes, hours) if delay.get("working_hours") \
        else start + timedelta(minutes=minutes)
    if delay.get("at"):
        tz = zone(tz_name)
        at = time.fromisoformat(delay["at"])
        local = due.astimezone(tz)
        for step in range(1, 15):
            day = local.date() + timedelta(days=step)
            if day.isoweekday() in set(hours.get("days") or [1, 2, 3, 4, 5]):
                return datetime.combine(day, at, tzinfo=tz).astimezone(timezone.utc)
    return due


# --- time triggers ------------------------------------------------------------------------

def date_keys(record):
    """The keys a date trigger looks a record up by: `<field>:<YYYY-MM-DD>` and
    `<field>:<MM-DD>` for each date field (custom ones as `custom.<name>`)."""
    keys = []
    values = [(k, v) for k, v in record.items() if isinstance(v, str)]
    values += [(f"custom.{k}", v) for k, v in (record.get("custom") or {}).items()
               if isinstance(v, str)]
    for name, value in values:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value[:10]) and name not in (
                "created_at", "updated_at", "deleted_at", "closed_at"):
            keys.append(f"{name}:{value[:10]}")
            keys.append(f"{name}:{value[5:10]}")
    return keys


def date_target(today, trigger):
    """The date key a date trigger looks for on `today` (N days before the date means the
    date is N days ahead)."""
    days = trigger["days"] if trigger.get("when") == "before" else -trigger["days"]
    target = today + timedelta(days=days)
    suffix = target.strftime("%m-%d") if trigger.get("annual") else target.isoformat()
    return f"{trigger['field']}:{suffix}", target


def quiet_since(contact):
    """When a contact was last touched (created, if never)."""
    for key in ("last_contacted_at", "created_at"):
        if contact.get(key):
            try:
                return parse_iso(contact[key])
            except (TypeError, ValueError):
                continue
    return None


def stage_since(deal):
    if deal.get("status", "open") != "open" or not deal.get("stage_entered_at"):
        return None
    try:
        return parse_iso(deal["stage_entered_at"])
    except (TypeError, ValueError):
        return None


def iso(value):
    return to_iso(value)


def leaves_copies(source, kind):
    """Whether an event of this type leaves something behind whatever the rules
    (operations.Automation._records_of): a whole contact or deal (their newest copies, for
    time triggers and contexts) or a contact's touch (`contacted_at`, an answered call)."""
    if kind == "call_answered":
        return True
    schema = registry().get((source, kind))
    return schema is not None and bool(
        {f.data_key or name for name, f in schema.fields.items()} & {"contact", "deal",
                                                                      "contacted_at"})
