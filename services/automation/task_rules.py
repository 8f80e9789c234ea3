"""The stage task rules (`/task-rules`: "a deal entering this stage gets this task"), kept
with their API (contracts/tasks.py TaskRuleIn/TaskRuleOut) as rules of this engine: each is
an automation rule triggered by deals.deal_stage_changed on (pipeline, stage) whose one
action creates the task, due `due_in_minutes` after the event, for the rule's assignee or
the deal's owner, with the task's `source` {"type": "stage_rule", "id", "event_id"} as
before. The rules the tasks service held are copied here once (`migrate`)."""
import logging

from contracts import tasks as task_schemas
from crm_common.errors import NotFound, ValidationFailed
from crm_common.fields import with_every_key
from crm_common.ids import new_id
from crm_common.validation import load

log = logging.getLogger(__name__)

rule_in = task_schemas.TaskRuleIn()
rule_out = task_schemas.TaskRuleOut()
list_query = task_schemas.TaskRuleListQuery()
EVENT = "deals.deal_stage_changed"
MIGRATED = "task_rules_migrated"


def engine_fields(data):
    """The engine rule that does what the task rule says."""
    action = {"type": "create_task", "title": data["title"], "kind": data.get("kind", "todo"),
              "priority": data.get("priority", "normal"),
              "due_in_minutes": data.get("due_in_minutes", 24 * 60), "due_from": "event",
              "stage_rule": True}
    for key in ("description", "assignee_id", "reminders"):
        if data.get(key):
            action[key] = data[key]
    return {"name": f"Stage task: {data['title']}"[:200], "enabled": data.get("active", True),
            "trigger": {"type": "event", "event": EVENT},
            "conditions": {"all": [
                {"field": "pipeline_id", "op": "eq", "value": data["pipeline_id"]},
                {"field": "to_stage_id", "op": "eq", "value": data["stage_id"]}]},
            "actions": [action], "delay": None, "log_skips": False, "team": None,
            "team_members": None, "task_rule": dict(data)}


def dump(doc):
    out = dict(doc["task_rule"], created_at=doc["created_at"], updated_at=doc["updated_at"],
               active=doc.get("enabled", True))
    return with_every_key(rule_out, rule_out.dump(out), doc["_id"])


class TaskRules:
    def __init__(self, store, caller, clock):
        self.store = store
        self.caller = caller
        self.clock = clock

    def _check_assignee(self, user_id):
        """As tasks did: the assignment rule, and a known active user once users are known."""
        if not user_id:
            return
        self.caller.check_assign(user_id, "assignee_id")
        if self.store.has_users():
            user = self.store.get_user(user_id)
            if not user or not user.get("active", True):
                raise ValidationFailed("Invalid input", {"fields": {
                    "assignee_id": ["Unknown or inactive user."]}})

    def _get(self, rule_id):
        doc = self.store.get_rule(rule_id)
        if not doc or not doc.get("task_rule"):
            raise NotFound("Task rule not found", {"id": rule_id})
        return doc

    def create(self, payload):
        data = load(rule_in, payload)
        self._check_assignee(data.get("assignee_id"))
        now = self.clock.now()
        doc = {"_id": new_id(), **engine_fields(data), "created_by": self.caller.user_id,
               "created_at": now, "updated_at": now, "version": 1, "scan_mark": now}
        self.store.insert_rule(doc)
        return dump(doc)

    def get(self, rule_id):
        return dump(self._get(rule_id))

    def update(self, rule_id, payload):
        current = self._get(rule_id)
        data = load(rule_in, payload, partial=True)
        if data.get("assignee_id"):
            self._check_assignee(data["assignee_id"])
        merged = {**current["task_rule"], **data}
        changes = {k: v for k, v in engine_fields(merged).items()}
        changes["updated_at"] = self.clock.now()
        doc = self.store.update_rule(rule_id, current["version"], changes)
        if not doc:
            raise NotFound("Task rule not found", {"id": rule_id})
        return dump(doc)

    def delete(self, rule_id):
        current = self._get(rule_id)
        self.store.delete_rule(rule_id)
        return dump(current)

    def list(self, params):
        q = load(list_query, params)
        if q.get("stage_id") and not q.get("pipeline_id"):
            raise ValidationFailed("Invalid input", {"fields": {
                "pipeline_id": ["Required with stage_id."]}})
        docs, cursor = self.store.list_task_rules(q.get("pipeline_id"), q.get("stage_id"),
                                                  q["limit"], q.get("cursor"))
        return {"items": [dump(d) for d in docs], "next_cursor": cursor}

    def migrate(self, tasks):
        """Copies the rules the tasks service held (its RPC `list_rules`), once, keeping
        their ids; safe on every replica at once and repeated after a failure."""
        if self.store.flag(MIGRATED):
            return 0
        copied, cursor = 0, None
        while True:
            page = tasks.list_rules({"limit": 500, **({"cursor": cursor} if cursor else {})})
            for old in page["items"]:
                data = {k: old.get(k) for k in rule_in.fields if k in old}
                data.setdefault("active", True)
                now = self.clock.now()
                doc = {"_id": old["id"], **engine_fields(data), "created_by": None,
                       "created_at": now, "updated_at": now, "version": 1, "scan_mark": now}
                copied += self.store.insert_rule_once(doc)
            cursor = page.get("next_cursor")
            if not cursor:
                break
        self.store.set_flag(MIGRATED)
        if copied:
            log.info("copied %d stage task rules from the tasks service", copied)
        return copied
