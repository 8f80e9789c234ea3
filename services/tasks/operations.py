"""What the tasks service does, apart from how it is called. Each write returns the events
to announce; the entrypoint dispatches them only after the write succeeded."""
import logging
import time
from datetime import timedelta

from marshmallow import ValidationError

from crm_common.cursors import parse_sort
from crm_common import custom_fields
from crm_common.errors import Conflict, NotFound, ValidationFailed
from crm_common.messaging.events import envelope
from crm_common.fields import with_every_key
from crm_common.ids import new_id
from crm_common.timeutil import parse_iso, to_iso, utcnow
from crm_common.validation import load
from contracts import tasks as schemas
from services.tasks.domain import (CONTACT_KINDS, day_bounds, due_in_working_hours, due_notices,
                                   first_alarm, next_alarm, next_occurrence, zone)
from services.tasks.store import NO_DATE, SORTS

log = logging.getLogger(__name__)
SERVICE = "tasks"

task_in = schemas.TaskIn()
task_out = schemas.TaskOut()
list_query = schemas.TaskListQuery()
complete_in = schemas.CompleteIn()
calendar_query = schemas.CalendarQuery()
agenda_query = schemas.AgendaQuery()
rule_out = schemas.TaskRuleOut()
rule_list_query = schemas.TaskRuleListQuery()
report_query = schemas.TaskReportQuery()
deal_ref = schemas.DealRef()

def dump_task(doc, now):
    out = with_every_key(task_out, task_out.dump(doc), doc["_id"])
    out["overdue"] = bool(doc.get("status") == "open" and doc.get("due_at") and doc["due_at"] < now)
    out["custom"] = doc.get("custom") or {}
    return out


def dump_rule(doc):
    return with_every_key(rule_out, rule_out.dump(doc), doc["_id"])


def _event(event_type, data, event_id=None):
    return envelope(SERVICE, event_type, data, event_id)


def _invalid(field, message):
    return ValidationFailed("Invalid input", {"fields": {field: [message]}})


class Tasks:
    def __init__(self, store, caller, clock, config):
        self.store = store
        self.caller = caller
        self.clock = clock
        self.config = config

    @property
    def grace(self):
        return self.config.escalation_grace_minutes

    def _visible(self):
        return self.caller.owner_filter("assignee_id", "creator_id")

    # CRUD
    def completeness_records(self, entity, fields, assignee_id):
        return self.store.completeness_records(
            custom_fields.projection(fields, "assignee_id"), assignee_id, self._visible())

    def typed_custom(self, values):
        """A write's custom values checked against the tasks' typed custom fields."""
        return custom_fields.check_values(self.store.custom_fields.of("task"), values,
                                          users=self.store.active_user_ids)

    def create(self, payload, source_key=None, source=None, creator_id=None):
        data = load(task_in, payload)
        if "custom" in data:
            data["custom"] = self.typed_custom(data["custom"])
        assignee = data.get("assignee_id") or self.caller.user_id
        self._check_assignee(assignee)
        now = self.clock.now()
        creator = self.caller.user_id or creator_id  # a service acts for someone
        doc = self._new_task(data, assignee, creator, now,
                             dict(source) if source else {"type": "api", "id": None})
        if source_key:
            doc["source_key"] = str(source_key)[:300]
            if not self.store.insert_task(doc):  # made by an earlier call with this key
                return dump_task(self.store.task_by_source_key(doc["source_key"]), now), []
            return self._created(doc, now)
        self.store.insert_task(doc)
        return self._created(doc, now)

    def get(self, task_id):
        doc = self.store.get_task(task_id, self._visible())
        if not doc:
            raise NotFound("Task not found", {"id": task_id})
        return dump_task(doc, self.clock.now())

    def update(self, task_id, payload):
        data = load(task_in, payload, partial=True)
        if "custom" in data:
            data["custom"] = self.typed_custom(data["custom"])
        current = self.store.get_task(task_id, self._visible())
        if not current:
            raise NotFound("Task not found", {"id": task_id})
        if current["status"] != "open":
            raise Conflict("Only an open task can be changed", {"status": current["status"]})
        merged = {**current, **data}
        try:
            schemas.check_times(merged)
        except ValidationError as error:  # raised outside a schema: name the field ourselves
            raise ValidationFailed("Invalid input", {"fields": error.normalized_messages()})
        if "assignee_id" in data and data["assignee_id"] != current.get("assignee_id"):
            self._check_assignee(data["assignee_id"])
        now = self.clock.now()
        changes = dict(data, updated_at=now)
        if "due_at" in data:
            changes["sort_due"] = data["due_at"] or NO_DATE
        if "recurrence" in data and data["recurrence"]:
            changes["recurrence"] = dict(data["recurrence"])
        changes["alarm_at"] = first_alarm({**merged, **changes}, self.grace)
        self.store.note_span({**merged, **changes})
        doc = self.store.update_task({"_id": task_id, "version": current["version"]}, changes)
        if not doc:
            raise Conflict("The task changed meanwhile; read it again", {"id": task_id})
        result = dump_task(doc, now)
        events = [_event("task_updated", {"task": result, "assignee_id": doc.get("assignee_id"),
                                          "actor_id": self.caller.user_id,
                                          "changed": sorted(data)})]
        if doc.get("assignee_id") and doc.get("assignee_id") != current.get("assignee_id"):
            events.append(self._assigned_event(result))
        return result, events

    def cancel(self, task_id, reason=None):
        now = self.clock.now()
        doc = self.store.update_task(
            {"_id": task_id, "status": "open", **self._visible()},
            {"status": "canceled", "canceled_at": now, "cancel_reason": reason or "canceled",
             "updated_at": now, "alarm_at": None})
        if not doc:
            self._missing_or_closed(task_id)
        result = dump_task(doc, now)
        return result, [self._canceled_event(result)]

    def complete(self, task_id, payload):
        data = load(complete_in, payload or {})
        now = self.clock.now()
        doc = self.store.update_task(
            {"_id": task_id, "status": "open", **self._visible()},
            {"status": "done", "result": data.get("result"), "completed_at": now,
             "completed_by": self.caller.user_id, "updated_at": now, "alarm_at": None})
        if not doc:
            self._missing_or_closed(task_id)
        result = dump_task(doc, now)
        events = [self._completed_event(doc, result, now)]
        follow_up = self._next_occurrence(doc, now)
        if follow_up:
            result["next_task_id"] = follow_up["id"]
            events += follow_up["events"]
        return result, events

    def list(self, params):
        q = load(list_query, params)
        custom, sort_field, direction = custom_fields.list_order(
            lambda: self.store.custom_fields.of("task"), q, SORTS, "due_at")
        now = self.clock.now()
        query = self.store.task_filter(self._visible(), {**q, "custom_query": custom}, now)
        docs, next_cursor = self.store.page_tasks(query, sort_field, direction, q["limit"],
                                                  q.get("cursor"))
        out = {"items": [dump_task(d, now) for d in docs], "next_cursor": next_cursor}
        if q["include_total"]:
            out["total"] = self.store.count_tasks(query, sort_field)
        return out

    def explain_list(self, params):
        q = load(list_query, params)
        field, _ = parse_sort(q.get("sort"), SORTS, "due_at")
        query = self.store.task_filter(self._visible(), q, self.clock.now())
        return self.store.explain_tasks(query, SORTS[field])

    # calendar and agenda
    def calendar(self, params):
        q = load(calendar_query, params)
        assignee = self._person(q)
        statuses = ["open", "done"] if q["include_done"] else ["open"]
        query = self.store.calendar_filter(self._visible(), assignee, q["from_"], q["to"],
                                           statuses)
        now = self.clock.now()
        docs, next_cursor = self.store.page_tasks(query, "sort_due", 1, q["limit"], q.get("cursor"))
        return {"items": [dump_task(d, now) for d in docs], "next_cursor": next_cursor}

    def agenda(self, params, open_deals=None):
        """Overdue first, then today's open tasks, then the user's open deals that have no
        open task ("never leave an active deal without a next date"). `open_deals` is what
        the deals service answered, or None when it could not be asked."""
        q = load(agenda_query, params)
        assignee = self._person(q)
        now = self.clock.now()
        user = self.store.get_user(assignee) or {}
        _, end = day_bounds(now, user.get("timezone"))
        overdue = self.store.open_tasks_due(self._visible(), assignee, None, now, q["limit"])
        today = self.store.open_tasks_due(self._visible(), assignee, now, end, q["limit"])
        out = {"assignee_id": assignee,
               "date": now.astimezone(zone(user.get("timezone"))).date().isoformat(),
               "overdue": [dump_task(d, now) for d in overdue],
               "today": [dump_task(d, now) for d in today],
               "deals_without_next_step": None, "deals_unavailable": open_deals is None}
        if open_deals is not None:
            open_deals = [d for d in open_deals if isinstance(d, dict) and d.get("id")]
            covered = self.store.deals_with_open_tasks([d["id"] for d in open_deals])
            out["deals_without_next_step"] = [
                with_every_key(deal_ref, deal_ref.dump(d), d["id"])
                for d in open_deals if d["id"] not in covered]
        return out

    def _person(self, q):
        person = q.get("assignee_id") or self.caller.user_id
        if not person:
            raise _invalid("assignee_id", "Required when the caller is not a user.")
        return person

    # stage rules
    def list_rules(self, params):
        q = load(rule_list_query, params)
        query = {k: q[k] for k in ("pipeline_id", "stage_id") if q.get(k)}
        if "stage_id" in query and "pipeline_id" not in query:
            raise _invalid("pipeline_id", "Required with stage_id.")
        docs, next_cursor = self.store.page_rules(query, q["limit"], q.get("cursor"))
        out = {"items": [dump_rule(d) for d in docs], "next_cursor": next_cursor}
        return out

    # report
    def report(self, params):
        q = load(report_query, params)
        now = self.clock.now()
        period = q.get("period") if q["group_by"] == "assignee" else q["group_by"]
        items = []
        for row in self.store.report(self._visible(), q.get("from_"), q.get("to"),
                                     q.get("assignee_id"), q["group_by"] == "assignee", period,
                                     now):
            key = row.pop("_id")
            finished = row["done_on_time"] + row["done_late"]
            items.append({"assignee_id": key.get("assignee_id"), "period": key.get("period"),
                          **row, "on_time_rate": (round(row["done_on_time"] / finished, 4)
                                                  if finished else None)})
        return {"group_by": q["group_by"], "period": period, "items": items}

    # automation: other services' events
    def on_user_upserted(self, event):
        user = event["data"]["user"]
        self.store.upsert_user({
            "_id": user["id"], "manager_id": user.get("manager_id"), "team": user.get("team"),
            "role": user.get("role"), "active": user.get("active", True) is not False,
            "timezone": user.get("timezone"), "name": user.get("name"),
            "email": user.get("email"), "synced_at": utcnow()}, parse_iso(event["occurred_at"]))

    def on_call_missed(self, event):
        data = event["data"]
        call = data["call"]
        call_id = call["id"]
        # a missed call is never dropped: the contact's owner calls back, else the agent
        # who was rung, else the line's responsible user (telephony settings), else an admin
        rung = data.get("agent_ids") or []
        admins = self.store.admin_ids()
        assignee = (data.get("owner_id") or data.get("agent_id") or (rung[0] if rung else None)
                    or data.get("responsible_id") or (admins[0] if admins else None))
        if not assignee:
            log.warning("call_missed %s: no owner, agent, responsible user or admin",
                        event["event_id"])
            return []
        contact_id = data.get("contact_id")
        missed_at = self._event_time(event, call, "started_at", "ended_at")
        if self._answered_since(contact_id, missed_at):
            return []
        number = data.get("from")
        now = self.clock.now()
        doc = self._new_task(
            {"kind": "call", "title": f"Call back {number}" if number else "Call back",
             "description": "Missed call", "priority": "high",
             "due_at": missed_at + timedelta(minutes=self.config.callback_due_minutes),
             "contact_id": contact_id, "reminders": []},
            assignee, None, now, {"type": "call_missed", "id": call_id})
        doc.update({"call_id": call_id, "missed_at": missed_at,
                    "source_key": f"call_missed:{call_id}"})
        if not self.store.insert_task(doc):
            return []  # redelivered: the callback task exists already
        if self._answered_since(contact_id, missed_at):  # an answered call raced with us
            self.store.update_task({"_id": doc["_id"], "status": "open"},
                                   self._auto_cancel(now, "answered_call"))
            return []
        return self._created(doc, now)[1]

    def on_lead_routed(self, event):
        """The first touch of a new inbound request (docs/leads.md): one task per request for
        the lead's owner, due within the route's minutes of working time."""
        data = event["data"]
        settings = data.get("first_task")
        if not settings or not data["owner_id"]:
            return []
        received = parse_iso(data["received_at"]) if data.get("received_at") else self.clock.now()
        name = data.get("contact_name") or "new lead"
        now = self.clock.now()
        doc = self._new_task(
            {"kind": settings.get("kind") or "call",
             "title": settings.get("title") or f"First touch: {name}",
             "description": data.get("summary"), "priority": "high",
             "due_at": due_in_working_hours(received, settings.get("due_minutes") or 15,
                                            settings.get("working_hours")),
             "contact_id": data["contact_id"], "deal_id": data["deal_id"],
             "reminders": []},
            data["owner_id"], None, now, {"type": "inbound_request", "id": data["request_id"]})
        doc["source_key"] = f"lead:{data['request_id']}"
        if not self.store.insert_task(doc):
            return []  # redelivered: the first-touch task exists already
        return self._created(doc, now)[1]

    def on_commitment_made(self, event):
        """A promise made to a client (a note's commitment): a task for its owner, due when
        it must be kept, reminded a day before; one per commitment (its reminder_key)."""
        data = event["data"]
        if not data.get("owner_id"):
            return []
        now = self.clock.now()
        text = data["text"]
        doc = self._new_task(
            {"kind": "todo", "title": f"Keep the commitment: {text}"[:200],
             "description": f"Promised to {data['to_whom']}: {text}" if data.get("to_whom")
             else text, "priority": "high", "due_at": parse_iso(data["due_at"]),
             "contact_id": data.get("contact_id"), "deal_id": data.get("deal_id"),
             "reminders": [24 * 60]},
            data["owner_id"], data["owner_id"], now, {"type": "note", "id": data["note_id"]})
        doc["source_key"] = data["reminder_key"]
        if not self.store.insert_task(doc):
            return []  # redelivered: the reminder exists already
        return self._created(doc, now)[1]

    def on_call_answered(self, event):
        """An answered call with a contact: remember when, and close the contact's callback
        tasks for calls missed before it."""
        data = event["data"]
        call = data["call"]
        contact_id = data.get("contact_id")
        if not contact_id or (event["type"] == "call_ended" and call.get("outcome") != "answered"):
            return []
        answered_at = self._event_time(event, call, "answered_at", "started_at")
        self.store.record_answered(contact_id, answered_at)
        now = self.clock.now()
        events = []
        for task in self.store.open_callbacks_before(contact_id, answered_at):
            doc = self.store.update_task({"_id": task["_id"], "status": "open"},
                                         self._auto_cancel(now, "answered_call"))
            if doc:
                events.append(self._canceled_event(dump_task(doc, now)))
        return events

    # reminders, overdue and escalation (called by the timer of every replica)
    def scan(self, send, pmap=map):
        """Send every notice that is due. Each one is claimed in the database first, so with
        any number of replicas it is sent once; a claim whose holder died before sending
        (lease expired) is taken over and sent again, with the same event_id. `pmap` lets
        the caller handle the tasks of a batch concurrently (each publish waits for the
        broker's confirm, so one at a time the timer is latency-bound)."""
        now = self.clock.now()
        sent = 0
        budget_ends = time.monotonic() + max(self.config.tick_seconds, 1.0)
        while True:  # batch after batch, so a backlog drains within one tick (time allowing)
            batch = self.store.due_alarms(now, self.config.scan_batch)
            sent += sum(pmap(lambda task: self._handle_alarm(task, now, send), batch))
            if len(batch) < self.config.scan_batch or time.monotonic() > budget_ends:
                break
        real = utcnow()
        for claim in self.store.stale_claims(real, self.config.scan_batch):
            lease = real + timedelta(seconds=self.config.claim_lease_seconds)
            if self.store.reclaim_notice(claim["_id"], real, lease):
                task = self.store.get_task(claim["task_id"])
                sent += self._send_claimed(task, claim["_id"], claim["kind"],
                                           claim.get("extra") or {}, send)
        return sent

    def _handle_alarm(self, task, now, send):
        sent = 0
        for key, kind, at, extra in due_notices(task, now, self.grace):
            sent += self._notify(task, key, kind, at, extra, send)
        self.store.set_alarm(task["_id"], task.get("version"), next_alarm(task, now, self.grace))
        return sent

    def _notify(self, task, key, kind, at, extra, send):
        real = utcnow()
        claimed = self.store.claim_notice(key, {
            "task_id": task["_id"], "kind": kind, "at": at, "extra": extra, "state": "claimed",
            "claimed_at": real, "attempts": 1,
            "lease_until": real + timedelta(seconds=self.config.claim_lease_seconds)})
        if not claimed:
            return 0
        return self._send_claimed(task, key, kind, extra, send)

    def _send_claimed(self, task, key, kind, extra, send):
        event = self._notice_event(task, key, kind, extra) if task else None
        if event is None:
            self.store.mark_notice(key, "skipped", utcnow())
            return 0
        send(event)
        self.store.mark_notice(key, "sent", utcnow())
        return 1

    def _notice_event(self, task, key, kind, extra):
        now = self.clock.now()
        result = dump_task(task, now)
        assignee = task.get("assignee_id")
        data = {"task": result, "assignee_id": assignee, "contact_id": task.get("contact_id"),
                "ref": {"type": "task", "id": task["_id"]}, "due_at": to_iso(task["due_at"]),
                **extra}
        if kind == "task_due_soon":
            data["summary"] = f"Due in {extra['offset_minutes']} min: {task['title']}"
        elif kind == "task_overdue":
            data["summary"] = f"Overdue: {task['title']}"
        else:
            user = self.store.get_user(assignee) if assignee else None
            manager = (user or {}).get("manager_id")
            if not manager:
                log.warning("task %s overdue but %s has no known manager", task["_id"], assignee)
                return None
            data.update({"manager_id": manager, "summary": f"Not done in time: {task['title']}",
                         "grace_minutes": self.grace})
        # the notice key as event id: a resent notice is recognisably the same one
        return _event(kind, data, event_id=key)

    # helpers
    def _new_task(self, data, assignee, creator, now, source):
        due = data.get("due_at")
        doc = {
            "_id": new_id(), "kind": data.get("kind", "todo"), "title": data["title"],
            "description": data.get("description"), "due_at": due, "end_at": data.get("end_at"),
            "sort_due": due or NO_DATE, "assignee_id": assignee, "creator_id": creator,
            "contact_id": data.get("contact_id"), "deal_id": data.get("deal_id"),
            "call_id": None, "priority": data.get("priority", "normal"), "status": "open",
            "result": None, "reminders": sorted(set(data.get("reminders") or [])),
            "recurrence": dict(data["recurrence"]) if data.get("recurrence") else None,
            "series_id": data.get("series_id"), "source": source,
            "custom": data.get("custom") or {},
            "completed_at": None, "canceled_at": None, "cancel_reason": None,
            "created_at": now, "updated_at": now, "version": 1}
        doc["alarm_at"] = first_alarm(doc, self.grace)
        return doc

    def _created(self, doc, now):
        result = dump_task(doc, now)
        events = [_event("task_created", {
            "task": result, "assignee_id": doc.get("assignee_id"),
            "contact_id": doc.get("contact_id"), "actor_id": doc.get("creator_id"),
            "summary": f"Task planned: {result['title']}",
            "ref": {"type": "task", "id": doc["_id"]}})]
        if doc.get("assignee_id") and doc.get("assignee_id") != doc.get("creator_id"):
            events.append(self._assigned_event(result, doc.get("creator_id")))
        return result, events

    def _assigned_event(self, result, by=None):
        return _event("task_assigned", {
            "task": result, "assignee_id": result["assignee_id"],
            "assigned_by": by if by is not None else self.caller.user_id,
            "summary": f"Task for you: {result['title']}", "ref": {"type": "task", "id": result["id"]}})

    def _canceled_event(self, result):
        return _event("task_canceled", {
            "task": result, "assignee_id": result["assignee_id"],
            "reason": result["cancel_reason"], "ref": {"type": "task", "id": result["id"]}})

    def _completed_event(self, doc, result, now):
        text = f"{doc['kind'].capitalize()} done: {doc['title']}"
        if doc.get("result"):
            text += f" ({doc['result'][:200]})"
        data = {"task": result, "assignee_id": doc.get("assignee_id"),
                "contact_id": doc.get("contact_id"), "deal_id": doc.get("deal_id"),
                "result": doc.get("result"), "summary": text,
                "actor_id": self.caller.user_id or doc.get("assignee_id"),
                "ref": {"type": "task", "id": doc["_id"]}}
        if doc["kind"] in CONTACT_KINDS and doc.get("contact_id"):
            data["contacted_at"] = to_iso(now)
        return _event("task_completed", data)

    def _next_occurrence(self, doc, now):
        """The next task of a recurring series, created once however often this runs."""
        recurrence = doc.get("recurrence")
        if not recurrence or not doc.get("due_at"):
            return None
        due = next_occurrence(doc["due_at"], recurrence)
        if due is None:
            return None
        end = doc["end_at"] + (due - doc["due_at"]) if doc.get("end_at") else None
        data = {k: doc.get(k) for k in ("kind", "title", "description", "contact_id", "deal_id",
                                        "priority", "reminders", "recurrence")}
        data.update({"due_at": due, "end_at": end, "series_id": doc.get("series_id") or doc["_id"]})
        nxt = self._new_task(data, doc.get("assignee_id"), doc.get("creator_id"), now,
                             {"type": "recurrence", "id": doc["_id"]})
        nxt["source_key"] = f"recurrence:{doc['_id']}"
        if not self.store.insert_task(nxt):
            return None
        result, events = self._created(nxt, now)
        return {"id": nxt["_id"], "events": events}

    def _auto_cancel(self, now, reason):
        return {"status": "canceled", "canceled_at": now, "cancel_reason": reason,
                "updated_at": now, "alarm_at": None}

    def _answered_since(self, contact_id, when):
        if not contact_id:
            return False
        last = self.store.last_answered(contact_id)
        return last is not None and last >= when

    @staticmethod
    def _event_time(event, call, *keys):
        """The first of the call's times that is set, else when the event happened."""
        for key in keys:
            if call.get(key):
                return parse_iso(call[key])
        return parse_iso(event["occurred_at"])

    def _check_assignee(self, user_id):
        """The caller may give tasks to this person (the assignment rule, docs/auth.md: an
        agent themselves, a manager their team); and once the directory copy has any user,
        an assignee must be a known active one (before the gateway has announced users,
        any id is accepted)."""
        if user_id:
            self.caller.check_assign(user_id, "assignee_id")
        if not user_id or not self.store.has_users():
            return
        user = self.store.get_user(user_id)
        if not user or not user.get("active", True):
            raise _invalid("assignee_id", "Unknown or inactive user.")

    def _missing_or_closed(self, task_id):
        doc = self.store.get_task(task_id, self._visible())
        if not doc:
            raise NotFound("Task not found", {"id": task_id})
        raise Conflict(f"The task is already {doc['status']}", {"status": doc["status"]})
